"""Repositories over the tables: API keys and usage records."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from seekport.protocol.keys import KeyPolicy
from seekport.store.protocols import ApiKeyRecord, DuplicateRecordError
from seekport.store.sql.db import Database
from seekport.store.sql.tables import api_keys, usage_records


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives back naive datetimes; they were stored in UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _key_row(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        role=row.role,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        expires_at=_utc(row.expires_at),
        policy=KeyPolicy.model_validate(row.policy or {}),
    )


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
    ) -> ApiKeyRecord:
        now = dt.datetime.now(dt.UTC)
        policy = policy or KeyPolicy()
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
                )
            )
        return ApiKeyRecord(key_id, name, role, prefix, now, None, expires_at, policy)

    async def find_active_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(
                        api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        return _key_row(row) if row else None

    async def list(self) -> list[ApiKeyRecord]:
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
        return [_key_row(r) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        async with self._db.engine.begin() as conn:
            res = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
        return bool(res.rowcount)

    async def count_all(self) -> int:
        async with self._db.engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
        return int(n)


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit rows in one transaction (group commit); a duplicate request id fails all."""
        try:
            sync = self._db.sync_engine
            if sync is not None:
                await asyncio.to_thread(self._insert_sync, sync, list(rows))
            else:
                async with self._db.engine.begin() as conn:
                    await conn.execute(insert(usage_records), list(rows))
        except IntegrityError as exc:
            raise DuplicateRecordError(str(exc.orig)) from exc

    @staticmethod
    def _insert_sync(engine: Engine, rows: list[dict[str, Any]]) -> None:
        with engine.begin() as conn:
            conn.execute(insert(usage_records), rows)

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
