"""Tool calls in model output.

``hermes``: the format of Hermes, Qwen 2.5 and many fine-tunes: each call is a JSON object
``{"name": ..., "arguments": {...}}`` between ``<tool_call>`` and ``</tool_call>``. Text outside
the blocks is ordinary content. Tags may be split across pieces; a block whose JSON does not
parse is kept as content rather than lost.

``generic``: models without a native format, whose output a grammar constrains to one JSON
object (``GenericToolParser``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # a JSON-encoded string, as OpenAI sends it


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class HermesToolParser:
    def __init__(self) -> None:
        self._buf = ""
        self._in_call = False
        self.calls = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """Content that is safe to send now, and the calls completed by this piece."""
        self._buf += text
        content: list[str] = []
        calls: list[ToolCall] = []
        while self._buf:
            if not self._in_call:
                idx = self._buf.find(OPEN)
                if idx >= 0:
                    content.append(self._buf[:idx])
                    self._buf = self._buf[idx + len(OPEN) :]
                    self._in_call = True
                    continue
                keep = _partial_suffix(self._buf, OPEN)
                content.append(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep :]
                break
            idx = self._buf.find(CLOSE)
            if idx < 0:
                break  # the call is still arriving
            body, self._buf = self._buf[:idx], self._buf[idx + len(CLOSE) :]
            self._in_call = False
            call = _parse(body)
            if call is None:
                content.append(OPEN + body + CLOSE)
            else:
                calls.append(call)
        self.calls += len(calls)
        return "".join(content), calls

    def flush(self) -> str:
        """End of output: an unfinished block or held-back text is content."""
        buf, self._buf = self._buf, ""
        if self._in_call:
            self._in_call = False
            return OPEN + buf
        return buf


def _parse(body: str) -> ToolCall | None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        return ToolCall(obj["name"], args)
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


_RESPONSE_START = re.compile(r'\s*\{\s*"response"\s*:\s*"')


class GenericToolParser:
    """The answer of a model constrained to ``{"tool_calls": [...]}`` or ``{"response": ...}``
    (see ``gateway/backends/local_tools.py``). A ``response``'s text streams as content while
    it is generated; calls come out of ``flush``, when the object is complete. An answer that
    does not parse (cut by ``max_tokens``) is returned as content, as generated."""

    def __init__(self) -> None:
        self._buf = ""
        self._text_at: int | None = None  # where the response string's body starts
        self._sent = 0  # characters of that body already returned (raw, escapes included)
        self._closed = False
        self.calls = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self._buf += text
        if self._text_at is None:
            m = _RESPONSE_START.match(self._buf)
            if m is None:
                return "", []
            self._text_at = m.end()
        if self._closed:
            return "", []
        body = self._buf[self._text_at + self._sent :]
        n, self._closed = _string_prefix(body)
        self._sent += n
        return _decode(body[:n]), []

    def flush(self) -> tuple[str, list[ToolCall]]:
        text, self._buf = self._buf, ""
        if self._text_at is not None:  # a response: what was not streamed yet
            rest = text[self._text_at + self._sent :]
            n, closed = _string_prefix(rest)
            return _decode(rest[:n] if closed else rest), []
        try:
            obj = json.loads(text, strict=False)  # the grammar lets raw newlines into strings
        except json.JSONDecodeError:
            return text, []
        raw = obj.get("tool_calls") if isinstance(obj, dict) else None
        if not isinstance(raw, list):
            return text, []
        calls = [c for c in map(_call, raw) if c is not None]
        if len(calls) != len(raw):
            return text, []
        self.calls += len(calls)
        return "", calls


def _string_prefix(body: str) -> tuple[int, bool]:
    """How much of a JSON string's body can be decoded now (no escape cut in two, a surrogate
    pair kept whole), and whether the closing quote was reached."""
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            return i, True
        if ch != "\\":
            i += 1
            continue
        if i + 1 >= len(body):
            break
        if body[i + 1] != "u":
            i += 2
            continue
        if i + 6 > len(body):
            break
        if 0xD800 <= int(body[i + 2 : i + 6], 16) <= 0xDBFF:  # high surrogate: needs its pair
            if i + 12 > len(body):
                break
            i += 12
            continue
        i += 6
    return i, False


def _decode(raw: str) -> str:
    try:
        return str(json.loads(f'"{raw}"', strict=False))
    except json.JSONDecodeError:
        return raw


def _call(obj: object) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):
        return ToolCall(obj["name"], args)
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))
