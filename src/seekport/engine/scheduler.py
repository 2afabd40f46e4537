"""Continuous batching: which tokens of which sequences go into the next llama.cpp batch.

Pure Python, no model. One ``schedule()`` call plans one step:

1. every running sequence past its prefill decodes one token (its last sampled one);
2. sequences still prefilling get the next chunk of their prompt, within the step's token
   budget, so long prompts never stall running streams;
3. waiting sequences are admitted first-come, first-served while a slot and budget remain
   (the head of the line is never overtaken, so nobody starves).

The KV cache is modelled the way the runner builds it: one stream of ``max_seq_cells`` cells
per slot (llama.cpp ``kv_unified = false``, ``n_ctx_seq``), not one pool shared by all slots.
A sequence runs entirely in its slot's stream, so it needs a free slot and nothing else:
``prompt + max_tokens`` (its reservation, counted for the metrics) never exceeds a stream
(``add`` refuses it), there is no preemption, and admitting a sequence never takes cells from
another slot. A finished, stopped or cancelled sequence returns its reservation at once. What
it computed stays in its slot as a prefix cache: the next turn of a conversation, whose prompt
extends everything the slot holds, takes that slot and skips the shared part. A prompt that
shares only part of a slot's tokens (the same system prompt, then another conversation) runs in
an empty or least recently used slot and gets the shared prefix copied over (a cheap llama.cpp
``seq_cp``), from any slot, running ones included: a burst of requests with one system prompt
computes it once, and no conversation's history is overwritten by another's. An idle cache is
discarded only when its own slot is taken, least recently used first; never to make room
elsewhere, since each slot's cells are its own. The choices of one request (``n`` > 1) share
their prompt outright: the first computes it, the others (``after`` it) are admitted once it
has, copy all of it but the last token and compute that one for their own KV; their first
token is sampled from the first choice's logits row (the runner keeps it), so a greedy request
starts every choice alike. A slot's tokens are those of one LoRA adapter (or of the base
alone): KV computed with one adapter is no prefix of a sequence running another.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from seekport.engine.sequence import Sequence
from seekport.errors import OverloadedError


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    """What the engine is given, as it is given (``LocalBackend`` builds it from the model's
    settings): nothing downstream rebuilds or overrides a field."""

    max_num_seqs: int = 8  # slots: sequences decoding together (llama.cpp n_seq_max)
    # KV cells of one slot's own stream (llama.cpp n_ctx_seq, kv_unified=False): what one
    # sequence's prompt + max_tokens may use (the model's context_length)
    max_seq_cells: int = 4096
    max_step_tokens: int = 512  # tokens per step (llama.cpp n_batch): decodes + prefill
    # prompt tokens per step while other sequences are decoding: small chunks keep their
    # inter-token gaps short and spread a burst of new prompts over several steps, so
    # requests that arrive together do not stay in lock-step (measured on the bundled model,
    # 8 closed-loop clients: TTFT p50 553 ms at 512, 319 ms at 32, same throughput)
    max_prefill_while_decoding: int = 32
    max_waiting: int = 64  # waiting line beyond the free slots; beyond it, 503

    @property
    def kv_cells(self) -> int:
        """KV cells of the whole cache: one stream per slot."""
        return self.max_num_seqs * self.max_seq_cells


@dataclass(slots=True)
class Slot:
    index: int  # the llama.cpp seq_id
    tokens: list[int] = field(default_factory=list)  # tokens whose KV the slot holds
    adapter: int = 0  # the adapter those tokens were computed with
    owner: Sequence | None = None
    last_used: int = 0


@dataclass(slots=True)
class Work:
    """Tokens of one sequence for this step: KV positions ``pos .. pos+len-1``."""

    seq: Sequence
    tokens: list[int]
    pos: int
    sample: bool  # logits wanted for the last token: a new token is sampled after it


@dataclass(slots=True)
class StepPlan:
    work: list[Work] = field(default_factory=list)
    # (slot, from_pos): drop the slot's KV from this position on before running the batch
    evict: list[tuple[int, int]] = field(default_factory=list)
    # (src_slot, dst_slot, keep): make dst's KV a copy of src's first ``keep`` positions
    # (applied before ``evict``)
    copies: list[tuple[int, int, int]] = field(default_factory=list)
    aborted: list[Sequence] = field(default_factory=list)  # cancelled since the last step

    @property
    def num_tokens(self) -> int:
        return sum(len(w.tokens) for w in self.work)

    @property
    def num_decode(self) -> int:
        return sum(1 for w in self.work if w.pos >= len(w.seq.prompt_tokens))


class Scheduler:
    """Not thread-safe: owned by the engine loop. Other threads hand work over by queue."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.slots = [Slot(i) for i in range(cfg.max_num_seqs)]
        self.reserved = 0  # KV cells promised to running sequences
        self._tick = 0

    # ---- what the engine reports

    @property
    def kv_cells_used(self) -> int:
        """Cells reserved by running sequences plus those held by idle prefix caches."""
        return self.reserved + sum(len(s.tokens) for s in self.slots if s.owner is None)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- changes

    def add(self, seq: Sequence) -> None:
        """Queue ``seq``. OverloadedError when ``max_waiting`` sequences already wait beyond
        the free slots (the next step admits those); ValueError when it cannot fit a slot."""
        free = self.cfg.max_num_seqs - len(self.running)
        # a request's further choices come with its first one: admitted or refused with it
        if seq.after is None and len(self.waiting) >= self.cfg.max_waiting + free:
            raise OverloadedError(
                f"{len(self.waiting)} requests are waiting for the engine; retry later",
                retry_after=1,
            )
        cap = self.cfg.max_seq_cells
        if seq.kv_need > cap:
            raise ValueError(
                f"prompt + max_tokens ({seq.kv_need}) exceeds the {cap} KV cells a sequence "
                "may use; callers check this before adding"
            )
        self.waiting.append(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Return the sequence's reservation; its computed KV stays as a prefix cache."""
        seq.finish_reason = reason
        if seq in self.running:
            self.running.remove(seq)
            self.reserved -= seq.kv_need
            slot = self.slots[seq.slot]
            slot.owner = None
            self._tick += 1
            slot.last_used = self._tick
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def schedule(self) -> StepPlan:
        plan = StepPlan()
        for seq in [s for s in (*self.running, *self.waiting) if s.cancelled]:
            self.finish(seq, "cancelled")
            plan.aborted.append(seq)
        budget = self.cfg.max_step_tokens
        for seq in self.running:
            if not seq.prefilling:
                plan.work.append(Work(seq, [seq.output_tokens[-1]], seq.num_computed, True))
                budget -= 1
        # Prompt tokens this step: the whole budget for a prompt that runs alone, else the
        # throttle (so running streams keep flowing and a burst is spread over steps).
        throttle = self.cfg.max_prefill_while_decoding
        prefill = min(budget, throttle) if plan.work else budget
        for seq in self.running:
            if seq.prefilling and prefill > 0:
                prefill -= self._prefill(plan, seq, prefill)
                prefill = min(prefill, throttle - plan.num_tokens + plan.num_decode)
        while self.waiting and prefill > 0 and len(self.running) < self.cfg.max_num_seqs:
            if _waits_for_prompt(self.waiting[0]):
                break  # FIFO: the line moves on when the prompt it shares is computed
            seq = self.waiting.popleft()  # FIFO: a free slot is all a sequence waits for
            self._admit(plan, seq)
            self.running.append(seq)
            prefill -= self._prefill(plan, seq, prefill)
            prefill = min(prefill, throttle - plan.num_tokens + plan.num_decode)
        return plan

    def complete(self, plan: StepPlan) -> None:
        """The batch ran: its tokens are in the KV cache now."""
        for w in plan.work:
            w.seq.num_computed += len(w.tokens)
            self.slots[w.seq.slot].tokens.extend(w.tokens)

    # ---- internals

    def _prefill(self, plan: StepPlan, seq: Sequence, budget: int) -> int:
        start = seq.num_computed
        chunk = seq.prompt_tokens[start : start + budget]
        done = start + len(chunk) == len(seq.prompt_tokens)
        plan.work.append(Work(seq, chunk, start, done))
        return len(chunk)

    def _admit(self, plan: StepPlan, seq: Sequence) -> None:
        prompt = seq.prompt_tokens
        free = [(s, _shared(s, seq)) for s in self.slots if s.owner is None]
        # Where the sequence runs: a free slot it extends without discarding anything (the
        # longest such prefix: the previous turn of this conversation; else an empty slot);
        # failing that, the least recently used one. A cache that shares only part of its
        # tokens (a system prompt, then another conversation) is not overwritten: its prefix
        # is copied instead, so both conversations keep their history.
        slot, hit = min(
            free,
            key=lambda sh: (1, sh[0].last_used, 0) if len(sh[0].tokens) > sh[1] else (0, 0, -sh[1]),
        )
        # any slot, running ones included, may hold a longer prefix: copy it over
        src, src_hit = max(
            ((s, _shared(s, seq)) for s in self.slots),
            key=lambda sh: sh[1],
        )
        limit = len(prompt) - 1  # one token must run to get logits
        copy = src_hit > hit and src is not slot
        copied = src.tokens[: min(src_hit, limit)] if copy else []
        # Only the chosen slot's own cache may be discarded: the other slots' streams are
        # theirs, and the sequence fits its own (add() checked kv_need <= max_seq_cells).
        if copy:
            hit = len(copied)
            plan.copies.append((src.index, slot.index, hit))
            slot.tokens = copied
        else:
            hit = min(hit, limit)
            if len(slot.tokens) > hit:
                plan.evict.append((slot.index, hit))
                del slot.tokens[hit:]
        slot.owner = seq
        slot.adapter = seq.adapter
        seq.slot = slot.index
        seq.num_computed = hit
        seq.cached_tokens = hit
        self.reserved += seq.kv_need


def _waits_for_prompt(seq: Sequence) -> bool:
    """A further choice whose first choice is still computing the prompt they share."""
    first = seq.after
    return first is not None and first.finish_reason is None and first.prefilling


def _shared(slot: Slot, seq: Sequence) -> int:
    """Prompt tokens of ``seq`` whose KV ``slot`` holds (none under another adapter)."""
    return _common_prefix(slot.tokens, seq.prompt_tokens) if slot.adapter == seq.adapter else 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
