"""Tool calls in model output.

``hermes``: the format of Hermes, Qwen 2.5 and many fine-tunes: each call is a JSON object
``{"name": ..., "arguments": {...}}`` between ``<tool_call>`` and ``</tool_call>``. Text outside
the blocks is ordinary content. Tags may be split across pieces; a block whose JSON does not
parse is kept as content rather than lost.

``generic``: models without a native format, whose output a grammar constrains to one JSON
object (``GenericToolParser``); its calls stream in pieces, arguments as they are generated.

Both parsers give calls as ``ToolCallPiece``s (a Hermes call is one piece, at its end).
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


@dataclass(frozen=True, slots=True)
class ToolCallPiece:
    """A piece of the answer's call ``index`` (0, 1, ... in order). A call's first piece has
    its ``name``; the ``arguments`` of its pieces concatenate to its arguments' JSON text."""

    index: int
    name: str | None
    arguments: str


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

    def feed(self, text: str) -> tuple[str, list[ToolCallPiece]]:
        """Content that is safe to send now, and the calls completed by this piece (each
        whole, in one piece)."""
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
        pieces = [ToolCallPiece(self.calls + i, c.name, c.arguments) for i, c in enumerate(calls)]
        self.calls += len(calls)
        return "".join(content), pieces

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
_CALLS_START = re.compile(r'\s*\{\s*"tool_calls"\s*:\s*\[')


