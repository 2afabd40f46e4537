"""OpenAI/DeepSeek chat and text completions: SSE chunks, ``[DONE]``, and non-stream bodies.

Usage placement (streams): DeepSeek's, on the finish chunk, unless the client asked for
``stream_options.include_usage``; then every chunk carries ``usage: null`` and OpenAI's extra
``choices: []`` chunk follows the finish chunk. Plain dicts and orjson: no pydantic per token
(``protocol.chat.ChatCompletionChunk`` and friends document the shapes; tests hold us to them).

Passthrough: when the answer's events carry a remote upstream's own bytes (``raw``) and nothing
changed them, those bytes go out as they came (the upstream speaks this format already).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from seekport.api.errors import error_body
from seekport.errors import SeekportError
from seekport.protocol import sse
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
    logprob_dict,
)

MEDIA_STREAM = "text/event-stream"
MEDIA_JSON = "application/json"


@dataclass(slots=True, frozen=True)
class AnswerMeta:
    """What the encoder needs to know about the answer it writes."""

    model: str  # the public model id
    chat: bool  # chat completion (else text completion)
    fingerprint: str | None = None
    wants_usage: bool = False  # stream_options.include_usage
    top_logprobs: int = 0  # chat: alternatives per token the client asked for
    reasoning: bool = False  # chat: always send reasoning_content (R1-style models)
    passthrough: bool = True  # upstream bytes may go out unchanged
    extra: dict[str, Any] | None = None  # top-level fields of the answer (a grounded answer's
    # citations): in the body, and in a stream's first chunk


def _completion_logprobs(entries: list[TokenLogprob], offset: int) -> dict[str, Any]:
    """OpenAI text-completion logprobs; ``offset`` is where the first token's text starts."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [dict(e.top) for e in entries],
        "text_offset": offsets,
    }


def _tool_call(ev: ToolCallDelta, *, with_index: bool) -> dict[str, Any]:
    fn: dict[str, str] = {"arguments": ev.arguments}
    if ev.name is not None:
        fn = {"name": ev.name, **fn}
    out: dict[str, Any] = {"index": ev.index} if with_index else {}
    if ev.id is not None:
        out["id"] = ev.id
        out["type"] = "function"
    out["function"] = fn
    return out


class OpenAIStream:
    """Encodes one streamed answer, event by event. With ``n`` > 1 each chunk carries one
    choice's piece (``index``): every choice gets its role chunk and its finish chunk; the
    usage rides on the last finish chunk (or the ``choices: []`` chunk), once."""

    media_type = MEDIA_STREAM

    def __init__(self, meta: AnswerMeta) -> None:
        self.meta = meta
        self._head: dict[str, Any] = {
            "id": ("chatcmpl-" if meta.chat else "cmpl-") + os.urandom(16).hex(),
            "object": "chat.completion.chunk" if meta.chat else "text_completion",
            "created": int(time.time()),
            "model": meta.model,
            "system_fingerprint": meta.fingerprint,
        }
        if meta.wants_usage:
            self._head["usage"] = None
        self._roles_sent: set[int] = set()  # choices whose role chunk went out
        self._finish: Finish | None = None  # held until the usage (or another finish) comes
        self._offsets: dict[int, int] = {}  # characters of text sent per choice (text_offset)

    def _event(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return sse.event(orjson.dumps({**self._head, "choices": [choice], **extra}))

    def _chat(self, index: int, delta: dict[str, Any], logprobs: Any = None) -> bytes:
        return self._event(
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        )

    def _role(self, index: int = 0) -> bytes:
        if not self.meta.chat or index in self._roles_sent:
            return b""
        self._roles_sent.add(index)
        if self.meta.extra and index == 0:
            return self._event(
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                },
                **self.meta.extra,
            )
        return self._chat(index, {"role": "assistant", "content": ""})

    def encode(self, ev: Event) -> bytes:
        """The bytes for one event (often none: a finish waits for its usage)."""
        if self.meta.passthrough and ev.raw is not None:
            if isinstance(ev, UsageReport) and ev.raw and not self.meta.wants_usage:
                return b""  # the usage-only chunk we asked the upstream for on our own account
            # the upstream's own chunks carry its role chunks
            self._roles_sent.add(0 if isinstance(ev, KeepAlive | UsageReport) else ev.choice)
            return ev.raw
        if isinstance(ev, KeepAlive):
            return sse.KEEP_ALIVE
        if isinstance(ev, RoleDelta):
            return self._role(ev.choice)
        if isinstance(ev, Finish):
            # an earlier choice's finish goes out now; the last one waits for the usage
            out = self._finish_chunk(None, with_usage=False) if self._finish is not None else b""
            self._finish = ev
            return out
        if isinstance(ev, UsageReport):
            return self._usage(ev)
        if not self.meta.chat:
            assert isinstance(ev, ContentDelta)
            offset = self._offsets.get(ev.choice, 0)
            lp = _completion_logprobs(ev.logprobs, offset) if ev.logprobs else None
            self._offsets[ev.choice] = offset + len(ev.text)
            return self._event(
                {"index": ev.choice, "text": ev.text, "logprobs": lp, "finish_reason": None}
            )
        head = self._role(ev.choice)
        if isinstance(ev, ToolCallDelta):
            call = _tool_call(ev, with_index=True)
            return head + self._chat(ev.choice, {"tool_calls": [call]})
        lps = ev.logprobs
        lp = {"content": [logprob_dict(e, self.meta.top_logprobs) for e in lps]} if lps else None
        key = "content" if isinstance(ev, ContentDelta) else "reasoning_content"
        return head + self._chat(ev.choice, {key: ev.text}, lp)

    def _finish_chunk(self, usage: Any, *, with_usage: bool = True) -> bytes:
        assert self._finish is not None
        index = self._finish.choice
        last: dict[str, Any] = {
            "index": index,
            "logprobs": None,
            "finish_reason": self._finish.reason,
        }
        if self.meta.chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        self._finish = None
        head = self._role(index)
        if not with_usage:
            return head + self._event(last)
        return head + self._event(last, usage=usage)

    def _usage(self, ev: UsageReport) -> bytes:
        usage = ev.usage.model_dump(exclude_none=True)
        out = self._role()
        if self.meta.wants_usage:
            if self._finish is not None:
                out += self._finish_chunk(None)
            return out + sse.event(orjson.dumps({**self._head, "choices": [], "usage": usage}))
        if self._finish is not None:
            out += self._finish_chunk(usage)
        return out

    def close(self) -> bytes:
        """What is still held when the events end (a finish whose usage never came)."""
        return self._finish_chunk(None) if self._finish is not None else b""

    @staticmethod
    def done() -> bytes:
        return sse.DONE

    @staticmethod
    def error(exc: SeekportError) -> bytes:
        """The in-band error a stream ends with after its first byte (no [DONE] follows)."""
        return sse.event(orjson.dumps(error_body(exc)))


