"""Anthropic Messages: the named-event stream and the non-stream ``message`` body.

Stream: ``message_start``, then per content block (thinking, text, each tool call)
``content_block_start`` / ``content_block_delta`` (``thinking_delta``, ``text_delta``,
``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop reason, usage) when
the events end, and ``message_stop`` only after the usage record is committed (it plays the part
of ``[DONE]``: a record that cannot be stored ends the stream with an ``error`` event instead).
``KeepAlive`` is a ``ping``; an error after the first byte is an ``error`` event.

The upstream's own bytes (``raw``) are OpenAI-format and never used here.

Usage: ``input_tokens`` excludes cache hits, which are ``cache_read_input_tokens`` (Anthropic
counts them apart); ``output_tokens`` includes reasoning.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from seekport.api.errors import anthropic_error_body
from seekport.errors import SeekportError
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

MEDIA_STREAM = "text/event-stream"
MEDIA_JSON = "application/json"

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "insufficient_system_resource": "end_turn",
}


def stop_reason(ev: Finish) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a finished choice: a stop string
    the backend reports becomes ``"stop_sequence"`` with that string (a remote OpenAI-format
    upstream does not say which one matched, so its stops stay ``end_turn``)."""
    if ev.reason == "stop" and ev.stop_sequence:
        return "stop_sequence", ev.stop_sequence
    return STOP_REASONS.get(ev.reason, "end_turn"), None


PING = b'event: ping\ndata: {"type":"ping"}\n\n'


@dataclass(slots=True, frozen=True)
class MessageMeta:
    model: str  # the model id the answer names


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def usage_dict(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0}
    cached = usage.cached_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": cached,
    }


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as Anthropic's ``input`` object ({} if they are not one)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class AnthropicStream:
    """Encodes one streamed answer, event by event."""

    media_type = MEDIA_STREAM

    def __init__(self, meta: MessageMeta) -> None:
        self.meta = meta
        self._id = new_message_id()
        self._started = False
        self._block = -1  # index of the open content block, -1: none
        self._kind: str | None = None  # its type: thinking | text | tool_use
        self._tool: int | None = None  # the ToolCallDelta index the open tool block is for
        self._stop_reason = "end_turn"
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._closed = False

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.meta.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_dict(None),
        }
        return _sse("message_start", {"type": "message_start", "message": message})

    def _stop_block(self) -> bytes:
        if self._kind is None:
            return b""
        self._kind = None
        self._tool = None
        return _sse("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop_block()
        self._block += 1
        self._kind = kind
        return out + _sse(
            "content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block, "delta": delta},
        )

    def encode(self, ev: Event) -> bytes:
        out = self._start()
        if isinstance(ev, KeepAlive):
            return out + PING
        if isinstance(ev, RoleDelta):
            return out
        if isinstance(ev, ContentDelta):
            if not ev.text:
                return out
            if self._kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": ev.text})
        if isinstance(ev, ReasoningDelta):
            if not ev.text:
                return out
            if self._kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            return out + self._delta({"type": "thinking_delta", "thinking": ev.text})
        if isinstance(ev, ToolCallDelta):
            if self._kind != "tool_use" or self._tool != ev.index or ev.id is not None:
                block = {
                    "type": "tool_use",
                    "id": ev.id or "toolu_" + uuid.uuid4().hex[:24],
                    "name": ev.name or "",
                    "input": {},
                }
                out += self._open("tool_use", block)
                self._tool = ev.index
            if ev.arguments:
                out += self._delta({"type": "input_json_delta", "partial_json": ev.arguments})
            return out
        if isinstance(ev, Finish):
            self._stop_reason, self._stop_sequence = stop_reason(ev)
            return out + self._stop_block()
        if isinstance(ev, UsageReport):
            self._usage = ev.usage
        return out

    def close(self) -> bytes:
        """When the events end: the last block's stop and ``message_delta`` with the usage."""
        if self._closed:
            return b""
        self._closed = True
        out = self._start() + self._stop_block()
        return out + _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": self._stop_sequence},
                "usage": usage_dict(self._usage),
            },
        )

    @staticmethod
    def done() -> bytes:
        return _sse("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(exc: SeekportError) -> bytes:
        return _sse("error", anthropic_error_body(exc))


class AnthropicBody:
    """Aggregates the events of a non-stream answer into one ``message``."""

    media_type = MEDIA_JSON

    def __init__(self, meta: MessageMeta) -> None:
        self.meta = meta
        self._blocks: list[dict[str, Any]] = []
        self._tools: dict[int, dict[str, Any]] = {}  # ToolCallDelta index → its block
        self._args: dict[int, list[str]] = {}
        self._stop_reason = "end_turn"
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    def _append_text(self, kind: str, key: str, text: str) -> None:
        if self._blocks and self._blocks[-1]["type"] == kind:
            self._blocks[-1][key] += text
        else:
            block = {"type": kind, key: text}
            if kind == "thinking":
                block["signature"] = ""
            self._blocks.append(block)

    def add(self, ev: Event) -> None:
        if isinstance(ev, ContentDelta):
            if ev.text:
                self._append_text("text", "text", ev.text)
        elif isinstance(ev, ReasoningDelta):
            if ev.text:
                self._append_text("thinking", "thinking", ev.text)
        elif isinstance(ev, ToolCallDelta):
            block = self._tools.get(ev.index)
            if block is None:
                block = {"type": "tool_use", "id": None, "name": "", "input": {}}
                self._tools[ev.index] = block
                self._args[ev.index] = []
                self._blocks.append(block)
            block["id"] = block["id"] or ev.id
            block["name"] += ev.name or ""
            self._args[ev.index].append(ev.arguments)
        elif isinstance(ev, Finish):
            self._stop_reason, self._stop_sequence = stop_reason(ev)
        elif isinstance(ev, UsageReport):
            self._usage = ev.usage

    def message(self) -> dict[str, Any]:
        for index, block in self._tools.items():
            block["id"] = block["id"] or "toolu_" + uuid.uuid4().hex[:24]
            block["input"] = _tool_input("".join(self._args[index]))
        return {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.meta.model,
            "content": self._blocks,
            "stop_reason": self._stop_reason,
            "stop_sequence": self._stop_sequence,
            "usage": usage_dict(self._usage),
        }

    def body(self) -> bytes:
        return orjson.dumps(self.message())
