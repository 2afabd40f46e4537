"""API keys: creation, hashed lookup with a short cache, revocation.

Secrets look like ``sk-sp-<43 url-safe chars>`` (256 bits of entropy). Only their SHA-256 is
stored; a plain hash is enough for secrets this long (no dictionary to attack), and it lets us
look a key up by its hash without timing leaks on the secret itself.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from seekport.errors import AuthenticationError, InvalidRequestError
from seekport.store.protocols import ApiKeyRecord, KeyStore

SECRET_PREFIX = "sk-sp-"  # noqa: S105 - a format marker, not a secret
MAX_AUTH_HEADER = 512
Role = Literal["admin", "user"]
ROLES: tuple[str, ...] = ("admin", "user")
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyService:
    def __init__(self, repo: KeyStore, *, cache_ttl_s: float = 1.0) -> None:
        self._repo = repo
        self._ttl = cache_ttl_s
        self._known: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._unknown: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    async def create(self, name: str, role: str) -> tuple[ApiKeyRecord, str]:
        """Create a key; returns its record and the secret (shown once, never stored)."""
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        if not name or len(name) > 128:
            raise InvalidRequestError("name must be 1-128 characters", param="name")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        record = await self._repo.insert(
            key_id="key_" + secrets.token_hex(8),
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            prefix=secret[: len(SECRET_PREFIX) + 4],
        )
        return record, secret

    async def list(self) -> list[ApiKeyRecord]:
        return await self._repo.list()

    async def revoke(self, key_id: str) -> bool:
        ok = await self._repo.revoke(key_id)
        self._known.clear()
        return ok

    async def count_all(self) -> int:
        """Keys ever created, revoked ones included (bootstrap happens on an empty store only)."""
        return await self._repo.count_all()

    async def _lookup(self, digest: str) -> Principal | None:
        """Hashed lookup behind a bounded LRU. Known keys and unknown ones are cached apart,
        so a spray of random keys cannot push real keys out of the cache."""
        now = time.monotonic()
        for cache in (self._known, self._unknown):
            hit = cache.get(digest)
            if hit is not None and hit[0] > now:
                cache.move_to_end(digest)
                return hit[1]
        record = await self._repo.find_active_by_hash(digest)
        principal = Principal(record.id, record.name, record.role) if record else None
        cache = self._known if principal else self._unknown
        cache[digest] = (now + self._ttl, principal)
        cache.move_to_end(digest)
        if len(cache) > _CACHE_MAX:
            cache.popitem(last=False)
        return principal

    async def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization`` header to a Principal or raise 401."""
        if not authorization:
            raise AuthenticationError(
                "Authentication Fails: no API key given "
                "(send the header Authorization: Bearer sk-...)"
            )
        if len(authorization) > MAX_AUTH_HEADER:
            raise AuthenticationError("Authentication Fails: the Authorization header is too long")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(
                "Authentication Fails (auth header format should be Bearer sk-...)"
            )
        digest = hash_secret(token)
        principal = await self._lookup(digest)
        if principal is None:
            raise AuthenticationError("Authentication Fails, your api key is invalid or revoked")
        return principal