@dataclass(slots=True)
class _Choice:
    """One choice of a non-stream answer, as its events arrive."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish: str = "stop"
    reasoning_seen: bool = False


class OpenAIBody:
    """Aggregates the events of a non-stream answer into one body (``n`` choices, by index)."""

    media_type = MEDIA_JSON

    def __init__(self, meta: AnswerMeta) -> None:
        self.meta = meta
        self._raw: list[bytes] = []
        self._choices: dict[int, _Choice] = {}
        self._usage: dict[str, Any] | None = None

    def _choice(self, index: int) -> _Choice:
        ch = self._choices.get(index)
        if ch is None:
            ch = self._choices[index] = _Choice(reasoning_seen=self.meta.reasoning)
        return ch

    def add(self, ev: Event) -> None:
        if ev.raw:
            self._raw.append(ev.raw)
        if isinstance(ev, ContentDelta):
            ch = self._choice(ev.choice)
            ch.content.append(ev.text)
            ch.logprobs.extend(ev.logprobs or ())
        elif isinstance(ev, ReasoningDelta):
            ch = self._choice(ev.choice)
            ch.reasoning.append(ev.text)
            ch.reasoning_seen = True
            ch.logprobs.extend(ev.logprobs or ())
        elif isinstance(ev, ToolCallDelta):
            tools = self._choice(ev.choice).tools
            call = tools.setdefault(ev.index, {"id": None, "name": "", "arguments": []})
            call["id"] = call["id"] or ev.id
            call["name"] += ev.name or ""
            call["arguments"].append(ev.arguments)
        elif isinstance(ev, Finish):
            self._choice(ev.choice).finish = ev.reason
        elif isinstance(ev, RoleDelta):
            self._choice(ev.choice)
        elif isinstance(ev, UsageReport):
            self._usage = ev.usage.model_dump(exclude_none=True)

    def body(self) -> bytes:
        if self.meta.passthrough and self._raw:
            return b"".join(self._raw)
        make = self._chat if self.meta.chat else self._completion
        if not self._choices:
            self._choice(0)
        choices = [make(i, ch) for i, ch in sorted(self._choices.items())]
        if self.meta.chat:
            return orjson.dumps(self._envelope("chat.completion", "chatcmpl-", choices))
        return orjson.dumps(self._envelope("text_completion", "cmpl-", choices))

    def _envelope(self, obj: str, prefix: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": prefix + os.urandom(16).hex(),
            "object": obj,
            "created": int(time.time()),
            "model": self.meta.model,
            "system_fingerprint": self.meta.fingerprint,
            "choices": choices,
            "usage": self._usage,
            **(self.meta.extra or {}),
        }

    def _completion(self, index: int, ch: _Choice) -> dict[str, Any]:
        lp = _completion_logprobs(ch.logprobs, 0) if ch.logprobs else None
        return {
            "index": index,
            "text": "".join(ch.content),
            "logprobs": lp,
            "finish_reason": ch.finish,
        }

    def _chat(self, index: int, ch: _Choice) -> dict[str, Any]:
        text = "".join(ch.content)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if ch.tools:
            message["content"] = text or None
            message["tool_calls"] = [
                {
                    "id": c["id"] or "call_" + uuid.uuid4().hex[:24],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for _, c in sorted(ch.tools.items())
            ]
        if ch.reasoning_seen:
            message["reasoning_content"] = "".join(ch.reasoning)
        lps = ch.logprobs
        return {
            "index": index,
            "message": message,
            "logprobs": (
                {"content": [logprob_dict(e, self.meta.top_logprobs) for e in lps]} if lps else None
            ),
            "finish_reason": ch.finish,
        }
