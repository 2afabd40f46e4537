"""Tool calls in model output, for chat templates that support tools.

``hermes``: the format of Hermes, Qwen 2.5 and many fine-tunes: each call is a JSON object
``{"name": ..., "arguments": {...}}`` between ``<tool_call>`` and ``</tool_call>``. Text outside
the blocks is ordinary content. Tags may be split across pieces; a block whose JSON does not
parse is kept as content rather than lost.
"""

from __future__ import annotations

import json
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
