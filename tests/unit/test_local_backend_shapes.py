"""LocalBackend shapes engine output into OpenAI/DeepSeek bodies and chunks.

The runner is a scripted fake (the real llama.cpp runner is exercised in tests/e2e); it lets us
pin the R1 reasoning split, which the bundled model never produces on its own.
"""

from __future__ import annotations

from typing import Any

import orjson

from seekport.config import ModelConfig
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol.chat import ChatCompletionRequest
from tests.fakes import FakeRunner

PIECES = ["<think>", "Let me", " think", "</think>", "The answer", " is 4"]  # then EOS


async def backend(pieces: list[str]) -> LocalBackend:
    cfg = ModelConfig(name="r1-local", backend="local", reasoning="deepseek-r1")
    b = LocalBackend(cfg, None, runner=FakeRunner(script=pieces))  # type: ignore[arg-type]
    await b.start()
    return b


def call(stream: bool, **extra: Any) -> BackendCall:
    body = {
        "model": "r1-local",
        "messages": [{"role": "user", "content": "2+2?"}],
        "stream": stream,
        **extra,
    }
    return BackendCall("chat", "r1-local", ChatCompletionRequest.model_validate(body), body, "r1")


async def test_non_stream_splits_reasoning_content_and_counts_its_tokens() -> None:
    b = await backend(PIECES)
    body = orjson.loads(await b.complete(call(False)))
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] == "Let me think"
    assert msg["content"] == "The answer is 4"
    usage = body["usage"]
    assert usage["completion_tokens"] == 7
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 4
    assert usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"] == 4
    await b.aclose()


async def test_stream_sends_reasoning_deltas_before_content_deltas() -> None:
    b = await backend(PIECES)
    events = [e async for e in await b.stream(call(True))]
    chunks = [orjson.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    kinds = [k for d in deltas[1:] for k in d if d[k]]
    assert kinds == ["reasoning_content", "reasoning_content", "content", "content"]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Let me think"
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    await b.aclose()


async def test_model_without_parser_keeps_think_tags_in_content() -> None:
    cfg = ModelConfig(name="plain", backend="local")
    b = LocalBackend(cfg, None, runner=FakeRunner(script=PIECES))  # type: ignore[arg-type]
    await b.start()
    body = orjson.loads(await b.complete(call(False)))
    msg = body["choices"][0]["message"]
    assert "reasoning_content" not in msg
    assert msg["content"].startswith("<think>Let me think</think>")
    await b.aclose()
