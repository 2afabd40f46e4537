"""The audit log: who did what, when, from where.

Admin actions and key lifecycle (create, rotate, revoke; tenants and users made, changed,
disabled; config reloads) are written one row each and committed before the answer is sent.
Refusals come in floods, so they are counted, not written one by one: failed authentications
per client address and minute, limit (429) and budget (402) refusals per key, kind and minute,
each becomes one row with its ``count`` once its minute is over (and at shutdown). A flood of
bad keys therefore costs a counter in memory, never a durable write per request.

Rows are append-only: nothing updates them, and only the retention job (``jobs.py``, on huey)
deletes those older than ``audit_retention_days``. With ``audit_stream`` set, each row is also
sent to a SIEM once it is committed (``telemetry/audit_stream.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from seekport.store.protocols import AuditStore
from seekport.telemetry.audit_stream import AuditStream

log = logging.getLogger("seekport.audit")

FLUSH_EVERY_S = 5.0
MAX_PENDING = 100_000  # aggregated rows kept in memory at most (then the oldest are written)


@dataclass(slots=True)
class AuditEvent:
    action: str  # key.create, key.rotate, key.revoke, tenant.create, ..., auth.failed
    actor_key_id: str | None = None
    actor_role: str | None = None
    tenant_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    client_ip: str | None = None
    outcome: str = "ok"  # ok, refused
    count: int = 1
    detail: dict[str, Any] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def row(self) -> dict[str, Any]:
        return {
            "id": "aud_" + uuid.uuid4().hex,
            "at": self.at,
            "action": self.action,
            "outcome": self.outcome,
            "actor_key_id": self.actor_key_id,
            "actor_role": self.actor_role,
            "tenant_id": self.tenant_id,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "client_ip": self.client_ip,
            "count": self.count,
            "detail": self.detail or None,
        }


class Actor(Protocol):
    """Who made a change (a Principal): what its audit row names."""

    @property
    def key_id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def client_ip(self) -> str | None: ...


async def note_change(
    audit: AuditLog | None,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    tenant_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """The audit row of a change, committed before the caller is answered (no log: none)."""
    if audit is None:
        return
    await audit.record(
        AuditEvent(
            action,
            actor_key_id=actor.key_id,
            actor_role=actor.role,
            tenant_id=tenant_id,
            target_type=target_type,
            target_id=target_id,
            client_ip=actor.client_ip,
            detail=detail or {},
        )
    )


_Bucket = tuple[str, str | None, str | None, str | None, int]  # action, ip, key, reason, minute


class AuditLog:
    def __init__(self, store: AuditStore, stream: AuditStream | None = None) -> None:
        self._store = store
        self._stream = stream
        self._pending: dict[_Bucket, tuple[int, str | None, str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(everything=True)
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def record(self, ev: AuditEvent) -> None:
        """Write one row and wait for its commit (admin actions, key lifecycle)."""
        rows = [ev.row()]
        await self._store.insert_many(rows)
        if self._stream is not None:
            self._stream.send(rows)

    def count(
        self,
        action: str,
        *,
        client_ip: str | None,
        key_id: str | None = None,
        tenant_id: str | None = None,
        role: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Count a refusal into its minute's aggregated row (no I/O here)."""
        minute = int(time.time() // 60)
        bucket = (action, client_ip, key_id, reason, minute)
        n, _, _ = self._pending.get(bucket, (0, None, None))
        if n == 0 and len(self._pending) >= MAX_PENDING:
            return  # bounded: past this many distinct rows a minute, further ones are dropped
        self._pending[bucket] = (n + 1, tenant_id, role)

    async def flush(self, *, everything: bool = False) -> int:
        """Write the aggregated rows of the minutes that are over (all of them at shutdown)."""
        now_minute = int(time.time() // 60)
        due = [b for b in self._pending if everything or b[4] < now_minute]
        if not due:
            return 0
        rows = []
        for b in due:
            n, tenant_id, role = self._pending.pop(b)
            action, ip, key_id, reason, minute = b
            ev = AuditEvent(
                action,
                actor_key_id=key_id,
                actor_role=role,
                tenant_id=tenant_id,
                client_ip=ip,
                outcome="refused",
                count=n,
                detail={"reason": reason} if reason else {},
                at=dt.datetime.fromtimestamp(minute * 60, dt.UTC),
            )
            rows.append(ev.row())
        try:
            await self._store.insert_many(rows)
        except Exception:
            log.exception("aggregated audit rows not stored", extra={"fields": {"rows": len(rows)}})
            return 0
        if self._stream is not None:
            self._stream.send(rows)
        return len(rows)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush()
