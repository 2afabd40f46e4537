"""The Responses format without a server: the stream and body encoders over typed events
(reasoning, text and function-call items, incomplete, failed) and request translation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from seekport.api.encoders.responses import ResponseMeta, ResponsesBody, ResponsesStream
from seekport.errors import InvalidRequestError, UpstreamError
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
from seekport.protocol.responses import ResponsesRequest, chat_body, chat_request

EVENTS: list[Event] = [
    RoleDelta(),
    KeepAlive(),
    ReasoningDelta("think"),
    ReasoningDelta(" more"),
    ContentDelta("hi"),
    ToolCallDelta(0, "call_a", "f", '{"x"'),
    ToolCallDelta(0, None, None, ":1}"),
    ToolCallDelta(1, "call_b", "g", "{}"),
    Finish("tool_calls"),
    UsageReport(Usage.of(10, 5, 2, 3)),
]


def parse(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.decode().split("\n\n"):
        if not raw.strip() or raw.startswith(":"):
            continue
        name, payload = raw.split("\n", 1)
        event = json.loads(payload.removeprefix("data: "))
        assert name == "event: " + event["type"]
        out.append(event)
    return out


def stream(events: list[Event]) -> tuple[ResponsesStream, bytes]:
    enc = ResponsesStream(ResponseMeta("m"))
    data = b"".join(enc.encode(ev) for ev in events) + enc.close()
    return enc, data


def test_stream_items_in_order_numbered_with_final_response() -> None:
    """Reasoning, message and two function-call items, each added / deltas / done, numbered in
    order; a keep-alive is an SSE comment; the final event (after the record) carries the
    output and usage with cached and reasoning tokens."""
    enc, data = stream(EVENTS)
    assert b"\n\n: keep-alive\n\n" in data
    events = parse(data + enc.done())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[16]["arguments"] == '{"x":1}' and events[16]["name"] == "f"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["incomplete_details"] is None
    assert [i["type"] for i in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "think more"}]
    assert final["output"][2]["call_id"] == "call_a"
    assert final["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 15,
    }


def test_body_is_the_aggregate_of_the_same_events() -> None:
    enc, data = stream(EVENTS)
    streamed = parse(data + enc.done())[-1]["response"]
    body = ResponsesBody(ResponseMeta("m"))
    for ev in EVENTS:
        body.add(ev)
    out = json.loads(body.body())
    strip = {"id", "created_at"}

    def items(resp: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in i.items() if k != "id"} for i in resp["output"]]

    assert items(out) == items(streamed)
    assert {k: v for k, v in out.items() if k not in strip | {"output"}} == {
        k: v for k, v in streamed.items() if k not in strip | {"output"}
    }


def test_length_is_incomplete_and_an_error_is_response_failed() -> None:
    enc, data = stream([ContentDelta("a"), Finish("length")])
    last = parse(data + enc.done())[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    enc, data = stream([ContentDelta("a")])
    events = parse(data + enc.error(UpstreamError("the upstream went away")))
    assert events[-2]["type"] == "response.output_item.done"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"] == "the upstream went away"


def test_translation_and_refusals() -> None:
    req = ResponsesRequest.model_validate(
        {
            "model": "m",
            "input": [
                {"role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}},
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "tools": [{"type": "function", "name": "f"}],
            "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "low"},
            "user": "alice",
        }
    )
    body = chat_body(req, "m")
    assert body["messages"][0] == {"role": "assistant", "content": "x"}
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"] == {"type": "json_object"}
    assert body["reasoning_effort"] == "low" and "thinking" not in body
    assert chat_request(body).reasoning_effort == "low" and body["user_id"] == "alice"
    only = chat_body(ResponsesRequest.model_validate({"model": "m", "instructions": "hi"}), "m")
    assert only["messages"] == [{"role": "system", "content": "hi"}]
    for bad in (
        {"input": [{"type": "message", "role": "tool", "content": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        {"input": "x", "previous_response_id": "resp_1"},
        {"input": "x", "text": {"format": {"type": "xml"}}},
        {},
    ):
        with pytest.raises(InvalidRequestError):
            chat_body(ResponsesRequest.model_validate({"model": "m", **bad}), "m")


def test_custom_tool_calls_in_and_out() -> None:
    """A custom (freeform) tool is a function of one string ``input``; custom_tool_call items
    go upstream as calls with that argument; an answer's call to it is a custom_tool_call item
    whose raw input comes whole at its end (no arguments deltas)."""
    patch = "*** Begin Patch\n*** End Patch"
    req = ResponsesRequest.model_validate(
        {
            "model": "m",
            "tools": [
                {"type": "custom", "name": "apply_patch", "description": "edit", "format": {}},
                {"type": "function", "name": "f"},
            ],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "input": [
                {
                    "type": "custom_tool_call",
                    "call_id": "c1",
                    "name": "apply_patch",
                    "input": patch,
                },
                {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"},
            ],
        }
    )
    body = chat_body(req, "m")
    fn = body["tools"][0]["function"]
    assert fn["name"] == "apply_patch" and fn["parameters"]["required"] == ["input"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    call = body["messages"][0]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"input": patch}
    assert body["messages"][1] == {"role": "tool", "tool_call_id": "c1", "content": "Done"}
    chat_request(body)

    enc = ResponsesStream(ResponseMeta("m", custom=frozenset({"apply_patch"})))
    arguments = json.dumps({"input": patch})
    evs: list[Event] = [
        ToolCallDelta(0, "call_p", "apply_patch", arguments[:10]),
        ToolCallDelta(0, None, None, arguments[10:]),
        ToolCallDelta(1, "call_f", "f", "{}"),
        Finish("tool_calls"),
    ]
    data = b"".join(enc.encode(ev) for ev in evs) + enc.close() + enc.done()
    events = parse(data)
    kinds = [e["type"] for e in events]
    assert kinds[2:6] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert events[3]["delta"] == patch and events[4]["input"] == patch
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["custom_tool_call", "function_call"]
    assert output[0]["input"] == patch and output[0]["call_id"] == "call_p"
    assert output[1]["arguments"] == "{}"
