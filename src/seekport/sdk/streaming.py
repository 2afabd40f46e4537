"""Streams: server-sent events read into typed chunks, content and reasoning apart.

A stream may be opened again while it has yielded nothing (a retryable failure before the
first delta); once the caller holds part of the answer, a failure is raised, never retried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from seekport.errors import SeekportError
from seekport.protocol.chat import ChatCompletionChunk, ToolCallChunk
from seekport.protocol.common import Usage
from seekport.protocol.completions import Completion
from seekport.sdk.errors import APIConnectionError, StreamInterruptedError, error_from

C = TypeVar("C", bound=BaseModel)
# reopen(error) -> a new response, or raises (no retry left, not retryable)
Reopen = Callable[[SeekportError], Awaitable[httpx.Response]]


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One step of a chat stream: what it added to the answer and to the reasoning."""

    content: str | None
    reasoning_content: str | None
    tool_calls: list[ToolCallChunk] | None
    finish_reason: str | None
    chunk: ChatCompletionChunk


@dataclass(frozen=True, slots=True)
class TextDelta:
    """One step of a ``/v1/completions`` stream."""

    text: str
    finish_reason: str | None
    chunk: Completion


@dataclass
class _Answer:
    id: str | None = None
    model: str | None = None
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of ``data:`` events until ``[DONE]``; raises the in-band error."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments (keep-alives), blank lines, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise APIConnectionError(f"the stream sent an unreadable event: {data[:80]}") from exc
        if isinstance(payload, dict) and "error" in payload:
            raise error_from(0, payload, request_id=response.headers.get("x-request-id"))
        if isinstance(payload, dict):
            yield payload


class _Stream:
    """The common part of the chat and completion streams."""

    def __init__(self, response: httpx.Response, reopen: Reopen) -> None:
        self.response = response
        self._reopen = reopen
        self._answer = _Answer()
        self._yielded = False
        self._done = False
        self._events: AsyncIterator[dict[str, Any]] | None = None

    @property
    def request_id(self) -> str | None:
        found = self.response.headers.get("x-request-id")
        return str(found) if found is not None else None

    @property
    def id(self) -> str | None:
        return self._answer.id

    @property
    def model(self) -> str | None:
        """The model that answers (a fallback's name when the breaker sent the call there)."""
        return self._answer.model

    @property
    def usage(self) -> Usage | None:
        """Token usage, once the stream has ended (it is asked for with every stream)."""
        return self._answer.usage

    @property
    def finish_reason(self) -> str | None:
        return self._answer.finish_reason

    async def _next_payload(self) -> dict[str, Any] | None:
        """The next event, reopening the stream while nothing was yielded."""
        while True:
            if self._events is None:
                self._events = _events(self.response)
            try:
                return await anext(self._events)
            except StopAsyncIteration:
                return None
            except SeekportError as exc:
                await self.response.aclose()
                if self._yielded:
                    raise self._after_content(exc) from exc
                self.response = await self._reopen(exc)  # raises when no retry is left
                self._events = None
            except httpx.HTTPError as exc:
                await self.response.aclose()
                err = _transport(exc)
                if self._yielded:
                    raise self._after_content(err) from exc
                self.response = await self._reopen(err)
                self._events = None

    async def _next_chunk(self, model: type[C]) -> C | None:
        """The next event as ``model``; None once the stream has ended (and is closed)."""
        if self._done:
            return None
        payload = await self._next_payload()
        if payload is None:
            await self.aclose()
            return None
        try:
            chunk = model.model_validate(payload)
        except ValidationError as exc:
            raise APIConnectionError(f"the stream sent an unexpected chunk: {exc}") from exc
        self._envelope(payload)
        return chunk

    def _after_content(self, exc: SeekportError) -> SeekportError:
        if isinstance(exc, APIConnectionError) and not isinstance(exc, StreamInterruptedError):
            out = StreamInterruptedError(f"the stream broke after content was received: {exc}")
            out.request_id = self.request_id
            return out
        return exc

    def _envelope(self, payload: dict[str, Any]) -> None:
        a = self._answer
        a.id = a.id or payload.get("id")
        a.model = a.model or payload.get("model")
        if payload.get("usage"):
            a.usage = Usage.model_validate(payload["usage"])
        for k in ("citations",):
            if k in payload:
                a.extra[k] = payload[k]

    async def aclose(self) -> None:
        self._done = True
        await self.response.aclose()

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncChatStream(_Stream):
    """``async for delta in stream``: each :class:`ChatDelta` with content or reasoning (or a
    tool call, or the finish reason). After the loop: ``content``, ``reasoning_content``,
    ``usage``, ``finish_reason``."""

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatDelta:
        while (chunk := await self._next_chunk(ChatCompletionChunk)) is not None:
            if not chunk.choices:
                continue  # the usage-only chunk
            choice = chunk.choices[0]
            d = choice.delta
            if choice.finish_reason:
                self._answer.finish_reason = choice.finish_reason
            if not (d.content or d.reasoning_content or d.tool_calls or choice.finish_reason):
                continue  # the role chunk
            if d.content:
                self._answer.content.append(d.content)
            if d.reasoning_content:
                self._answer.reasoning.append(d.reasoning_content)
            self._yielded = self._yielded or bool(d.content or d.reasoning_content or d.tool_calls)
            return ChatDelta(
                d.content, d.reasoning_content, d.tool_calls, choice.finish_reason, chunk
            )
        raise StopAsyncIteration

    @property
    def content(self) -> str:
        """The answer's text received so far."""
        return "".join(self._answer.content)

    @property
    def reasoning_content(self) -> str:
        """The reasoning received so far (thinking models)."""
        return "".join(self._answer.reasoning)

    @property
    def citations(self) -> list[dict[str, Any]] | None:
        """Sources of a grounded answer (``knowledge_bases=[...]``), when the server sent them."""
        found = self._answer.extra.get("citations")
        return found if isinstance(found, list) else None

    async def collect(self) -> AsyncChatStream:
        """Read the stream to its end; returns itself (``content``, ``usage`` …)."""
        async for _ in self:
            pass
        return self


class AsyncCompletionStream(_Stream):
    """``async for delta in stream``: each :class:`TextDelta`; ``text`` and ``usage`` after."""

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> TextDelta:
        while (chunk := await self._next_chunk(Completion)) is not None:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.finish_reason:
                self._answer.finish_reason = choice.finish_reason
            if not (choice.text or choice.finish_reason):
                continue
            self._answer.content.append(choice.text)
            self._yielded = self._yielded or bool(choice.text)
            return TextDelta(choice.text, choice.finish_reason, chunk)
        raise StopAsyncIteration

    @property
    def text(self) -> str:
        return "".join(self._answer.content)

    async def collect(self) -> AsyncCompletionStream:
        async for _ in self:
            pass
        return self


def _transport(exc: httpx.HTTPError) -> SeekportError:
    from seekport.sdk.errors import APITimeoutError

    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"no answer in time: {exc!r}")
    return APIConnectionError(f"the connection failed: {exc!r}")
