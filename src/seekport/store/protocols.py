"""The persistence seams the gateway depends on: Protocols, the records they return and the
errors they raise. ``store.sql`` implements them today; the gateway imports only this module."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from seekport.protocol.keys import KeyPolicy


class DuplicateRecordError(Exception):
    """A row with the same unique key exists already."""


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


class KeyStore(Protocol):
    """API keys, looked up by the SHA-256 of their secret."""

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
    ) -> ApiKeyRecord: ...

    async def find_active_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...

    async def list(self) -> list[ApiKeyRecord]: ...

    async def revoke(self, key_id: str) -> bool: ...

    async def count_all(self) -> int: ...


class UsageStore(Protocol):
    """Durable usage records; ``insert_many`` commits all rows in one transaction and raises
    ``DuplicateRecordError`` when a request id exists already."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None: ...
