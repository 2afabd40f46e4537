"""Repositories over the tables: tenants, users, API keys and usage records (the audit and
content logs and usage totals are in ``records.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from seekport.protocol.keys import KeyPolicy, Limits
from seekport.store.protocols import (
    DEFAULT_TENANT_ID,
    ActiveKey,
    ApiKeyRecord,
    DuplicateRecordError,
    MissingRecordError,
    TenantRecord,
    UserRecord,
)
from seekport.store.sql.db import Database
from seekport.store.sql.inline import Busy, InlineWriter
from seekport.store.sql.tables import (
    api_keys,
    tenants,
    usage_records,
    users,
)

log = logging.getLogger("seekport.store")


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives back naive datetimes; they were stored in UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _key_row(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        role=row.role,
        prefix=row.prefix,
        created_at=_utc(row.created_at) or row.created_at,
        revoked_at=_utc(row.revoked_at),
        expires_at=_utc(row.expires_at),
        policy=KeyPolicy.model_validate(row.policy or {}),
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        prev_valid_until=_utc(row.prev_valid_until),
    )


def _tenant_row(row: Any) -> TenantRecord:
    return TenantRecord(
        id=row.id,
        name=row.name,
        created_at=_utc(row.created_at) or row.created_at,
        disabled_at=_utc(row.disabled_at),
        limits=Limits.model_validate(row.limits or {}),
    )


def _user_row(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        created_at=_utc(row.created_at) or row.created_at,
        disabled_at=_utc(row.disabled_at),
        limits=Limits.model_validate(row.limits or {}),
    )


def _scoped(stmt: Any, column: Any, tenant_id: str | None) -> Any:
    """Only the caller's tenant's rows, unless it sees every tenant (None)."""
    return stmt if tenant_id is None else stmt.where(column == tenant_id)


class KeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(
        self,
        *,
        key_id: str,
        name: str,
        role: str,
        secret_hash: str,
        prefix: str,
        expires_at: dt.datetime | None = None,
        policy: KeyPolicy | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        user_id: str | None = None,
    ) -> ApiKeyRecord:
        now = dt.datetime.now(dt.UTC)
        policy = policy or KeyPolicy()
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(
                    insert(api_keys).values(
                        id=key_id,
                        name=name,
                        role=role,
                        secret_hash=secret_hash,
                        prefix=prefix,
                        created_at=now,
                        revoked_at=None,
                        expires_at=expires_at,
                        policy=policy.stored() or None,
                        tenant_id=tenant_id,
                        user_id=user_id,
                    )
                )
        except IntegrityError as exc:
            raise MissingRecordError("no such tenant or user") from exc
        return ApiKeyRecord(
            key_id, name, role, prefix, now, None, expires_at, policy, tenant_id, user_id
        )

    async def find_active_by_hash(self, secret_hash: str) -> ActiveKey | None:
        now = dt.datetime.now(dt.UTC)
        stmt = (
            select(
                api_keys,
                tenants.c.limits.label("tenant_limits"),
                users.c.limits.label("user_limits"),
            )
            .select_from(
                api_keys.join(tenants, tenants.c.id == api_keys.c.tenant_id).outerjoin(
                    users, users.c.id == api_keys.c.user_id
                )
            )
            .where(
                or_(
                    api_keys.c.secret_hash == secret_hash,
                    and_(
                        api_keys.c.prev_secret_hash == secret_hash,
                        api_keys.c.prev_valid_until > now,
                    ),
                ),
                api_keys.c.revoked_at.is_(None),
                tenants.c.disabled_at.is_(None),
                users.c.disabled_at.is_(None),
            )
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        user_limits = Limits.model_validate(row.user_limits or {}) if row.user_id else None
        return ActiveKey(_key_row(row), user_limits, Limits.model_validate(row.tenant_limits or {}))

    async def list(
        self, tenant_id: str | None = None, user_id: str | None = None
    ) -> list[ApiKeyRecord]:
        stmt = _scoped(select(api_keys), api_keys.c.tenant_id, tenant_id)
        if user_id is not None:
            stmt = stmt.where(api_keys.c.user_id == user_id)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(api_keys.c.created_at))).all()
        return [_key_row(r) for r in rows]

    async def get(self, key_id: str, tenant_id: str | None = None) -> ApiKeyRecord | None:
        stmt = _scoped(
            select(api_keys).where(api_keys.c.id == key_id), api_keys.c.tenant_id, tenant_id
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _key_row(row) if row else None

    async def revoke(self, key_id: str, tenant_id: str | None = None) -> bool:
        stmt = _scoped(
            update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)),
            api_keys.c.tenant_id,
            tenant_id,
        )
        async with self._db.engine.begin() as conn:
            res = await conn.execute(stmt.values(revoked_at=dt.datetime.now(dt.UTC)))
        return bool(res.rowcount)

    async def rotate(
        self,
        key_id: str,
        tenant_id: str | None,
        *,
        secret_hash: str,
        prefix: str,
        old_valid_until: dt.datetime,
    ) -> ApiKeyRecord | None:
        """A new secret for the key; the one it had keeps working until ``old_valid_until``
        (a secret rotated before keeps only its own grace, never a second one)."""
        stmt = _scoped(
            update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)),
            api_keys.c.tenant_id,
            tenant_id,
        ).values(
            prev_secret_hash=api_keys.c.secret_hash,
            prev_valid_until=old_valid_until,
            secret_hash=secret_hash,
            prefix=prefix,
        )
        async with self._db.engine.begin() as conn:
            res = await conn.execute(stmt)
            if not res.rowcount:
                return None
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
        return _key_row(row)

    async def count_all(self) -> int:
        async with self._db.engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
        return int(n)


class TenantRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, *, tenant_id: str, name: str, limits: Limits) -> TenantRecord:
        now = dt.datetime.now(dt.UTC)
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(
                    insert(tenants).values(
                        id=tenant_id, name=name, created_at=now, limits=limits.stored() or None
                    )
                )
        except IntegrityError as exc:
            raise DuplicateRecordError(f"a tenant named {name!r} exists already") from exc
        return TenantRecord(tenant_id, name, now, None, limits)

    async def list(self) -> list[TenantRecord]:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(tenants).order_by(tenants.c.created_at))).all()
        return [_tenant_row(r) for r in rows]

    async def get(self, tenant_id: str) -> TenantRecord | None:
        """By id, or by name (the CLI's --tenant takes either)."""
        stmt = select(tenants).where(or_(tenants.c.id == tenant_id, tenants.c.name == tenant_id))
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _tenant_row(row) if row else None

    async def update(
        self, tenant_id: str, *, limits: Limits | None, disabled: bool | None
    ) -> TenantRecord | None:
        values = _changes(limits, disabled)
        if values:
            async with self._db.engine.begin() as conn:
                await conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(values))
        return await self.get(tenant_id)


class UserRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(
        self, *, user_id: str, tenant_id: str, name: str, limits: Limits
    ) -> UserRecord:
        now = dt.datetime.now(dt.UTC)
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(
                    insert(users).values(
                        id=user_id,
                        tenant_id=tenant_id,
                        name=name,
                        created_at=now,
                        limits=limits.stored() or None,
                    )
                )
        except IntegrityError as exc:
            raise DuplicateRecordError(f"a user named {name!r} exists in this tenant") from exc
        return UserRecord(user_id, tenant_id, name, now, None, limits)

    async def list(self, tenant_id: str | None = None) -> list[UserRecord]:
        stmt = _scoped(select(users), users.c.tenant_id, tenant_id)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(users.c.created_at))).all()
        return [_user_row(r) for r in rows]

    async def get(self, user_id: str, tenant_id: str | None = None) -> UserRecord | None:
        stmt = _scoped(select(users).where(users.c.id == user_id), users.c.tenant_id, tenant_id)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _user_row(row) if row else None

    async def update(
        self,
        user_id: str,
        tenant_id: str | None,
        *,
        limits: Limits | None,
        disabled: bool | None,
    ) -> UserRecord | None:
        values = _changes(limits, disabled)
        if values:
            stmt = _scoped(update(users).where(users.c.id == user_id), users.c.tenant_id, tenant_id)
            async with self._db.engine.begin() as conn:
                await conn.execute(stmt.values(values))
        return await self.get(user_id, tenant_id)


def _changes(limits: Limits | None, disabled: bool | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if limits is not None:
        values["limits"] = limits.stored() or None
    if disabled is not None:
        values["disabled_at"] = dt.datetime.now(dt.UTC) if disabled else None
    return values


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._checkpoint: asyncio.Task[None] | None = None

    def insert_now(self, rows: Sequence[dict[str, Any]]) -> bool:
        """SQLite: commit on the event loop unless another writer holds the lock
        (``inline.py``); PostgreSQL: False."""
        writer = self._db.inline_writer(usage_records)
        if writer is None:
            return False
        try:
            writer.insert(rows)
        except Busy:
            return False  # another writer holds the lock: insert_many waits in a thread
        except sqlite3.IntegrityError as exc:
            raise DuplicateRecordError(str(exc)) from exc
        if writer.due_checkpoint() and self._checkpoint is None:
            self._checkpoint = asyncio.create_task(self._checkpoint_wal(writer))
        return True

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit rows in one transaction (group commit); a duplicate request id fails all."""
        if self.insert_now(rows):
            return
        try:
            sync = self._db.sync_engine
            if sync is not None:
                await asyncio.to_thread(self._insert_sync, sync, list(rows))
            else:
                async with self._db.engine.begin() as conn:
                    await conn.execute(insert(usage_records), list(rows))
        except IntegrityError as exc:
            raise DuplicateRecordError(str(exc.orig)) from exc

    async def _checkpoint_wal(self, writer: InlineWriter) -> None:
        try:
            await asyncio.to_thread(writer.checkpoint)
        except Exception:  # the next one may succeed; an autocheckpoint elsewhere too
            log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpoint = None

    @staticmethod
    def _insert_sync(engine: Engine, rows: list[dict[str, Any]]) -> None:
        with engine.begin() as conn:
            conn.execute(insert(usage_records), rows)

    async def spent(self, scope: str, scope_id: str, since: dt.datetime) -> dict[str, int]:
        column = {
            "key": usage_records.c.key_id,
            "user": usage_records.c.user_id,
            "tenant": usage_records.c.tenant_id,
        }[scope]
        stmt = (
            select(usage_records.c.currency, func.sum(usage_records.c.cost_nanos))
            .where(
                column == scope_id,
                usage_records.c.created_at >= since,
                usage_records.c.cost_nanos.is_not(None),
            )
            .group_by(usage_records.c.currency)
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {str(cur): int(total or 0) for cur, total in rows}

    async def get(self, request_id: str) -> dict[str, Any] | None:
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(usage_records).where(usage_records.c.request_id == request_id)
                )
            ).first()
        return dict(row._mapping) if row else None

    async def count(self) -> int:
        async with self._db.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(usage_records))).scalar_one()
            )
