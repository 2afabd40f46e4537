"""Wire shapes of the local engine's output: OpenAI/DeepSeek stream chunks and logprobs.

Plain dicts serialised with orjson: no pydantic per token.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from seekport.protocol import sse

if TYPE_CHECKING:
    from seekport.engine.parsers.reasoning import ReasoningParser
    from seekport.engine.parsers.tools import HermesToolParser, ToolCall
    from seekport.engine.sequence import TokenDelta


def tool_call_dicts(calls: list[ToolCall], first_index: int = 0) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` entries (with ``index``, as stream deltas carry it)."""
    return [
        {
            "index": first_index + i,
            "id": "call_" + uuid.uuid4().hex[:24],
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(calls)
    ]


def completion_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """OpenAI text-completion logprobs; ``offset`` is where the first token's text starts."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [e["top"] for e in entries],
        "text_offset": offsets,
    }


def chat_logprob(entry: dict[str, Any], top_n: int) -> dict[str, Any]:
    tok = entry["token"]
    top = sorted(entry["top"].items(), key=lambda kv: -kv[1])[:top_n]
    return {
        "token": tok,
        "logprob": entry["logprob"],
        "bytes": list(tok.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top
        ],
    }


class ChunkWriter:
    """Builds the SSE events of one streamed chat or text completion.

    Usage placement: DeepSeek's, on the finish chunk, unless the client asked for
    ``stream_options.include_usage``; then every chunk carries ``usage: null`` and OpenAI's
    extra ``choices: []`` chunk follows the finish chunk.
    """

    def __init__(
        self,
        *,
        model: str,
        fingerprint: str,
        chat: bool,
        wants_usage: bool,
        top_n: int,
        parser: ReasoningParser | None,
        tools: HermesToolParser | None = None,
    ) -> None:
        self.chat = chat
        self.tools = tools
        self.wants_usage = wants_usage
        self.top_n = top_n
        self.parser = parser
        self.reasoning_tokens = 0
        self._offset = 0  # characters of text sent so far (completions' text_offset)
        self.head: dict[str, Any] = {
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
        }
        if wants_usage:
            self.head["usage"] = None

    def _event(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return sse.event(orjson.dumps({**self.head, "choices": [choice], **extra}))

    def _chat(self, delta: dict[str, Any], logprobs: Any = None) -> bytes:
        return self._event(
            {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        )

    def role(self) -> bytes:
        return self._chat({"role": "assistant", "content": ""})

    def delta(self, delta: TokenDelta) -> bytes:
        """The event for one engine delta (empty bytes when there is nothing to send yet)."""
        if not self.chat:
            lp = completion_logprobs(delta.logprobs, self._offset) if delta.logprobs else None
            self._offset += len(delta.text)
            if not delta.text and lp is None:
                return b""
            return self._event(
                {"index": 0, "text": delta.text, "logprobs": lp, "finish_reason": None}
            )
        lp = (
            {"content": [chat_logprob(e, self.top_n) for e in delta.logprobs]}
            if delta.logprobs
            else None
        )
        r, c = "", delta.text
        if self.parser is not None:
            self.reasoning_tokens += int(not self.parser.in_content)
            r, c = self.parser.feed(delta.text)
        d: dict[str, Any] = {k: v for k, v in (("reasoning_content", r), ("content", c)) if v}
        if self.tools is not None and c:
            before = self.tools.calls
            c, calls = self.tools.feed(c)
            d.pop("content", None)
            if c:
                d["content"] = c
            if calls:
                d["tool_calls"] = tool_call_dicts(calls, before)
        if not d and lp is None:
            return b""
        return self._chat(d or {"content": ""}, lp)

    def flush(self) -> bytes:
        """Text the parsers still hold at the end of generation."""
        r, c = self.parser.flush() if self.parser is not None else ("", "")
        calls: list[ToolCall] = []
        before = 0
        if self.tools is not None:
            before = self.tools.calls
            c, calls = self.tools.feed(c) if c else ("", [])
            c += self.tools.flush()
        d: dict[str, Any] = {k: v for k, v in (("reasoning_content", r), ("content", c)) if v}
        if calls:
            d["tool_calls"] = tool_call_dicts(calls, before)
        return self._chat(d) if d else b""

    def finish(self, finish_reason: str, usage: dict[str, Any]) -> bytes:
        if self.tools is not None and self.tools.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        last: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        out = self._event(last, usage=None if self.wants_usage else usage)
        if self.wants_usage:
            out += sse.event(orjson.dumps({**self.head, "choices": [], "usage": usage}))
        return out
