"""Every local-engine setting takes effect: a real LocalBackend and AsyncEngine over the
scripted FakeRunner (no model). n_threads, and the sizes llama.cpp itself is given, are
checked on the real model in tests/e2e/test_engine_real_model.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from seekport.config import LocalModelConfig
from seekport.engine.sampling import SamplingParams
from seekport.engine.sequence import Sequence
from seekport.errors import ContextLengthExceededError, OverloadedError, SeekportError
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol import sse
from seekport.protocol.chat import ChatCompletionRequest
from tests.encode import complete, stream
from tests.fakes import FakeRunner

_ids = iter(range(1_000_000))


async def started(runner: FakeRunner, **fields: Any) -> LocalBackend:
    cfg = LocalModelConfig(name="m", backend="local", **fields)
    b = LocalBackend(cfg, None, runner=runner)
    await b.start()
    return b


def call(content: str = "hi", *, stream: bool = True, **extra: Any) -> BackendCall:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    body["stream"] = stream
    rid = f"r{next(_ids)}"
    return BackendCall("chat", "m", ChatCompletionRequest.model_validate(body), body, rid)


def words(n: int, tag: str) -> str:
    """A prompt of ``n`` distinct words (no prefix shared with another tag's prompt)."""
    return " ".join(f"{tag}{i}" for i in range(n))


async def drain(events: AsyncIterator[bytes]) -> list[bytes]:
    return [e async for e in events]


def text_of(events: list[bytes]) -> str:
    chunks = [orjson.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_the_engine_is_given_the_settings_as_they_are() -> None:
    b = await started(
        FakeRunner(),
        max_num_seqs=3,
        context_length=512,
        max_step_tokens=96,
        max_prefill_while_decoding=7,
        max_waiting=5,
    )
    engine = b._engine
    assert engine is not None
    given = engine.cfg
    assert engine._engine.scheduler.cfg is given  # no rebuilt copy on the way down
    assert (
        given.max_num_seqs,
        given.max_seq_cells,
        given.max_step_tokens,
        given.max_prefill_while_decoding,
        given.max_waiting,
    ) == (3, 512, 96, 7, 5)
    assert given.kv_cells == 3 * 512  # one stream of context_length cells per slot
    await b.aclose()


@pytest.mark.parametrize("n", [1, 3])
async def test_max_num_seqs_is_the_batch(n: int) -> None:
    runner = FakeRunner(step_s=0.002)
    b = await started(runner, max_num_seqs=n, max_waiting=16)
    streams = [await stream(b, call(max_tokens=8)) for _ in range(6)]
    outs = await asyncio.gather(*(drain(s) for s in streams))
    assert all(text_of(o) == "".join(f"t{i} " for i in range(8)) for o in outs)
    assert max(runner.batch_sizes) == n
    await b.aclose()


async def test_context_length_is_each_slots_stream() -> None:
    b = await started(FakeRunner(words=True), context_length=200)
    # the gateway refuses what cannot fit a context...
    with pytest.raises(ContextLengthExceededError):
        await stream(b, call(words(150, "a"), max_tokens=60))
    # ...exactly filling one is served (3 template tokens + 147 words + 50 = 200 cells)...
    out = await drain(await stream(b, call(words(147, "b"), max_tokens=50)))
    assert text_of(out).count(" ") == 50
    # ...and the engine itself holds a sequence to one stream of context_length cells
    assert b._engine is not None
    seq = Sequence("big", list(range(150)), SamplingParams(max_tokens=51))
    with pytest.raises(SeekportError, match="200 KV cells"):
        async for _ in b._engine.submit(seq):
            pass
    await b.aclose()


async def test_max_step_tokens_bounds_each_step() -> None:
    runner = FakeRunner(words=True)
    b = await started(runner, max_step_tokens=64, max_num_seqs=2)
    await drain(await stream(b, call(words(300, "p"), max_tokens=4)))
    chunks = [c.tokens for step in runner.steps for c in step if c.prefill]
    assert chunks == [64, 64, 64, 64, 47]  # 303 prompt tokens, alone: whole budget each step
    assert max(sum(c.tokens for c in step) for step in runner.steps) == 64
    await b.aclose()


@pytest.mark.parametrize("throttle", [5, 24])
async def test_max_prefill_while_decoding_throttles_new_prompts(throttle: int) -> None:
    runner = FakeRunner(step_s=0.001, words=True)
    b = await started(runner, max_prefill_while_decoding=throttle, max_num_seqs=2)
    first = await stream(b, call("go", max_tokens=400))
    it = aiter(first)
    for _ in range(3):  # role chunk, then the first stream is decoding
        await anext(it)
    late = call(words(100, "late"), max_tokens=3)
    await drain(await stream(b, late))
    chunks = [
        c.tokens
        for step in runner.steps
        if any(not c.prefill for c in step)  # steps in which someone decoded
        for c in step
        if c.prefill and c.request_id == late.request_id
    ]
    assert chunks and max(chunks) == throttle
    assert sum(chunks) == 100  # 103 prompt tokens, the 3 template tokens were cached
    await it.aclose()  # type: ignore[attr-defined]
    await b.aclose()


async def test_max_waiting_bounds_the_line_with_503() -> None:
    b = await started(FakeRunner(step_s=0.01), max_num_seqs=1, max_waiting=2)
    streams = [await stream(b, call(max_tokens=500)) for _ in range(3)]  # 1 runs + 2 wait
    with pytest.raises(OverloadedError) as exc:
        await stream(b, call(max_tokens=5))
    assert exc.value.retry_after == 1
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]
    await b.aclose()


async def blocker(b: LocalBackend) -> AsyncIterator[bytes]:
    """A stream that holds the only slot until it is closed."""
    events = await stream(b, call("block", max_tokens=900))
    it = aiter(events)
    await anext(it)
    await anext(it)  # its first token: it runs
    return it


async def test_keepalive_interval_s_spaces_the_keepalives_of_a_queued_stream() -> None:
    b = await started(FakeRunner(step_s=0.005), max_num_seqs=1, keepalive_interval_s=0.05)
    held = await blocker(b)
    queued = aiter(await stream(b, call(max_tokens=3)))
    assert await anext(queued) != sse.KEEP_ALIVE  # the role chunk goes first
    t0 = time.monotonic()
    gaps = []
    for _ in range(4):
        assert await asyncio.wait_for(anext(queued), 2) == sse.KEEP_ALIVE
        gaps.append(time.monotonic() - t0)
    assert 0.15 <= gaps[-1] < 1.0  # four keep-alives every 0.05 s, not every 10 s
    await held.aclose()  # type: ignore[attr-defined]
    rest = [e async for e in queued]
    assert "t0 t1 t2 " in text_of(rest)
    await b.aclose()


async def test_max_queue_wait_s_ends_the_wait_with_503() -> None:
    b = await started(FakeRunner(step_s=0.005), max_num_seqs=1, max_queue_wait_s=0.3)
    held = await blocker(b)
    t0 = time.monotonic()
    with pytest.raises(OverloadedError, match=r"waited 0\.3 s"):
        await complete(b, call(stream=False, max_tokens=3))
    assert 0.3 <= time.monotonic() - t0 < 2
    await held.aclose()  # type: ignore[attr-defined]
    await b.aclose()


async def test_an_answer_dropped_before_its_first_event_leaves_the_engine() -> None:
    b = await started(FakeRunner(step_s=0.01), max_num_seqs=1, max_waiting=2)
    engine = b._engine
    assert engine is not None
    running = await stream(b, call(max_tokens=500))  # holds the one slot
    await anext(running)  # the role chunk
    await anext(running)  # a first token: it runs
    queued = await b.generate(call(max_tokens=5))
    assert engine.num_waiting == 1
    await queued.aclose()  # never iterated: the client left before its first byte
    for _ in range(100):
        if engine.num_waiting == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.num_waiting == 0
    await running.aclose()
    await b.aclose()
