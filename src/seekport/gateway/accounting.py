"""Durable usage records with group commit.

Every request leaves one record. Callers ``await record(...)`` and get control back only once
the row is committed, so a response's last byte follows its record. Concurrent records are
committed together in one transaction (group commit): one fsync serves many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, fields

from seekport.errors import OverloadedError
from seekport.store.protocols import DuplicateRecordError, UsageStore
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.accounting")


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    client_request_id: str | None
    key_id: str | None
    route: str
    model: str | None  # what the client asked for (an alias, or a model)
    served_model: str | None  # the model that served it (an alias's target, a fallback)
    backend: str | None
    stream: int
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: float
    ttft_ms: float | None
    client_ip: str | None
    created_at: dt.datetime
    deployment: str | None = None  # the deployment of served_model's group that answered
    tenant_id: str | None = None
    user_id: str | None = None
    cost_nanos: int | None = None  # 1e-9 of currency; None: the model is not priced
    currency: str | None = None


_Item = tuple[UsageEvent, asyncio.Future[None] | None]
_FIELDS = tuple(f.name for f in fields(UsageEvent))


def _row(ev: UsageEvent) -> dict[str, object]:
    """The record as a row (``dataclasses.asdict`` deep-copies every value: 5 % of the
    gateway's CPU per request)."""
    return {name: getattr(ev, name) for name in _FIELDS}


class UsageRecorder:
    def __init__(self, repo: UsageStore, metrics: Metrics, *, batch_max: int = 256) -> None:
        self._repo = repo
        self._metrics = metrics
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._writing = 0  # records of the batch being committed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def record(self, event: UsageEvent) -> None:
        """Queue the record and wait for its commit. Raises OverloadedError if it failed.
        With nothing queued and a store that commits without blocking (SQLite's write lock
        free), the record is committed here and now: a batch of one, without the hand-over."""
        if self._queue.empty() and self._writing == 0:
            try:
                done = self._repo.insert_now([_row(event)])
            except Exception:  # a duplicate id, a broken database
                self._fail([(event, None)])
                raise _not_stored() from None
            if done:
                return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, fut))
        await asyncio.shield(fut)

    def record_nowait(self, event: UsageEvent) -> None:
        """For paths that cannot wait (client gone, task cancelled): commit in the background."""
        self._queue.put_nowait((event, None))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._writing = len(batch)
            try:
                await self._commit(batch)
            finally:
                self._writing = 0
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            await self._repo.insert_many([_row(ev) for ev, _ in batch])
        except DuplicateRecordError:
            # One bad row (a duplicate id) must not lose the others: retry them one by one.
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            self._fail(batch)
            return
        except Exception:  # the database is down or refusing: fail the batch at once
            self._fail(batch)
            return
        for _, fut in batch:
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _fail(self, batch: list[_Item]) -> None:
        self._metrics.usage_write_failures.inc(len(batch))
        log.exception(
            "usage records not committed",
            extra={"fields": {"request_ids": [ev.request_id for ev, _ in batch][:20]}},
        )
        for _, fut in batch:
            if fut is not None and not fut.done():
                fut.set_exception(_not_stored())


def _not_stored() -> OverloadedError:
    return OverloadedError("the usage record could not be stored; retry later", retry_after=1)
