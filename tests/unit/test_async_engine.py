"""The asyncio front of the engine over a scripted runner: batching, bounds, abort, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from seekport.engine.async_engine import AsyncEngine
from seekport.engine.sampling import SamplingParams
from seekport.engine.scheduler import SchedulerConfig
from seekport.engine.sequence import Sequence
from seekport.errors import OverloadedError
from tests.fakes import FakeRunner


def seq(rid: str, n: int = 3, prompt: list[int] | None = None) -> Sequence:
    return Sequence(rid, prompt or [hash(rid) % 1000, 2, 3], SamplingParams(max_tokens=n))


def engine(runner: FakeRunner, **cfg: int) -> AsyncEngine:
    return AsyncEngine(runner, SchedulerConfig(**{"max_seq_cells": 1 << 16, **cfg}), name="m")


async def collect(e: AsyncEngine, s: Sequence) -> tuple[str, str | None]:
    deltas = [d async for d in e.submit(s)]
    return "".join(d.text for d in deltas), deltas[-1].finish_reason


async def test_one_sequence_streams_all_tokens() -> None:
    e = engine(FakeRunner())
    assert await collect(e, seq("a")) == ("t0 t1 t2 ", "length")
    await e.aclose()


async def test_end_of_generation_token_stops_with_stop() -> None:
    e = engine(FakeRunner(script=["x", "y"]))
    assert await collect(e, seq("a", n=10)) == ("xy", "stop")
    await e.aclose()


async def test_concurrent_sequences_share_steps() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner, max_num_seqs=4)
    outs = await asyncio.gather(*(collect(e, seq(f"r{i}", n=20)) for i in range(4)))
    assert all(o == ("".join(f"t{i} " for i in range(20)), "length") for o in outs)
    assert max(runner.batch_sizes) == 4  # all four decoded in the same step
    await e.aclose()


async def test_sequences_beyond_max_num_seqs_start_in_arrival_order() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner, max_num_seqs=2, max_waiting=8)
    await asyncio.gather(*(collect(e, seq(f"r{i}", n=5)) for i in range(6)))
    assert runner.started == [f"r{i}" for i in range(6)]
    await e.aclose()


async def test_full_waiting_line_is_overloaded_with_retry_after() -> None:
    e = engine(FakeRunner(step_s=0.01), max_num_seqs=1, max_waiting=2)
    streams = [e.submit(seq(f"s{i}", n=50)) for i in range(3)]  # 1 for the free slot + 2
    with pytest.raises(OverloadedError) as exc:
        e.submit(seq("refused"))
    assert exc.value.retry_after is not None
    for s in streams:
        s.close()
    await e.aclose()


async def test_abort_frees_the_slot_within_a_step() -> None:
    runner = FakeRunner(step_s=0.005)
    e = engine(runner, max_num_seqs=1, max_waiting=4)
    stream = e.submit(seq("long", 10_000))
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break  # closing the iterator aborts the sequence
    assert await asyncio.wait_for(collect(e, seq("next")), timeout=5) == ("t0 t1 t2 ", "length")
    assert "long" in runner.ended
    await e.aclose()


async def test_a_waiting_sequence_aborted_never_starts() -> None:
    runner = FakeRunner(step_s=0.01)
    e = engine(runner, max_num_seqs=1, max_waiting=4)
    busy = asyncio.ensure_future(collect(e, seq("busy", 5)))
    await asyncio.sleep(0.02)
    waiting = e.submit(seq("gone"))
    waiting.close()
    await busy
    await asyncio.sleep(0.05)
    assert "gone" not in runner.started
    await e.aclose()


async def test_shutdown_ends_open_streams_with_overloaded() -> None:
    e = engine(FakeRunner(step_s=0.01), max_num_seqs=1)
    stream = e.submit(seq("open", 10_000))
    it = aiter(stream)
    await anext(it)
    await e.aclose()
    with pytest.raises(OverloadedError):
        while True:
            await asyncio.wait_for(anext(it), 5)
