"""The local-engine settings reach llama.cpp itself: a real LocalBackend over the bundled
model, in-process, its llama.cpp context read back (the FakeRunner tests in
tests/unit/test_engine_settings.py cover the scheduler's side); and with no settings at all,
the memory-sized default decodes 16 streams together with batch-independent seeded output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from seekport.config import LocalModelConfig
from seekport.engine.runners.llamacpp import LlamaCppRunner
from seekport.engine.sizing import available_memory
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol.chat import ChatCompletionRequest
from tests.encode import stream
from tests.harness import BUNDLED

pytestmark = pytest.mark.slow


async def test_settings_are_the_llama_cpp_context() -> None:
    cfg = LocalModelConfig(
        name=BUNDLED,
        backend="local",
        n_threads=2,
        context_length=768,
        max_num_seqs=3,
        max_step_tokens=128,
    )
    b = LocalBackend(cfg)
    await b.start()
    try:
        runner = b._runner
        assert isinstance(runner, LlamaCppRunner)
        assert runner.context_params() == {
            "n_ctx": 3 * 768,  # kv cells: one stream of context_length per slot
            "n_ctx_seq": 768,
            "n_seq_max": 3,
            "n_batch": 128,
            "n_threads": 2,
            "n_threads_batch": 2,
        }
        assert b._engine is not None
        assert b._engine.cfg.max_num_seqs == 3
        assert b._engine.cfg.max_seq_cells == 768
    finally:
        await b.aclose()


# ---- the defaults: no engine settings at all


def call(content: str, **extra: Any) -> BackendCall:
    body = {"model": BUNDLED, "messages": [{"role": "user", "content": content}], **extra}
    return BackendCall("chat", BUNDLED, ChatCompletionRequest.model_validate(body), body, "r")


def content_of(event: bytes) -> str:
    if not event.startswith(b"data: {"):
        return ""
    chunk = orjson.loads(event[6:])
    return str(chunk["choices"][0]["delta"].get("content") or "") if chunk["choices"] else ""


async def text_of(events: AsyncIterator[bytes]) -> str:
    return "".join([content_of(e) async for e in events])


async def test_by_default_sixteen_streams_decode_together_and_seeds_hold() -> None:
    if available_memory() < 3.2 * (1 << 30):
        pytest.skip("under ~3 GiB available the memory rule gives fewer than 16 slots")
    b = LocalBackend(LocalModelConfig(name=BUNDLED, backend="local"))
    await b.start()
    try:
        runner, engine = b._runner, b._engine
        assert isinstance(runner, LlamaCppRunner) and engine is not None
        n = engine.cfg.max_num_seqs
        assert n >= 16 and runner.context_params()["n_seq_max"] == n
        assert runner.context_params()["n_ctx_seq"] == 4096

        probe = call("Tell a short story", max_tokens=24, temperature=1.0, seed=1234, stream=True)
        alone = await text_of(await stream(b, probe))

        others = [
            call(f"Story number {i} about the sea", max_tokens=24, logit_bias={"2": -100})
            for i in range(15)
        ]
        streams = [aiter(await stream(b, c)) for c in [*others[:7], probe, *others[7:]]]
        texts = [""] * 16
        for i, it in enumerate(streams):  # every stream's first token, before any has ended
            while not texts[i]:
                texts[i] += content_of(await asyncio.wait_for(anext(it), 120))
        assert engine.num_running == 16 and engine.num_waiting == 0
        rest = await asyncio.gather(*(text_of(it) for it in streams))
        together = texts[7] + rest[7]
        assert alone and together == alone
    finally:
        await b.aclose()
