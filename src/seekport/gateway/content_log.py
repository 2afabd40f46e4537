"""The content log: what a tenant's callers asked and what they got, per tenant off, redacted
(personal data replaced by its kind, ``[EMAIL]``) or full; kept apart from usage records.

An entry is made when a call's answer ends (or is left), from the request the model got and
the text the caller received, and written in the background in batches (one transaction per
batch): content logging never holds an answer back. A user's entries can be erased: they
are hidden from every read at once and deleted by the retention job after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from seekport.config.content_log import ContentLogConfig, Mode
from seekport.gateway.guard.pii import KINDS, Detector
from seekport.protocol.events import ContentDelta, Event, ReasoningDelta, ToolCallDelta
from seekport.store.protocols import ContentStore

log = logging.getLogger("seekport.content")
BATCH_MAX = 256
QUEUE_MAX = 10_000  # entries waiting at most; past it new ones are dropped (and counted)


class ContentLogger:
    def __init__(self, store: ContentStore, config: ContentLogConfig) -> None:
        self._store = store
        self.config = config
        self._detector = Detector(KINDS)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="content-log")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def mode_for(self, tenant_id: str | None) -> Mode:
        return self.config.mode_for(tenant_id)

    def transcribe(
        self,
        events: AsyncIterator[Event],
        *,
        mode: Mode,
        request_id: str,
        tenant_id: str | None,
        user_id: str | None,
        key_id: str | None,
        model: str,
        body: dict[str, Any],
    ) -> AsyncIterator[Event]:
        request = {k: body[k] for k in ("messages", "prompt") if k in body}
        entry = {
            "request_id": request_id,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "key_id": key_id,
            "model": model,
            "mode": mode,
            "request": self._clean(request, mode),
        }
        return _Transcript(self, events, entry)

    def submit(self, entry: dict[str, Any]) -> None:
        entry["answer"] = self._clean(entry["answer"], entry["mode"])
        entry["created_at"] = dt.datetime.now(dt.UTC)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1

    def _clean(self, value: Any, mode: Mode) -> Any:
        """Texts cut to ``max_chars``; personal data replaced by its kind when redacted."""
        if isinstance(value, str):
            text = value[: self.config.max_chars]
            if mode != "redacted":
                return text
            out, at = [], 0
            for m in self._detector.find(text):
                out += [text[at : m.start], f"[{m.kind.upper()}]"]
                at = m.end
            return "".join([*out, text[at:]])
        if isinstance(value, list):
            return [self._clean(v, mode) for v in value]
        if isinstance(value, dict):
            return {k: self._clean(v, mode) for k, v in value.items()}
        return value

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._store.insert_many(batch)
            except Exception:
                log.exception("content log entries not stored", extra={"fields": {"n": len(batch)}})
            for _ in batch:
                self._queue.task_done()


class _Transcript:
    """The answer's events, passed on unchanged; their text kept for the log entry, which is
    submitted once when they end or are closed."""

    __slots__ = ("_choices", "_entry", "_events", "_logger")

    def __init__(
        self, logger: ContentLogger, events: AsyncIterator[Event], entry: dict[str, Any]
    ) -> None:
        self._logger = logger
        self._events = events
        self._entry: dict[str, Any] | None = entry
        self._choices: dict[int, dict[str, Any]] = {}

    def __aiter__(self) -> _Transcript:
        return self

    async def __anext__(self) -> Event:
        try:
            ev = await anext(self._events)
        except StopAsyncIteration:
            self._submit()
            raise
        if isinstance(ev, ContentDelta | ReasoningDelta | ToolCallDelta):
            c = self._choices.setdefault(ev.choice, {"content": "", "reasoning": ""})
            if isinstance(ev, ContentDelta):
                c["content"] += ev.text
            elif isinstance(ev, ReasoningDelta):
                c["reasoning"] += ev.text
            else:
                calls = c.setdefault("tool_calls", {})
                call = calls.setdefault(str(ev.index), {"name": "", "arguments": ""})
                call["name"] += ev.name or ""
                call["arguments"] += ev.arguments
        return ev

    def _submit(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry["answer"] = [self._choices[i] for i in sorted(self._choices)]
            self._logger.submit(entry)

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._submit()
