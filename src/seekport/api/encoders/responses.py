"""OpenAI Responses: the semantic event stream and the non-stream ``response`` body.

Stream (``event: <type>`` + ``data: {...}``, each with a ``sequence_number``):
``response.created``, ``response.in_progress``, then per output item (reasoning, the message,
each function call) ``response.output_item.added`` / its deltas
(``response.reasoning_text.delta``, ``response.content_part.added`` +
``response.output_text.delta``, ``response.function_call_arguments.delta``; a custom tool's
call is a ``custom_tool_call`` item whose ``response.custom_tool_call_input.delta`` comes whole
at its end) / their ``.done`` events / ``response.output_item.done``; and ``response.completed`` (or
``response.incomplete`` when the answer was cut at ``max_output_tokens``) only after the usage
record is committed (there is no ``[DONE]``; a record that cannot be stored, or an error after
the first byte, ends the stream with ``response.failed``). ``KeepAlive`` is an SSE comment.

The non-stream body is the aggregate of the same events: the ``response`` the final event of a
stream carries. The upstream's own bytes (``raw``) are chat-format and never used here.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from seekport.errors import SeekportError
from seekport.protocol.common import Usage
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    KeepAlive,
    ReasoningDelta,
    ToolCallDelta,
    UsageReport,
)

MEDIA_STREAM = "text/event-stream"
MEDIA_JSON = "application/json"
KEEPALIVE = b": keep-alive\n\n"
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(slots=True, frozen=True)
class ResponseMeta:
    model: str  # the model id the answer names
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the response repeats
    custom: frozenset[str] = frozenset()  # custom tools: their calls are custom_tool_call items


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def usage_dict(usage: Usage | None) -> dict[str, Any]:
    u = usage or Usage()
    details = u.completion_tokens_details
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": details.reasoning_tokens if details else 0},
        "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens,
    }


def _custom_input(arguments: str) -> str:
    """A custom tool's raw input from the function arguments it was called with
    (``{"input": "..."}``); the arguments as they are if they are not that."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    raw = value.get("input") if isinstance(value, dict) else None
    return raw if isinstance(raw, str) else arguments


