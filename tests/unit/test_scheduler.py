"""The continuous-batching scheduler, driven by a fake runner (no model)."""

from __future__ import annotations

import pytest

from seekport.engine.sampling import SamplingParams
from seekport.engine.scheduler import Scheduler, SchedulerConfig, StepPlan
from seekport.engine.sequence import Sequence
from seekport.errors import OverloadedError

EOS = -1


def seq(name: str, prompt: list[int] | int, max_tokens: int = 4) -> Sequence:
    tokens = list(range(100, 100 + prompt)) if isinstance(prompt, int) else prompt
    return Sequence(name, tokens, SamplingParams(max_tokens=max_tokens))


def step(s: Scheduler) -> StepPlan:
    """One engine step with a fake runner: each sampled token is 7; max_tokens finishes."""
    plan = s.schedule()
    s.complete(plan)
    for w in plan.work:
        if w.sample:
            w.seq.output_tokens.append(7)
            w.seq.completion_tokens += 1
            if w.seq.completion_tokens >= w.seq.params.max_tokens:
                s.finish(w.seq, "length")
    return plan


def run_all(s: Scheduler, limit: int = 1000) -> int:
    steps = 0
    while s.has_work():
        step(s)
        steps += 1
        assert steps < limit
    return steps


def test_running_sequences_decode_one_token_each_per_step() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=4))
    a, b = seq("a", 5), seq("b", 3)
    s.add(a)
    s.add(b)
    first = step(s)
    assert [(w.seq.request_id, len(w.tokens), w.sample) for w in first.work] == [
        ("a", 5, True),
        ("b", 3, True),
    ]
    second = step(s)
    assert [(w.seq.request_id, w.tokens, w.pos) for w in second.work] == [
        ("a", [7], 5),
        ("b", [7], 3),
    ]


def test_new_sequences_join_mid_flight() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=4))
    a = seq("a", 4, max_tokens=10)
    s.add(a)
    step(s)
    step(s)
    b = seq("b", 4)
    s.add(b)
    plan = step(s)
    assert {w.seq.request_id for w in plan.work} == {"a", "b"}
    assert plan.num_decode == 1  # a decodes while b prefills


def test_long_prompts_are_prefilled_in_chunks_under_the_budget() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=4, max_step_tokens=8))
    a = seq("a", 3, max_tokens=50)
    s.add(a)
    step(s)
    long = seq("long", list(range(500, 520)))
    s.add(long)
    plans = [step(s) for _ in range(3)]
    for p in plans:
        assert p.num_tokens <= 8
        assert any(w.seq is a for w in p.work)  # the running stream keeps flowing
    chunks = [w for p in plans for w in p.work if w.seq is long]
    assert [len(w.tokens) for w in chunks] == [7, 7, 6]
    assert [w.pos for w in chunks] == [0, 7, 14]
    assert [w.sample for w in chunks] == [False, False, True]


def test_max_num_seqs_bounds_the_batch_and_fifo_order_holds() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2))
    seqs = [seq(f"s{i}", [10 * i, 10 * i + 1], max_tokens=3) for i in range(5)]
    for q in seqs:
        s.add(q)
    admitted: list[str] = []
    while s.has_work():
        plan = step(s)
        assert len({w.seq.request_id for w in plan.work}) <= 2
        for w in plan.work:
            if w.pos == 0:
                admitted.append(w.seq.request_id)
    assert admitted == [f"s{i}" for i in range(5)]


def test_a_sequence_waits_for_a_slot_only_and_its_cells_come_back_at_once() -> None:
    # each slot has its own stream of 30 cells: two 20-cell sequences run side by side
    s = Scheduler(SchedulerConfig(max_num_seqs=2, max_seq_cells=30))
    a, b, c = (seq(n, 10, max_tokens=10) for n in "abc")
    for q in (a, b, c):
        s.add(q)
    step(s)
    assert s.running == [a, b] and list(s.waiting) == [c]  # c waits for a slot
    assert s.reserved == 40
    a.cancelled = True
    plan = step(s)
    assert plan.aborted == [a]
    assert s.running == [b, c]  # admitted in the same step a's slot came back
    assert s.reserved == 40
    assert s.cfg.kv_cells == 60


def test_waiting_line_is_bounded_beyond_the_free_slots() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=1, max_waiting=2))
    for name in "abc":  # one for the free slot, two waiting
        s.add(seq(name, 2))
    with pytest.raises(OverloadedError):
        s.add(seq("d", 2))
    step(s)  # "a" takes the slot: still three at most beyond it
    with pytest.raises(OverloadedError):
        s.add(seq("e", 2))


def test_cancelled_waiting_sequence_never_runs() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=1))
    a, b = seq("a", 2, max_tokens=3), seq("b", 2)
    s.add(a)
    s.add(b)
    step(s)
    b.cancelled = True
    plan = step(s)
    assert plan.aborted == [b] and not s.waiting
    run_all(s)
    assert b.num_computed == 0


