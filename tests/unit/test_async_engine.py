"""The asyncio front of the engine with a fake runner: FIFO, bounded queue, abort."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from seekport.engine.async_engine import AsyncEngine
from seekport.engine.sampling import SamplingParams
from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import OverloadedError


class FakeRunner:
    """Emits ``max_tokens`` tokens, one per ``step`` seconds; records the order of starts."""

    def __init__(self, step: float = 0.0) -> None:
        self.step = step
        self.started: list[str] = []
        self.stopped_early: list[str] = []
        self.lock = threading.Lock()

    def generate(self, seq: Sequence) -> Iterator[TokenDelta]:
        self.started.append(seq.request_id)
        for i in range(seq.params.max_tokens):
            if seq.cancelled:
                self.stopped_early.append(seq.request_id)
                return
            threading.Event().wait(self.step)
            seq.completion_tokens += 1
            last = i == seq.params.max_tokens - 1
            yield TokenDelta(f"t{i} ", "length" if last else None)


def seq(rid: str, n: int = 3) -> Sequence:
    return Sequence(rid, [1, 2, 3], SamplingParams(max_tokens=n))


async def collect(engine: AsyncEngine, s: Sequence) -> str:
    return "".join([d.text async for d in engine.submit(s)])


async def test_one_sequence_streams_all_tokens() -> None:
    engine = AsyncEngine(FakeRunner(), max_waiting=4, name="m")
    assert await collect(engine, seq("a")) == "t0 t1 t2 "
    await engine.aclose()


async def test_waiting_sequences_run_in_arrival_order() -> None:
    runner = FakeRunner(step=0.005)
    engine = AsyncEngine(runner, max_waiting=8, name="m")
    outs = await asyncio.gather(*(collect(engine, seq(f"r{i}")) for i in range(5)))
    assert runner.started == [f"r{i}" for i in range(5)]
    assert all(o == "t0 t1 t2 " for o in outs)
    await engine.aclose()


async def test_full_queue_is_overloaded_with_retry_after() -> None:
    engine = AsyncEngine(FakeRunner(step=0.05), max_waiting=1, name="m")
    first = engine.submit(seq("a", 20))
    second = engine.submit(seq("b"))
    await asyncio.sleep(0.05)  # "a" holds the slot, "b" waits
    with pytest.raises(OverloadedError) as exc:
        engine.submit(seq("c"))
    assert exc.value.retry_after is not None
    first.close()
    second.close()
    await engine.aclose()


async def test_abort_stops_generation_and_frees_the_slot() -> None:
    runner = FakeRunner(step=0.01)
    engine = AsyncEngine(runner, max_waiting=4, name="m")
    stream = engine.submit(seq("long", 1000))
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break  # closing the iterator aborts the sequence
    assert await asyncio.wait_for(collect(engine, seq("next")), timeout=5) == "t0 t1 t2 "
    assert runner.stopped_early == ["long"]
    await engine.aclose()


async def test_a_waiting_sequence_aborted_never_starts() -> None:
    runner = FakeRunner(step=0.02)
    engine = AsyncEngine(runner, max_waiting=4, name="m")
    busy = asyncio.ensure_future(collect(engine, seq("busy", 5)))
    await asyncio.sleep(0.01)
    waiting = engine.submit(seq("gone"))
    waiting.close()
    await busy
    await asyncio.sleep(0.05)
    assert "gone" not in runner.started
    await engine.aclose()


async def test_a_burst_of_submits_respects_the_waiting_bound() -> None:
    # No await between the submits: the slot is not taken yet, the bound must still hold.
    engine = AsyncEngine(FakeRunner(step=0.01), max_waiting=1, name="m")
    admitted, rejected = [], 0
    for i in range(5):
        try:
            admitted.append(engine.submit(seq(f"b{i}")))
        except OverloadedError:
            rejected += 1
    assert (len(admitted), rejected) == (2, 3)  # one running, one waiting
    for s in admitted:
        s.close()
    await engine.aclose()


async def test_a_closed_waiting_request_frees_its_place_at_once() -> None:
    engine = AsyncEngine(FakeRunner(step=0.02), max_waiting=1, name="m")
    running = engine.submit(seq("run", 20))
    waiting = engine.submit(seq("wait"))
    with pytest.raises(OverloadedError):
        engine.submit(seq("refused"))
    waiting.close()  # the client behind it hung up
    third = engine.submit(seq("third"))  # its place is free without waiting for the slot
    running.close()
    third.close()
    await engine.aclose()
