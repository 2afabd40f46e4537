"""LocalBackend's typed events, as the OpenAI encoders turn them into bodies and chunks.

The runner is a scripted fake (the real llama.cpp runner is exercised in tests/e2e); it lets us
pin the R1 reasoning split, which the bundled model never produces on its own. Every chunk and
body is also checked against the protocol's response models.
"""

from __future__ import annotations

from typing import Any

import orjson

from seekport.api.encoders.openai import AnswerMeta, OpenAIBody, OpenAIStream
from seekport.config import LocalModelConfig
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from tests.fakes import FakeRunner

PIECES = ["<think>", "Let me", " think", "</think>", "The answer", " is 4"]  # then EOS


async def backend(pieces: list[str]) -> LocalBackend:
    cfg = LocalModelConfig(name="r1-local", backend="local", reasoning="deepseek-r1")
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
    req = ChatCompletionRequest.model_validate(body)
    return BackendCall("chat", "r1-local", req, body, "r1", stream=stream)


def meta(b: LocalBackend) -> AnswerMeta:
    return AnswerMeta(model=b.model, chat=True, fingerprint=b.fingerprint, reasoning=b.reasoning)


async def complete(b: LocalBackend, c: BackendCall) -> dict[str, Any]:
    out = OpenAIBody(meta(b))
    async for ev in await b.generate(c):
        out.add(ev)
    body = orjson.loads(out.body())
    ChatCompletion.model_validate(body)
    return dict(body)


async def stream(b: LocalBackend, c: BackendCall) -> list[bytes]:
    enc = OpenAIStream(meta(b))
    events = [enc.encode(ev) async for ev in await b.generate(c)]
    events.append(enc.close())
    data = b"".join(events)
    for e in data.split(b"\n\n"):
        if e.startswith(b"data: {"):
            ChatCompletionChunk.model_validate_json(e[6:])
    return [e + b"\n\n" for e in data.split(b"\n\n") if e]


async def test_non_stream_splits_reasoning_content_and_counts_its_tokens() -> None:
    b = await backend(PIECES)
    body = await complete(b, call(False))
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
    events = await stream(b, call(True))
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
    cfg = LocalModelConfig(name="plain", backend="local")
    b = LocalBackend(cfg, None, runner=FakeRunner(script=PIECES))  # type: ignore[arg-type]
    await b.start()
    body = await complete(b, call(False))
    msg = body["choices"][0]["message"]
    assert "reasoning_content" not in msg
    assert msg["content"].startswith("<think>Let me think</think>")
    await b.aclose()


TOOL_PIECES = [
    "Let me check. ",
    "<tool_",
    "call>",
    '{"name": "get_weather", ',
    '"arguments": {"city": "杭州"}}',
    "</tool_call>",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def tool_backend() -> LocalBackend:
    cfg = LocalModelConfig(name="r1-local", backend="local", tool_parser="hermes")
    b = LocalBackend(cfg, None, runner=FakeRunner(script=TOOL_PIECES))
    await b.start()
    return b


async def test_tool_calls_are_parsed_into_the_message() -> None:
    b = await tool_backend()
    body = await complete(b, call(False, tools=TOOLS))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] == "Let me check. "
    (tc,) = msg["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "get_weather"
    assert orjson.loads(tc["function"]["arguments"]) == {"city": "杭州"}
    await b.aclose()


async def test_tool_calls_stream_as_deltas_with_index_and_finish_tool_calls() -> None:
    b = await tool_backend()
    events = await stream(b, call(True, tools=TOOLS))
    chunks = [orjson.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    calls = [
        tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [(tc["index"], tc["function"]["name"]) for tc in calls] == [(0, "get_weather")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "Let me check. "
    await b.aclose()