def test_a_shared_prefix_is_copied_so_the_other_conversation_keeps_its_cache() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2))
    system = list(range(50))
    first = seq("first", [*system, 1, 2, 3], max_tokens=2)
    s.add(first)
    run_all(s)
    kept = list(s.slots[first.slot].tokens)
    second = seq("second", [*system, 9, 9], max_tokens=2)
    s.add(second)
    plan = step(s)
    assert second.slot != first.slot
    assert second.cached_tokens == 50
    assert plan.copies == [(first.slot, second.slot, 50)]
    assert plan.evict == []
    assert s.slots[first.slot].tokens == kept  # first's history survives for its next turn
    assert [w.pos for w in plan.work] == [50] and len(plan.work[0].tokens) == 2


def test_the_next_turn_of_a_conversation_extends_its_own_slot() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=3))
    turn1 = seq("turn1", list(range(30)), max_tokens=3)
    s.add(turn1)
    run_all(s)
    history = list(s.slots[turn1.slot].tokens)  # prompt + the answer's fed tokens
    assert len(history) == 32
    turn2 = seq("turn2", [*history, 500, 501, 502], max_tokens=2)
    s.add(turn2)
    plan = step(s)
    assert turn2.slot == turn1.slot
    assert turn2.cached_tokens == 32
    assert plan.copies == [] and plan.evict == []
    assert [(w.pos, w.tokens) for w in plan.work] == [(32, [500, 501, 502])]


def test_without_an_empty_slot_the_least_recently_used_one_is_reused() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2))
    system = list(range(20))
    for name, tail in (("a", [1]), ("b", [2])):
        s.add(seq(name, [*system, *tail], max_tokens=1))
        run_all(s)
    newest = s.slots[1].tokens[:]
    c = seq("c", [*system, 3], max_tokens=1)
    s.add(c)
    plan = step(s)
    assert c.slot == 0  # slot 0 ("a") was used least recently
    assert c.cached_tokens == 20
    assert plan.evict == [(0, 20)]
    assert s.slots[1].tokens == newest


def test_copying_a_prefix_leaves_the_source_cache_whole_even_when_streams_are_small() -> None:
    # streams of 40 cells: "c" fills its own, and the cache it copies from stays intact
    s = Scheduler(SchedulerConfig(max_num_seqs=3, max_seq_cells=40))
    system = list(range(20))
    a = seq("a", [*system, 1, 1, 1, 1, 1], max_tokens=1)  # 25 idle cells once done
    s.add(a)
    run_all(s)
    c = seq("c", [*system, *[2] * 15], max_tokens=5)  # needs all 40 cells of a stream
    s.add(c)
    plan = step(s)
    assert plan.copies == [(a.slot, c.slot, 20)]
    assert plan.evict == []
    assert c.cached_tokens == 20
    assert s.slots[c.slot].tokens == [*system, *[2] * 15]
    assert s.slots[a.slot].tokens == [*system, 1, 1, 1, 1, 1]


def test_whole_prompt_cached_still_computes_its_last_token() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=1))
    p = list(range(10))
    s.add(seq("a", p, max_tokens=1))
    run_all(s)
    again = seq("b", p, max_tokens=1)
    s.add(again)
    plan = step(s)
    assert again.cached_tokens == 9
    assert [(w.pos, w.tokens) for w in plan.work] == [(9, [9])]


def test_admitting_a_sequence_never_discards_another_slots_idle_cache() -> None:
    # The runner gives every slot its own KV stream (kv_unified = false): a sequence's cells
    # come from its slot alone. Modelling one shared pool instead would evict "a" here (1000
    # + 2 × 1900 cells exceed a 4096-cell pool) although slot 2 is empty and big enough.
    s = Scheduler(SchedulerConfig(max_num_seqs=3, max_seq_cells=2000))
    a = seq("a", list(range(0, 1900)), max_tokens=1)
    b = seq("b", list(range(5000, 6900)), max_tokens=1)
    for q in (a, b):
        s.add(q)
        run_all(s)
    kept = {a.slot: list(s.slots[a.slot].tokens), b.slot: list(s.slots[b.slot].tokens)}
    c = seq("c", list(range(9000, 9990)), max_tokens=10)  # 1000 cells
    s.add(c)
    plan = step(s)
    assert c.slot not in kept
    assert plan.evict == [] and plan.copies == []
    assert {i: s.slots[i].tokens for i in kept} == kept
    run_all(s)
    assert {i: s.slots[i].tokens for i in kept} == kept
    # a fourth conversation takes the least recently used slot, and only that one
    d = seq("d", list(range(20000, 20100)), max_tokens=1)
    s.add(d)
    plan = step(s)
    assert d.slot == a.slot and plan.evict == [(a.slot, 0)]
    assert s.slots[b.slot].tokens == kept[b.slot]


def test_a_sequence_larger_than_its_stream_is_refused() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=4, max_seq_cells=100))
    s.add(seq("fits", 90, max_tokens=10))
    with pytest.raises(ValueError, match="100 KV cells"):
        s.add(seq("too-big", 95, max_tokens=10))


