"""A failure on the engine thread ends every open stream with a 503, the backend reports not
ready while the engine restarts, and the restarted engine serves again. Faults are injected
into the FakeRunner (its ``execute`` raises once) or the engine's ``on_step`` callback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from seekport.config import LocalModelConfig
from seekport.engine.async_engine import AsyncEngine
from seekport.engine.sampling import SamplingParams
from seekport.engine.scheduler import SchedulerConfig, StepPlan
from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import EngineFailedError, SeekportError
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol.chat import ChatCompletionRequest
from tests.encode import complete, stream
from tests.fakes import FakeRunner

EXPECTED = "t0 t1 t2 "


def seq(rid: str, n: int = 3) -> Sequence:
    return Sequence(rid, [hash(rid) % 1000, 2, 3], SamplingParams(max_tokens=n))


def engine(runner: FakeRunner, **kw: Any) -> AsyncEngine:
    cfg = SchedulerConfig(max_num_seqs=2, max_seq_cells=1 << 16, max_waiting=8)
    return AsyncEngine(runner, cfg, name="m", **kw)


async def collect(e: AsyncEngine, s: Sequence) -> str:
    return "".join([d.text async for d in e.submit(s)])


async def wait_ready(ready: Any, timeout_s: float = 5) -> float:
    t0 = time.monotonic()
    while not ready():
        assert time.monotonic() - t0 < timeout_s, "the engine did not come back"
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def first(it: Any) -> TokenDelta:
    return await asyncio.wait_for(anext(it), 5)


async def test_a_runner_failure_ends_every_open_stream_and_the_engine_restarts() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner)
    running = [aiter(e.submit(seq(f"run{i}", 10_000))) for i in range(2)]
    queued = aiter(e.submit(seq("queued")))  # both slots are taken: it waits
    for it in running:
        await first(it)
    runner.fail_next()
    for it in [*running, queued]:
        with pytest.raises(EngineFailedError) as exc:
            while True:
                await first(it)
        assert exc.value.status_code == 503 and exc.value.retry_after == 1
        assert "RunnerFault" in exc.value.message
    await wait_ready(lambda: e.ready)
    assert runner.resets == 1 and e.failures == 1
    outs = await asyncio.wait_for(
        asyncio.gather(*(collect(e, seq(f"after{i}")) for i in range(3))), 5
    )
    assert outs == [EXPECTED] * 3
    assert e.num_running == 0 and e.num_waiting == 0
    await e.aclose()


async def test_an_on_step_failure_is_an_engine_failure_too() -> None:
    runner = FakeRunner(step_s=0.002)
    calls = 0

    def on_step(plan: StepPlan) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("metrics broke")

    e = engine(runner, on_step=on_step)
    with pytest.raises(EngineFailedError, match="RuntimeError"):
        await asyncio.wait_for(collect(e, seq("long", 100)), 5)
    await wait_ready(lambda: e.ready)
    assert await asyncio.wait_for(collect(e, seq("next")), 5) == EXPECTED
    await e.aclose()


async def test_repeated_failures_back_off_and_one_good_step_resets_that() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner)
    for _ in range(3):
        runner.fail_next()
        with pytest.raises(EngineFailedError):
            await asyncio.wait_for(collect(e, seq("x")), 5)
        waited = await wait_ready(lambda: e.ready)
    assert e.failures == 3 and runner.resets == 3
    assert waited >= 0.15  # third failure in a row: 0.2 s before the restart
    assert await asyncio.wait_for(collect(e, seq("ok")), 5) == EXPECTED
    runner.fail_next()
    with pytest.raises(EngineFailedError):
        await asyncio.wait_for(collect(e, seq("y")), 5)
    assert await wait_ready(lambda: e.ready) < 0.1  # after a good step: at once again
    await e.aclose()


async def test_a_malformed_sequence_is_refused_alone() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner)
    other = asyncio.ensure_future(collect(e, seq("fine", 20)))
    bad = Sequence("bad", [1, 2], SamplingParams(max_tokens=None))  # type: ignore[arg-type]
    with pytest.raises(SeekportError, match="TypeError"):
        await asyncio.wait_for(collect(e, bad), 5)
    assert await asyncio.wait_for(other, 5) == "".join(f"t{i} " for i in range(20))
    assert e.ready and e.failures == 0
    await e.aclose()


async def test_closing_during_a_restart_back_off_returns_promptly() -> None:
    runner = FakeRunner(step_s=0.002)
    e = engine(runner)
    for _ in range(2):  # the second failure in a row waits before restarting
        runner.fail_next()
        with pytest.raises(EngineFailedError):
            await asyncio.wait_for(collect(e, seq("x")), 5)
    t0 = time.monotonic()
    await asyncio.wait_for(e.aclose(), 5)
    assert time.monotonic() - t0 < 1
    assert not e.ready


# ---- through LocalBackend: what the gateway and /health/ready see


def call(*, stream: bool, max_tokens: int) -> BackendCall:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    body["max_tokens"] = max_tokens
    return BackendCall("chat", "m", ChatCompletionRequest.model_validate(body), body, "r")


async def test_the_backend_is_not_ready_while_it_recovers_and_waiting_bodies_get_503() -> None:
    runner = FakeRunner(step_s=0.002, reset_s=0.3)
    cfg = LocalModelConfig(name="m", backend="local", max_num_seqs=1, max_waiting=4)
    b = LocalBackend(cfg, None, runner=runner)
    await b.start()
    assert b.ready()
    events = aiter(await stream(b, call(stream=True, max_tokens=2000)))
    await anext(events)  # role
    await anext(events)  # a first token: it runs
    waiting = asyncio.ensure_future(complete(b, call(stream=False, max_tokens=5)))
    await asyncio.sleep(0.02)
    runner.fail_next()
    with pytest.raises(EngineFailedError) as exc:  # after the first byte: the gateway sends
        async for _ in events:  # it in-band as an SSE error event
            pass
    assert exc.value.status_code == 503
    with pytest.raises(EngineFailedError):  # a non-stream request still waiting: a 503
        await asyncio.wait_for(waiting, 5)
    assert not b.ready()  # resetting the runner takes 0.3 s here
    with pytest.raises(EngineFailedError):  # refused before any byte while it restarts
        await stream(b, call(stream=True, max_tokens=5))
    await wait_ready(b.ready)
    body = orjson.loads(await asyncio.wait_for(complete(b, call(stream=False, max_tokens=3)), 5))
    assert body["choices"][0]["message"]["content"] == EXPECTED
    await b.aclose()
    assert not b.ready()
