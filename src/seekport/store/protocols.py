"""The persistence seams the gateway depends on: Protocols, the records they return and the
errors they raise. ``store.sql`` implements them today; the gateway imports only this module."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from seekport.protocol.keys import KeyPolicy, Limits

DEFAULT_TENANT_ID = "ten_default"  # keys made before tenants existed live here


class DuplicateRecordError(Exception):
    """A row with the same unique key exists already."""


class MissingRecordError(Exception):
    """A row the write refers to does not exist (or is not visible to the caller)."""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    tenant_id: str
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None = None
    policy: KeyPolicy = field(default_factory=KeyPolicy)
    tenant_id: str = DEFAULT_TENANT_ID
    user_id: str | None = None
    prev_valid_until: dt.datetime | None = None  # a rotated key's old secret works till then


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What authentication finds: a usable key with its user's and tenant's limits."""

    key: ApiKeyRecord
    user_limits: Limits | None
    tenant_limits: Limits


class KeyStore(Protocol):
    """API keys, looked up by the SHA-256 of their secret. ``tenant_id`` None: every tenant
    (a superadmin); otherwise a key of another tenant is not found."""

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
    ) -> ApiKeyRecord: ...

    async def find_active_by_hash(self, secret_hash: str) -> ActiveKey | None: ...

    async def list(
        self, tenant_id: str | None = None, user_id: str | None = None
    ) -> list[ApiKeyRecord]: ...

    async def get(self, key_id: str, tenant_id: str | None = None) -> ApiKeyRecord | None: ...

    async def revoke(self, key_id: str, tenant_id: str | None = None) -> bool: ...

    async def rotate(
        self,
        key_id: str,
        tenant_id: str | None,
        *,
        secret_hash: str,
        prefix: str,
        old_valid_until: dt.datetime,
    ) -> ApiKeyRecord | None: ...

    async def count_all(self) -> int: ...


class TenantStore(Protocol):
    async def insert(self, *, tenant_id: str, name: str, limits: Limits) -> TenantRecord: ...

    async def list(self) -> list[TenantRecord]: ...

    async def get(self, tenant_id: str) -> TenantRecord | None: ...

    async def update(
        self, tenant_id: str, *, limits: Limits | None, disabled: bool | None
    ) -> TenantRecord | None: ...


class UserStore(Protocol):
    async def insert(
        self, *, user_id: str, tenant_id: str, name: str, limits: Limits
    ) -> UserRecord: ...

    async def list(self, tenant_id: str | None = None) -> list[UserRecord]: ...

    async def get(self, user_id: str, tenant_id: str | None = None) -> UserRecord | None: ...

    async def update(
        self,
        user_id: str,
        tenant_id: str | None,
        *,
        limits: Limits | None,
        disabled: bool | None,
    ) -> UserRecord | None: ...


class UsageStore(Protocol):
    """Durable usage records; ``insert_many`` commits all rows in one transaction and raises
    ``DuplicateRecordError`` when a request id exists already."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def insert_now(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Commit rows at once without awaiting, when the store can do it without blocking
        (SQLite with its write lock free); False, with nothing written, when it cannot.
        Raises ``DuplicateRecordError`` as ``insert_many`` does."""
        ...

    async def spent(self, scope: str, scope_id: str, since: dt.datetime) -> dict[str, int]:
        """Cost since ``since`` of the records of a ``key``, ``user`` or ``tenant``, in
        nano-units per currency."""
        ...


class AuditStore(Protocol):
    """The append-only audit log: rows are inserted, read, and deleted only by retention."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None: ...

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
    ) -> list[dict[str, Any]]: ...

    async def purge(self, before: dt.datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class UsageQuery:
    tenant_id: str | None = None  # None: every tenant
    user_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    group_by: str | None = None  # day, model, key


class UsageReader(Protocol):
    async def totals(self, q: UsageQuery) -> list[dict[str, Any]]:
        """Requests, tokens and cost per group (and currency), oldest group first."""
        ...


class ContentStore(Protocol):
    """The content log: entries inserted in batches, read per tenant, erased per user
    (hidden at once), and deleted by retention."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None: ...

    async def query(
        self,
        *,
        tenant_id: str | None,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]: ...

    async def erase_user(self, user_id: str, tenant_id: str | None) -> int: ...

    async def purge(self, before: dt.datetime, erased_before: dt.datetime) -> int: ...