class GenericToolParser:
    """The answer of a model constrained to ``{"tool_calls": [...]}`` or ``{"response": ...}``
    (see ``gateway/backends/local_tools.py``), read as it is generated.

    A ``response``'s text streams as content. Calls stream as OpenAI streams them: a call's
    first piece comes as soon as its ``name`` is read (the grammar keeps the schema's order,
    ``name`` before ``arguments``), then its ``arguments`` follow in pieces while they are
    generated: the raw JSON text of the value, from its first character to its closing
    bracket, with raw control characters inside its strings escaped (the grammar lets them
    through; JSON does not), so the pieces of a finished call concatenate to valid JSON.
    A call without ``arguments`` gets ``{}``; arguments that are a JSON string (not an object)
    are that string's text, sent whole when it ends.

    An answer cut short (``max_tokens``: finish_reason ``length``): the call pieces already
    sent stand, and the unfinished call's arguments stay cut, as OpenAI sends them (the
    finish reason says so). An answer that is not the expected object and sent no call (cut
    before the first name, or not this format at all) is returned as content, as generated.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._text_at: int | None = None  # where the response string's body starts
        self._sent = 0  # characters of that body already returned (raw, escapes included)
        self._closed = False
        self._calls: _CallScanner | None = None
        self.calls = 0  # calls started (their first piece sent)

    def feed(self, text: str) -> tuple[str, list[ToolCallPiece]]:
        self._buf += text
        if self._calls is not None:
            return "", self._scan(text)
        if self._text_at is None:
            m = _CALLS_START.match(self._buf)
            if m is not None:
                self._calls = _CallScanner()
                return "", self._scan(self._buf[m.end() :])
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

    def _scan(self, text: str) -> list[ToolCallPiece]:
        assert self._calls is not None
        pieces = self._calls.feed(text)
        self.calls += sum(p.name is not None for p in pieces)
        return pieces

    def flush(self) -> tuple[str, list[ToolCallPiece]]:
        text, self._buf = self._buf, ""
        if self._text_at is not None:  # a response: what was not streamed yet
            rest = text[self._text_at + self._sent :]
            n, closed = _string_prefix(rest)
            return _decode(rest[:n] if closed else rest), []
        if self.calls or (self._calls is not None and self._calls.done):
            return "", []  # calls were sent: an unfinished one stays as it is
        return text, []


_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_WS = " \t\r\n"
_OPEN = "{["
_CLOSE = "}]"


class _CallScanner:
    """The inside of the ``tool_calls`` array, character by character: each call's ``name``
    and the extent of its ``arguments`` value, aware of strings, escapes and nesting.

    ``depth`` counts the brackets open inside the array: 0 between calls, 1 inside a call's
    object, more inside one of its values. A value of the call's ``arguments`` key is
    captured from its first character until it ends (its bracket closes back to depth 1, its
    string closes, or a scalar meets a delimiter)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_str = False
        self.esc = False
        self.broken = False  # not the expected shape: nothing more is sent
        self.done = False  # the array closed
        self.index = -1  # the call being read
        self._new_call()

    def _new_call(self) -> None:
        self.expect_key = True
        self.key: str | None = None
        self.word: list[str] | None = None  # a key or the name being read (raw)
        self.named = False  # the call's first piece was sent
        self.args: list[str] = []  # its arguments text not sent yet
        self.capture: str | None = None  # reading its arguments: "{" (or "["), '"', "scalar"
        self.had_args = False

    def feed(self, text: str) -> list[ToolCallPiece]:
        out: list[ToolCallPiece] = []
        for ch in text:
            if self.broken or self.done:
                break
            if self.capture is not None:
                self._captured(ch, out)
            elif self.in_str:
                self._string(ch, out)
            elif self.depth == 0:
                self._between(ch)
            elif self.depth == 1:
                self._in_call(ch, out)
            elif ch == '"':  # inside a value of some other key: only its extent matters
                self.in_str = True
            elif ch in _OPEN:
                self.depth += 1
            elif ch in _CLOSE:
                self.depth -= 1
        if self.named and self.args and self.capture not in ('"', "scalar") and not self.broken:
            out.append(ToolCallPiece(self.index, None, "".join(self.args)))
            self.args = []
        return out

    def _between(self, ch: str) -> None:
        if ch in _WS or ch == ",":
            return
        if ch == "{":
            self.depth = 1
            self.index += 1
            self._new_call()
        elif ch == "]":
            self.done = True
        else:
            self.broken = True

    def _in_call(self, ch: str, out: list[ToolCallPiece]) -> None:
        if ch in _WS:
            return
        if ch == ":":
            self.expect_key = False
        elif ch == ",":
            self.expect_key, self.key = True, None
        elif ch == "}":
            self._end_call(out)
        elif self.expect_key:
            if ch != '"':
                self.broken = True
                return
            self.in_str, self.word = True, []
        elif self.key == "arguments":
            self.had_args = True
            self.capture = "{" if ch in _OPEN else '"' if ch == '"' else "scalar"
            self.args.append(ch)
            if ch in _OPEN:
                self.depth += 1
            elif ch == '"':
                self.in_str = True
        elif ch == '"':
            self.in_str = True
            self.word = [] if self.key == "name" else None
        elif ch in _OPEN:
            self.depth += 1
        elif ch in _CLOSE:
            self.broken = True

    def _string(self, ch: str, out: list[ToolCallPiece]) -> None:
        """A string outside the arguments: a key, the name, or another key's value."""
        if self.esc:
            self.esc = False
        elif ch == "\\":
            self.esc = True
        elif ch == '"':
            self.in_str = False
            if self.word is not None:
                word, self.word = _decode("".join(self.word)), None
                if self.expect_key:
                    self.key = word
                else:
                    self._named(word, out)
                return
        if self.word is not None:
            self.word.append(ch)

    def _named(self, name: str, out: list[ToolCallPiece]) -> None:
        if self.named:  # a second name: not a call object
            self.broken = True
            return
        self.named = True
        held = self.capture in ('"', "scalar")
        out.append(ToolCallPiece(self.index, name, "" if held else "".join(self.args)))
        if not held:
            self.args = []

    def _captured(self, ch: str, out: list[ToolCallPiece]) -> None:
        if self.in_str:
            if self.esc:
                self.esc = False
            elif ch == "\\":
                self.esc = True
            elif ch == '"':
                self.in_str = False
            elif ch < " ":
                ch = _CONTROL_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"
            self.args.append(ch)
            if not self.in_str and self.capture == '"' and self.depth == 1:
                self.capture = None
                self.args = [_decode("".join(self.args)[1:-1])]
            return
        if self.capture == "scalar":
            if ch in _WS or ch in ",}":
                self.capture = None
                self._in_call(ch, out)
            else:
                self.args.append(ch)
            return
        self.args.append(ch)
        if ch == '"':
            self.in_str = True
        elif ch in _OPEN:
            self.depth += 1
        elif ch in _CLOSE:
            self.depth -= 1
            if self.depth == 1:
                self.capture = None

    def _end_call(self, out: list[ToolCallPiece]) -> None:
        if not self.named:  # a call without a name
            self.broken = True
            return
        if not self.had_args:
            self.args.append("{}")
        if self.args:
            out.append(ToolCallPiece(self.index, None, "".join(self.args)))
        self.depth = 0
        self._new_call()


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
