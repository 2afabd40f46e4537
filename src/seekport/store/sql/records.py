"""Repositories over the records read in bulk: the audit log, the content log, and usage
totals (grouped sums over the usage records)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from seekport.store.protocols import DuplicateRecordError, UsageQuery
from seekport.store.sql.db import Database
from seekport.store.sql.repositories import _scoped, _utc
from seekport.store.sql.tables import audit_log, content_log, usage_records


def _plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass orjson
    refuses as keys)."""
    return {str(k): v for k, v in row._mapping.items()}


class AuditRepository:
    """The audit log's rows: inserted, read, purged by retention; never updated."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(audit_log), list(rows))

    async def query(
        self,
        *,
        tenant_id: str | None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        before_seq: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        stmt = _scoped(select(audit_log), audit_log.c.tenant_id, tenant_id).where(
            audit_log.c.seq > after_seq
        )
        if before_seq is not None:
            stmt = stmt.where(audit_log.c.seq < before_seq)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= since)
        if until is not None:
            stmt = stmt.where(audit_log.c.at < until)
        if action is not None:
            stmt = stmt.where(audit_log.c.action == action)
        async with self._db.engine.connect() as conn:
            order = audit_log.c.seq.desc() if newest_first else audit_log.c.seq
            rows = (await conn.execute(stmt.order_by(order).limit(limit))).all()
        out = []
        for r in rows:
            row = _plain(r)
            row["at"] = _utc(row["at"])
            out.append(row)
        return out

    async def purge(self, before: dt.datetime) -> int:
        async with self._db.engine.begin() as conn:
            res = await conn.execute(delete(audit_log).where(audit_log.c.at < before))
        return int(res.rowcount or 0)


class UsageTotals:
    """``GET /admin/usage``: requests, tokens and cost per group, over the usage records."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def totals(self, q: UsageQuery) -> list[dict[str, Any]]:
        u = usage_records.c
        keys: list[Any] = []
        if q.group_by == "day":
            keys.append(func.date(u.created_at).label("day"))  # UTC: records are stored so
        elif q.group_by == "model":
            keys.append(u.served_model.label("model"))
        elif q.group_by == "key":
            keys.append(u.key_id.label("key_id"))
        stmt = select(
            *keys,
            u.currency.label("currency"),
            func.count().label("requests"),
            func.sum(u.prompt_tokens).label("prompt_tokens"),
            func.sum(u.completion_tokens).label("completion_tokens"),
            func.sum(u.cached_tokens).label("cached_tokens"),
            func.sum(u.cost_nanos).label("cost_nanos"),
            func.sum(case((u.status >= 400, 1), else_=0)).label("errors"),
            func.sum(u.latency_ms).label("latency_ms"),
            # the time spent on calls that generated: what tokens per second divide by
            func.sum(case((u.completion_tokens > 0, u.latency_ms), else_=0)).label("gen_ms"),
            func.max(u.created_at).label("last_at"),
        )
        stmt = _scoped(stmt, u.tenant_id, q.tenant_id)
        for column, value in ((u.user_id, q.user_id), (u.key_id, q.key_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        if q.model is not None:
            stmt = stmt.where(or_(u.model == q.model, u.served_model == q.model))
        if q.since is not None:
            stmt = stmt.where(u.created_at >= q.since)
        if q.until is not None:
            stmt = stmt.where(u.created_at < q.until)
        stmt = stmt.group_by(*keys, u.currency).order_by(*keys, u.currency)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{**_plain(r), "last_at": _utc(r.last_at)} for r in rows]


class ContentRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(insert(content_log), list(rows))
        except IntegrityError as exc:
            raise DuplicateRecordError(str(exc.orig)) from exc

    async def query(
        self,
        *,
        tenant_id: str | None,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        c = content_log.c
        stmt = _scoped(select(content_log), c.tenant_id, tenant_id).where(
            c.seq > after_seq, c.erased_at.is_(None)
        )
        if user_id is not None:
            stmt = stmt.where(c.user_id == user_id)
        if since is not None:
            stmt = stmt.where(c.created_at >= since)
        if until is not None:
            stmt = stmt.where(c.created_at < until)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(c.seq).limit(limit))).all()
        out = []
        for r in rows:
            row = _plain(r)
            row["created_at"] = _utc(row["created_at"])
            out.append(row)
        return out

    async def erase_user(self, user_id: str, tenant_id: str | None) -> int:
        c = content_log.c
        stmt = _scoped(
            update(content_log).where(c.user_id == user_id, c.erased_at.is_(None)),
            c.tenant_id,
            tenant_id,
        )
        async with self._db.engine.begin() as conn:
            res = await conn.execute(stmt.values(erased_at=dt.datetime.now(dt.UTC)))
        return int(res.rowcount or 0)

    async def purge(self, before: dt.datetime, erased_before: dt.datetime) -> int:
        c = content_log.c
        stmt = delete(content_log).where(
            or_(c.created_at < before, and_(c.erased_at.is_not(None), c.erased_at < erased_before))
        )
        async with self._db.engine.begin() as conn:
            res = await conn.execute(stmt)
        return int(res.rowcount or 0)
