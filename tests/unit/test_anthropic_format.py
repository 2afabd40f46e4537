"""The Anthropic Messages format without a server: request translation, model-name mapping,
the stream and body encoders over typed events, and the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from seekport.api.encoders.anthropic import AnthropicBody, AnthropicStream, MessageMeta
from seekport.api.errors import anthropic_error_body
from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SeekportError,
    UpstreamError,
    UpstreamStatusError,
)
from seekport.protocol.anthropic import (
    MessagesRequest,
    chat_body,
    chat_request,
    served_model,
    user_id,
)
from seekport.protocol.common import Usage
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    KeepAlive,
    ReasoningDelta,
    RoleDelta,
    ToolCallDelta,
    UsageReport,
)

META = MessageMeta(model="m")


def events_of(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for raw in data.decode().split("\n\n"):
        if raw:
            lines = dict(line.split(": ", 1) for line in raw.splitlines())
            out.append((lines["event"], json.loads(lines["data"])))
    return out


ANSWER: list[Event] = [
    RoleDelta(raw=b"data: openai bytes\n\n"),  # raw is OpenAI-format: never passed on
    ReasoningDelta("think"),
    ReasoningDelta(" more"),
    ContentDelta("Hi"),
    ToolCallDelta(0, id="call_a", name="f", arguments='{"x":'),
    ToolCallDelta(0, arguments="1}"),
    ToolCallDelta(1, id="call_b", name="g", arguments="{}"),
    KeepAlive(),
    Finish("tool_calls"),
    UsageReport(Usage.of(prompt=10, completion=7, cached=4, reasoning=2)),
]


def test_stream_blocks_in_order_with_usage_and_stop() -> None:
    enc = AnthropicStream(META)
    data = b"".join(enc.encode(ev) for ev in ANSWER) + enc.close() + enc.done()
    assert b"openai bytes" not in data
    ev = events_of(data)
    names = [n for n, _ in ev]
    assert names == [
        "message_start",
        "content_block_start",  # 0 thinking
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # 1 text
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # 2 tool_use f
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # 3 tool_use g
        "content_block_delta",
        "ping",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [d for n, d in ev if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2, 3]
    assert [s["content_block"]["type"] for s in starts] == [
        "thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert (
        starts[2]["content_block"]["id"] == "call_a" and starts[2]["content_block"]["name"] == "f"
    )
    deltas = [d["delta"] for n, d in ev if n == "content_block_delta"]
    assert deltas[0] == {"type": "thinking_delta", "thinking": "think"}
    assert deltas[2] == {"type": "text_delta", "text": "Hi"}
    assert deltas[3] == {"type": "input_json_delta", "partial_json": '{"x":'}
    final = ev[-2][1]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"] == {"input_tokens": 6, "output_tokens": 7, "cache_read_input_tokens": 4}


def test_body_is_the_aggregate_of_the_same_events() -> None:
    body = AnthropicBody(META)
    for ev in ANSWER:
        body.add(ev)
    msg = json.loads(body.body())
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == "m"
    assert msg["content"] == [
        {"type": "thinking", "thinking": "think more", "signature": ""},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "call_b", "name": "g", "input": {}},
    ]
    assert msg["stop_reason"] == "tool_use" and msg["stop_sequence"] is None
    assert msg["usage"] == {"input_tokens": 6, "output_tokens": 7, "cache_read_input_tokens": 4}


@pytest.mark.parametrize(
    ("reason", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")],
)
def test_stop_reasons(reason: str, stop_reason: str) -> None:
    body = AnthropicBody(META)
    body.add(Finish(reason))
    assert body.message()["stop_reason"] == stop_reason


def test_a_matched_stop_string_is_a_stop_sequence() -> None:
    """A backend that says which stop string ended the answer (the local engine) gives
    Anthropic's ``stop_sequence`` reason and value, in the body and in the stream; a plain stop
    stays ``end_turn`` with no value."""
    body = AnthropicBody(META)
    body.add(ContentDelta("Hi"))
    body.add(Finish("stop", stop_sequence="END"))
    msg = body.message()
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("stop_sequence", "END")
    enc = AnthropicStream(META)
    raw = enc.encode(ContentDelta("Hi")) + enc.encode(Finish("stop", stop_sequence="END"))
    final = events_of(raw + enc.close() + enc.done())[-2][1]
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    plain = AnthropicBody(META)
    plain.add(Finish("stop"))
    assert (plain.message()["stop_reason"], plain.message()["stop_sequence"]) == ("end_turn", None)


def test_a_stream_with_no_events_still_has_its_frame() -> None:
    enc = AnthropicStream(META)
    names = [n for n, _ in events_of(enc.close() + enc.done())]
    assert names == ["message_start", "message_delta", "message_stop"]
    err = events_of(enc.error(OverloadedError("busy")))
    assert err == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    ]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidRequestError("x"), "invalid_request_error"),
        (ModelNotFoundError("x"), "not_found_error"),
        (AuthenticationError("x"), "authentication_error"),
        (PermissionDeniedError("x"), "permission_error"),
        (NotFoundError("x"), "not_found_error"),
        (PayloadTooLargeError("x"), "request_too_large"),
        (RateLimitError("x"), "rate_limit_error"),
        (OverloadedError("x"), "overloaded_error"),
        (UpstreamError("x"), "api_error"),
        (UpstreamStatusError("x", status_code=429), "rate_limit_error"),
        (UpstreamStatusError("x", status_code=400), "invalid_request_error"),
        (SeekportError("x"), "api_error"),
    ],
)
def test_error_types(exc: SeekportError, kind: str) -> None:
    assert anthropic_error_body(exc) == {"type": "error", "error": {"type": kind, "message": "x"}}


def test_model_names() -> None:
    served = ["small", "big"]
    mapping = {"claude*": "small", "claude-opus*": "big"}  # longest match wins, not order
    assert served_model("big", served, mapping) == "big"
    assert served_model("claude-opus-5", served, mapping) == "big"
    assert served_model("claude-haiku-5", served, mapping) == "small"
    assert served_model("claude-x", ["b", "a"], {}) == "b"  # default: the first served model
    with pytest.raises(ModelNotFoundError):
        served_model("gpt-5", served, mapping)


def test_translation_of_blocks_tools_and_options() -> None:
    req = MessagesRequest.model_validate(
        {
            "model": "claude-x",
            "max_tokens": 9,
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "redacted_thinking", "data": "zz"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1]}},
                    ],
                },
                {"role": "system", "content": "mid"},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": "r1"},
                                {"type": "text", "text": "r2"},
                            ],
                            "is_error": True,
                        },
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA"},
                        },
                    ],
                },
            ],
            "tools": [
                {"name": "f", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search"},
            ],
            "tool_choice": {"type": "tool", "name": "f"},
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "metadata": {"user_id": "user_42"},
            "container": "ignored",
        }
    )
    body = chat_body(req, "served")
    assert body["model"] == "served"
    assert body["messages"] == [
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a":[1]}'},
                }
            ],
        },
        {"role": "system", "content": "mid"},
        {"role": "tool", "tool_call_id": "t1", "content": "r1\nr2"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}],
        },
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["thinking"] == {"type": "enabled"}
    assert body["reasoning_effort"] == "high"
    assert body["user_id"] == "user_42"
    chat = chat_request(body)  # validates as our chat request (image parts left to the body)
    assert chat.model == "served" and len(chat.messages) == 6
    assert user_id('{"device":"x"}') == user_id('{"device":"x"}') != user_id('{"device":"y"}')


def test_max_tokens_is_required_and_types_are_strict() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        MessagesRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "q"}]}
        )
    with pytest.raises(ValueError, match="temperature"):
        MessagesRequest.model_validate(
            {
                "model": "m",
                "max_tokens": 1,
                "temperature": "0.5",
                "messages": [{"role": "user", "content": "q"}],
            }
        )