def test_a_longer_prefix_in_a_running_slot_is_copied_to_the_new_slot() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=3))
    system = list(range(40))
    first = seq("first", [*system, 1], max_tokens=50)
    s.add(first)
    step(s)
    step(s)  # first is decoding: its slot holds the system prompt
    second = seq("second", [*system, 2, 3], max_tokens=4)
    s.add(second)
    plan = step(s)
    assert second.slot != first.slot
    assert plan.copies == [(first.slot, second.slot, 40)]
    assert second.cached_tokens == 40
    assert [w.pos for w in plan.work if w.seq is second] == [40]


def test_prefill_is_throttled_while_others_decode_but_not_when_alone() -> None:
    cfg = SchedulerConfig(max_num_seqs=4, max_step_tokens=64, max_prefill_while_decoding=10)
    s = Scheduler(cfg)
    alone = seq("alone", list(range(1000, 1050)), max_tokens=20)
    s.add(alone)
    first = step(s)
    assert [len(w.tokens) for w in first.work] == [50]  # nobody decoding: full budget
    late = seq("late", list(range(2000, 2030)))
    s.add(late)
    plan = step(s)
    assert [len(w.tokens) for w in plan.work if w.seq is late] == [10]
    assert plan.num_tokens == 11  # one decode + the throttled chunk


def test_choices_of_one_request_compute_their_prompt_once() -> None:
    """n > 1: the further choices wait for the first to compute the prompt, then copy its KV
    (all but the last token, which each runs for its own logits); a request behind them waits
    its turn (FIFO). A short prompt leaves budget in its step, which would otherwise admit
    the other choices to compute the same prompt beside it."""
    s = Scheduler(SchedulerConfig(max_num_seqs=4, max_step_tokens=64))
    first = seq("c0", 10)
    others = [
        Sequence(f"c{i}", list(first.prompt_tokens), first.params, after=first) for i in (1, 2)
    ]
    later = seq("later", [900, 901, 902, 903, 904])
    for x in (first, *others, later):
        s.add(x)
    plan = step(s)
    assert [(w.seq.request_id, len(w.tokens)) for w in plan.work] == [("c0", 10)]
    assert [x.request_id for x in s.waiting] == ["c1", "c2", "later"]
    plan = step(s)
    assert sorted(plan.copies) == [(first.slot, others[0].slot, 9), (first.slot, others[1].slot, 9)]
    prefill = {w.seq.request_id: len(w.tokens) for w in plan.work if w.seq is not first}
    assert prefill == {"c1": 1, "c2": 1, "later": 5}
    assert [o.cached_tokens for o in others] == [9, 9]
    run_all(s)
    assert all(x.finish_reason == "length" for x in (first, *others, later))


def test_choices_follow_a_first_choice_that_is_gone() -> None:
    """A first choice cancelled before its prompt was computed does not hold the others."""
    s = Scheduler(SchedulerConfig(max_num_seqs=2, max_step_tokens=64))
    first = seq("c0", 10)
    other = Sequence("c1", list(first.prompt_tokens), first.params, after=first)
    s.add(first)
    s.add(other)
    first.cancelled = True
    plan = step(s)
    assert plan.aborted == [first]
    assert [(w.seq.request_id, len(w.tokens)) for w in plan.work] == [("c1", 10)]


def test_further_choices_are_admitted_with_their_first_one() -> None:
    """The waiting-line bound counts a request once: its further choices are not refused."""
    s = Scheduler(SchedulerConfig(max_num_seqs=1, max_waiting=1))
    s.add(seq("running", 3))
    step(s)
    first = seq("c0", 3)
    s.add(first)
    s.add(Sequence("c1", list(first.prompt_tokens), first.params, after=first))
    with pytest.raises(OverloadedError):
        s.add(seq("third", 3))


def test_kv_computed_under_one_adapter_is_no_prefix_for_another() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2))
    system = list(range(40))
    tuned = seq("tuned", [*system, 1, 2], max_tokens=2)
    tuned.adapter = 1
    s.add(tuned)
    run_all(s)
    base = seq("base", [*system, 1, 2, 3], max_tokens=2)  # extends tuned's slot token by token
    s.add(base)
    plan = step(s)
    assert base.cached_tokens == 0 and plan.copies == []
    assert base.slot != tuned.slot  # the empty slot: tuned's cache is kept for its adapter
    again = seq("again", [*system, 1, 2, 7], max_tokens=2)
    again.adapter = 1
    s.add(again)
    plan = step(s)
    assert again.slot == tuned.slot and again.cached_tokens == 42  # its own adapter's cache
    assert s.slots[base.slot].adapter == 0 and s.slots[tuned.slot].adapter == 1


def test_a_slot_taken_by_another_adapter_drops_all_it_held() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=1))
    first = seq("first", list(range(20)), max_tokens=2)
    s.add(first)
    run_all(s)
    other = seq("other", list(range(25)), max_tokens=2)
    other.adapter = 2
    s.add(other)
    plan = step(s)
    assert plan.evict == [(0, 0)] and other.cached_tokens == 0
    assert [(w.pos, len(w.tokens)) for w in plan.work] == [(0, 25)]