class ResponsesStream:
    """Encodes one answer, event by event; with ``emit=False`` it only aggregates (the
    non-stream body, ``ResponsesBody``)."""

    media_type = MEDIA_STREAM

    def __init__(self, meta: ResponseMeta, *, emit: bool = True) -> None:
        self.meta = meta
        self._emit_bytes = emit
        self._id = _id("resp_")
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._item: dict[str, Any] | None = None  # the open output item
        self._parts: list[str] = []  # its text (or arguments) so far
        self._tool: int | None = None  # the ToolCallDelta index the open call is for
        self._finish = "stop"
        self._usage: Usage | None = None
        self._closed = False

    # ---- bytes

    def _sse(self, kind: str, payload: dict[str, Any]) -> bytes:
        if not self._emit_bytes:
            return b""
        data = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def response(
        self, status: str | None = None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        reason = INCOMPLETE.get(self._finish)
        if status is None:
            status = "incomplete" if reason else "completed"
        done = status != "in_progress"
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": reason} if reason and status == "incomplete" else None,
            "model": self.meta.model,
            "output": self._output if done else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "metadata": {},
            **self.meta.echo,
            "usage": usage_dict(self._usage) if done else None,
        }

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        created = {"response": self.response("in_progress")}
        return self._sse("response.created", created) + self._sse("response.in_progress", created)

    def _where(self) -> dict[str, Any]:
        assert self._item is not None
        return {"item_id": self._item["id"], "output_index": len(self._output) - 1}

    def _open(self, item: dict[str, Any]) -> bytes:
        out = self._close_item()
        self._item = item
        self._parts = []
        self._output.append(item)
        added = {"output_index": len(self._output) - 1, "item": dict(item)}
        out += self._sse("response.output_item.added", added)
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._sse(
                "response.content_part.added", {**self._where(), "content_index": 0, "part": part}
            )
        return out

    def _close_item(self) -> bytes:
        item = self._item
        if item is None:
            return b""
        text = "".join(self._parts)
        where = self._where()
        out = b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            item["content"] = [part]
            item["status"] = "completed"
            out += self._sse(
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": []},
            )
            out += self._sse(
                "response.content_part.done", {**where, "content_index": 0, "part": part}
            )
        elif item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": text}]
            out += self._sse(
                "response.reasoning_text.done", {**where, "content_index": 0, "text": text}
            )
        elif item["type"] == "custom_tool_call":
            raw = _custom_input(text)
            item["input"] = raw
            item["status"] = "completed"
            if raw:
                out += self._sse("response.custom_tool_call_input.delta", {**where, "delta": raw})
            out += self._sse("response.custom_tool_call_input.done", {**where, "input": raw})
        else:
            item["arguments"] = text
            item["status"] = "completed"
            out += self._sse(
                "response.function_call_arguments.done",
                {**where, "name": item["name"], "arguments": text},
            )
        out += self._sse(
            "response.output_item.done", {"output_index": where["output_index"], "item": item}
        )
        self._item = None
        self._tool = None
        return out

    # ---- the events

    def encode(self, ev: Event) -> bytes:
        out = self._start()
        kind = self._item["type"] if self._item is not None else None
        if isinstance(ev, ContentDelta):
            if not ev.text:
                return out
            if kind != "message":
                item = {
                    "id": _id("msg_"),
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
                out += self._open(item)
            self._parts.append(ev.text)
            return out + self._sse(
                "response.output_text.delta",
                {**self._where(), "content_index": 0, "delta": ev.text, "logprobs": []},
            )
        if isinstance(ev, ReasoningDelta):
            if not ev.text:
                return out
            if kind != "reasoning":
                out += self._open({"id": _id("rs_"), "type": "reasoning", "summary": []})
            self._parts.append(ev.text)
            return out + self._sse(
                "response.reasoning_text.delta",
                {**self._where(), "content_index": 0, "delta": ev.text},
            )
        if isinstance(ev, ToolCallDelta):
            calls = ("function_call", "custom_tool_call")
            if kind not in calls or self._tool != ev.index or ev.id is not None:
                name = ev.name or ""
                item = {"status": "in_progress", "call_id": ev.id or _id("call_"), "name": name}
                if name in self.meta.custom:
                    item = {"id": _id("ctc_"), "type": "custom_tool_call", **item, "input": ""}
                else:
                    item = {"id": _id("fc_"), "type": "function_call", **item, "arguments": ""}
                out += self._open(item)
                self._tool = ev.index
            elif ev.name:
                assert self._item is not None
                self._item["name"] += ev.name
            if ev.arguments:
                self._parts.append(ev.arguments)
                assert self._item is not None
                if self._item["type"] == "custom_tool_call":
                    return out  # its input is sent whole when the call ends (it is JSON inside)
                out += self._sse(
                    "response.function_call_arguments.delta",
                    {**self._where(), "delta": ev.arguments},
                )
            return out
        if isinstance(ev, Finish):
            self._finish = ev.reason
            return out + self._close_item()
        if isinstance(ev, UsageReport):
            self._usage = ev.usage
        elif isinstance(ev, KeepAlive) and self._emit_bytes:
            return out + KEEPALIVE
        return out

    def close(self) -> bytes:
        """When the events end: the open item's ``.done`` events (the final event follows the
        usage record: ``done``)."""
        if self._closed:
            return b""
        self._closed = True
        return self._start() + self._close_item()

    def done(self) -> bytes:
        final = self.response()
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return self._sse(kind, {"response": final})

    def error(self, exc: SeekportError) -> bytes:
        out = self._start() + self._close_item()
        err = {"code": exc.code or exc.error_type, "message": exc.message}
        return out + self._sse("response.failed", {"response": self.response("failed", err)})


class ResponsesBody:
    """Aggregates the events of a non-stream answer into one ``response``."""

    media_type = MEDIA_JSON

    def __init__(self, meta: ResponseMeta) -> None:
        self._agg = ResponsesStream(meta, emit=False)

    def add(self, ev: Event) -> None:
        self._agg.encode(ev)

    def response(self) -> dict[str, Any]:
        self._agg.close()
        return self._agg.response()

    def body(self) -> bytes:
        return orjson.dumps(self.response())
