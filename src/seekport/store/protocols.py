"""The persistence seams the gateway depends on. ``store.sql`` implements them today."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from seekport.store.sql.repositories import ApiKeyRecord


class KeyStore(Protocol):
    """API keys, looked up by the SHA-256 of their secret."""

    async def insert(
        self, *, key_id: str, name: str, role: str, secret_hash: str, prefix: str
    ) -> ApiKeyRecord: ...

    async def find_active_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...

    async def list(self) -> list[ApiKeyRecord]: ...

    async def revoke(self, key_id: str) -> bool: ...

    async def count_all(self) -> int: ...


class UsageStore(Protocol):
    """Durable usage records; ``insert_many`` commits all rows in one transaction and raises
    ``DuplicateRecordError`` when a request id exists already."""

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None: ...
