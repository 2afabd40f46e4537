"""The OpenAI encoders: typed events in, chunks and bodies out, checked against the protocol's
response models. Stream and non-stream are two views of the same events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from seekport.api.encoders.openai import AnswerMeta, OpenAIBody, OpenAIStream
from seekport.errors import UpstreamError
from seekport.protocol.chat import ChatCompletion, ChatCompletionChunk
from seekport.protocol.common import Usage
from seekport.protocol.completions import Completion
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    KeepAlive,
    ReasoningDelta,
    RoleDelta,
    TokenLogprob,
    ToolCallDelta,
    UsageReport,
)

USAGE = Usage.of(5, 4, 2, 1)


def answer() -> list[Event]:
    return [
        RoleDelta(),
        KeepAlive(),
        ReasoningDelta("想一想"),
        ContentDelta("你好", [TokenLogprob("你好", -0.1, [("你好", -0.1), ("您好", -2.5)])]),
        ToolCallDelta(0, "call_1", "get_weather", '{"city":'),
        ToolCallDelta(0, None, None, '"杭州"}'),
        Finish("tool_calls"),
        UsageReport(USAGE),
    ]


def sse(data: bytes) -> list[Any]:
    """The parsed data events of an SSE body ('[DONE]' as a string)."""
    out: list[Any] = []
    for ev in data.split(b"\n\n"):
        if ev.startswith(b"data: "):
            payload = ev[6:]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def run_stream(meta: AnswerMeta, events: list[Event]) -> bytes:
    enc = OpenAIStream(meta)
    return b"".join([enc.encode(e) for e in events] + [enc.close(), enc.done()])


def test_chat_stream_role_first_usage_on_the_finish_chunk_then_done() -> None:
    meta = AnswerMeta(model="m", chat=True, fingerprint="fp_x", top_logprobs=1)
    data = run_stream(meta, answer())
    assert b": keep-alive\n\n" in data
    chunks = sse(data)
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    for c in body:
        ChatCompletionChunk.model_validate(c)
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in body}) == 1 and body[0]["system_fingerprint"] == "fp_x"
    assert body[1]["choices"][0]["delta"] == {"reasoning_content": "想一想"}
    lp = body[2]["choices"][0]["logprobs"]["content"][0]
    assert lp["token"] == "你好" and lp["bytes"] == list("你好".encode())
    assert [t["token"] for t in lp["top_logprobs"]] == ["你好"]  # top_logprobs=1
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in body[3:5]]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":'},
    }
    assert calls[1] == {"index": 0, "function": {"arguments": '"杭州"}'}}
    last = body[-1]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"]["prompt_cache_hit_tokens"] == 2  # DeepSeek: usage on the finish chunk
    assert last["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}


def test_include_usage_puts_null_on_every_chunk_and_a_last_choices_empty_chunk() -> None:
    meta = AnswerMeta(model="m", chat=True, wants_usage=True)
    chunks = sse(run_stream(meta, answer()))[:-1]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 9


def test_a_finish_whose_usage_never_came_is_still_sent_before_done() -> None:
    chunks = sse(
        run_stream(AnswerMeta(model="m", chat=True), [ContentDelta("a"), Finish("length")])
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # role chunk made up
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1] == "[DONE]"


def test_non_stream_body_is_the_aggregate_of_the_same_events() -> None:
    out = OpenAIBody(AnswerMeta(model="m", chat=True, top_logprobs=2))
    for ev in answer():
        out.add(ev)
    body = orjson.loads(out.body())
    ChatCompletion.model_validate(body)
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] == "想一想"
    assert msg["content"] == "你好"
    assert msg["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"杭州"}'},
        }
    ]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert len(body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
    assert body["usage"]["total_tokens"] == 9


def test_text_completion_stream_and_body_carry_offsets() -> None:
    events: list[Event] = [
        ContentDelta("ab", [TokenLogprob("ab", -1.0, [("ab", -1.0)])]),
        ContentDelta("c", [TokenLogprob("c", -0.5, [("c", -0.5)])]),
        Finish("stop"),
        UsageReport(Usage.of(3, 2, 0, None)),
    ]
    meta = AnswerMeta(model="m", chat=False)
    chunks = sse(run_stream(meta, events))[:-1]
    for c in chunks:
        Completion.model_validate(c)
    assert [c["choices"][0]["logprobs"]["text_offset"] for c in chunks[:2]] == [[0], [2]]
    out = OpenAIBody(meta)
    for ev in events:
        out.add(ev)
    body = orjson.loads(out.body())
    Completion.model_validate(body)
    assert body["choices"][0]["text"] == "abc"
    assert body["choices"][0]["logprobs"]["text_offset"] == [0, 2]
    assert body["choices"][0]["logprobs"]["top_logprobs"] == [{"ab": -1.0}, {"c": -0.5}]


def upstream_events() -> list[Event]:
    """Events as the remote backend makes them: the upstream's own bytes ride along."""
    role = (
        b'data: {"id":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    )
    text = b'data: {"id":"up","x_extra":1,"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    fin = b'data: {"id":"up","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    usage = (
        b'data: {"id":"up","choices":[],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    )
    u = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    return [
        RoleDelta(raw=role),
        ContentDelta("hi", raw=text),
        Finish("stop", raw=fin),
        UsageReport(u, raw=usage),
    ]


@pytest.mark.parametrize("wants_usage", [False, True])
def test_passthrough_sends_upstream_bytes_as_they_came(wants_usage: bool) -> None:
    meta = AnswerMeta(model="m", chat=True, wants_usage=wants_usage)
    data = run_stream(meta, upstream_events())
    evs = upstream_events()
    expected = b"".join(e.raw or b"" for e in evs[:3])
    if wants_usage:
        expected += evs[3].raw or b""  # else: the usage chunk we asked for ourselves is dropped
    assert data == expected + b"data: [DONE]\n\n"


def test_without_passthrough_the_same_events_are_re_encoded() -> None:
    meta = AnswerMeta(model="m", chat=True, passthrough=False)
    chunks = sse(run_stream(meta, upstream_events()))
    assert all("x_extra" not in c for c in chunks[:-1])
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
    ]
    assert chunks[-2]["usage"]["total_tokens"] == 2


def test_in_band_error_has_the_openai_error_shape() -> None:
    (err,) = sse(OpenAIStream.error(UpstreamError("upstream broke off")))
    assert err == {
        "error": {
            "message": "upstream broke off",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_error",
        }
    }


def two_choices() -> list[Event]:
    """n=2: the choices' events interleave; one usage for the call."""
    return [
        RoleDelta(choice=0),
        RoleDelta(choice=1),
        ContentDelta("甲", choice=1),
        ContentDelta("A", choice=0),
        ToolCallDelta(0, "call_b", "f", "{}", choice=1),
        Finish("tool_calls", choice=1),
        ContentDelta("B", choice=0),
        Finish("length", choice=0),
        UsageReport(USAGE),
    ]


@pytest.mark.parametrize("wants_usage", [False, True])
def test_chat_stream_with_two_choices(wants_usage: bool) -> None:
    meta = AnswerMeta(model="m", chat=True, wants_usage=wants_usage)
    body = sse(run_stream(meta, two_choices()))[:-1]
    for c in body:
        ChatCompletionChunk.model_validate(c)
    per: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for c in body:
        for ch in c["choices"]:
            per[ch["index"]].append(ch)
    for i in (0, 1):  # each choice: its role first, its finish last, exactly once
        assert per[i][0]["delta"] == {"role": "assistant", "content": ""}
        assert [ch["finish_reason"] for ch in per[i]][1:-1] == [None] * (len(per[i]) - 2)
    assert "".join(ch["delta"].get("content") or "" for ch in per[0]) == "AB"
    assert per[0][-1]["finish_reason"] == "length"
    assert per[1][-1]["finish_reason"] == "tool_calls"
    assert per[1][2]["delta"]["tool_calls"][0]["id"] == "call_b"
    usage = [c["usage"] for c in body if c.get("usage")]
    assert usage == [USAGE.model_dump(exclude_none=True)]  # once, for the whole call
    if not wants_usage:  # DeepSeek's placement: on the last finish chunk
        assert body[-1]["choices"][0]["finish_reason"] == "length" and body[-1]["usage"]


def test_chat_body_with_two_choices() -> None:
    enc = OpenAIBody(AnswerMeta(model="m", chat=True))
    for ev in two_choices():
        enc.add(ev)
    body = orjson.loads(enc.body())
    ChatCompletion.model_validate(body)
    first, second = body["choices"]
    assert (first["index"], first["message"]["content"], first["finish_reason"]) == (
        0,
        "AB",
        "length",
    )
    assert second["index"] == 1 and second["finish_reason"] == "tool_calls"
    assert second["message"]["content"] == "甲"
    assert second["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert body["usage"] == USAGE.model_dump(exclude_none=True)


def test_completion_stream_and_body_with_two_choices() -> None:
    events: list[Event] = [
        ContentDelta("x", choice=0),
        ContentDelta("yz", choice=1),
        ContentDelta("w", choice=0),
        Finish("stop", choice=0),
        Finish("length", choice=1),
        UsageReport(USAGE),
    ]
    meta = AnswerMeta(model="m", chat=False)
    chunks = sse(run_stream(meta, events))[:-1]
    for c in chunks:
        Completion.model_validate(c)
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, str] = {}
    for c in chunks:
        ch = c["choices"][0]
        texts[ch["index"]] += ch["text"]
        if ch["finish_reason"]:
            finishes[ch["index"]] = ch["finish_reason"]
    assert texts == {0: "xw", 1: "yz"} and finishes == {0: "stop", 1: "length"}
    enc = OpenAIBody(meta)
    for ev in events:
        enc.add(ev)
    body = orjson.loads(enc.body())
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "xw", "stop"),
        (1, "yz", "length"),
    ]
