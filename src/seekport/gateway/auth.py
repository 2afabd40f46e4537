"""API keys: creation, hashed lookup with a short cache, revocation.

Secrets look like ``sk-sp-<43 url-safe chars>`` (256 bits of entropy). Only their SHA-256 is
stored; a plain hash is enough for secrets this long (no dictionary to attack), and it lets us
look a key up by its hash without timing leaks on the secret itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from seekport.gateway.audit import AuditLog
from seekport.protocol.keys import ROLES, KeyPolicy, Limits
from seekport.store.kv import Limiter
from seekport.store.protocols import (
    DEFAULT_TENANT_ID,
    ActiveKey,
    ApiKeyRecord,
    KeyStore,
    MissingRecordError,
)
from seekport.telemetry.metrics import Metrics

SECRET_PREFIX = "sk-sp-"  # noqa: S105 - a format marker, not a secret
MAX_AUTH_HEADER = 512
MAX_ROTATION_GRACE_S = 30 * 86_400
_CACHE_MAX = 10_000

Permission = Literal[
    "infer",  # call models
    "models",  # list them
    "balance",  # read its own balance
    "metrics",  # scrape /metrics (gateway-wide)
    "usage",  # read usage records and totals (its tenant's)
    "audit",  # read and export the audit log (its tenant's)
    "users",  # manage users (its tenant's)
    "keys",  # manage keys (its tenant's)
    "tenants",  # manage tenants
    "system",  # routing, reload: the gateway itself
    "knowledge",  # knowledge bases (what each one allows: its own roles, knowledge/service.py)
]
GRANTS: dict[str, frozenset[str]] = {
    "superadmin": frozenset(
        (
            "infer",
            "models",
            "balance",
            "metrics",
            "usage",
            "audit",
            "users",
            "keys",
            "tenants",
            "system",
            "knowledge",
        )
    ),
    "admin": frozenset(
        ("infer", "models", "balance", "usage", "audit", "users", "keys", "knowledge")
    ),
    "user": frozenset(("infer", "models", "balance", "knowledge")),
    "auditor": frozenset(("models", "balance", "usage", "audit")),
    "viewer": frozenset(("models", "balance", "metrics")),
}
WHAT: dict[str, str] = {
    "infer": "call models",
    "models": "list models",
    "balance": "read a balance",
    "metrics": "read /metrics (use a viewer or superadmin key)",
    "usage": "read usage",
    "audit": "read the audit log",
    "users": "manage users",
    "keys": "manage keys",
    "tenants": "manage tenants",
    "system": "manage the gateway",
    "knowledge": "use knowledge bases",
}


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: str
    policy: KeyPolicy = field(default_factory=KeyPolicy)
    expires_at: dt.datetime | None = None
    tenant_id: str = DEFAULT_TENANT_ID
    user_id: str | None = None
    user_limits: Limits | None = None
    tenant_limits: Limits = field(default_factory=Limits)
    client_ip: str | None = None  # set per request on admin routes (the audit's "from where")

    @classmethod
    def of(cls, found: ActiveKey) -> Principal:
        k = found.key
        return cls(
            k.id,
            k.name,
            k.role,
            k.policy,
            k.expires_at,
            k.tenant_id,
            k.user_id,
            found.user_limits,
            found.tenant_limits,
        )

    @property
    def tenant_scope(self) -> str | None:
        """The tenant whose objects it sees; None: every tenant (a superadmin)."""
        return None if self.role == "superadmin" else self.tenant_id

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS.get(self.role, frozenset())

    def require(self, permission: Permission) -> Principal:
        """Itself, or 403 naming what its role may not do."""
        if not self.can(permission):
            raise PermissionDeniedError(
                f"the key '{self.name}' has the role '{self.role}', which may not "
                f"{WHAT[permission]}"
            )
        return self


class _Refused(AuthenticationError):
    """A 401 that knows why (the metric's reason label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyService:
    def __init__(
        self,
        repo: KeyStore,
        *,
        cache_ttl_s: float = 1.0,
        limiter: Limiter | None = None,
        failures_per_minute: int = 20,
        metrics: Metrics | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._repo = repo
        self._ttl = cache_ttl_s
        self._limiter = limiter  # None: failed authentications are not throttled
        self._failures_per_minute = failures_per_minute
        self._metrics = metrics
        self._audit = audit  # failed authentications: one aggregated row per address a minute
        self._known: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._unknown: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}

    async def create(
        self,
        name: str,
        role: str,
        *,
        expires_at: dt.datetime | None = None,
        policy: KeyPolicy | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        user_id: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Create a key; returns its record and the secret (shown once, never stored)."""
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidRequestError(
                    "expires needs a time zone, e.g. 2027-01-31T00:00:00Z", param="expires"
                )
            if expires_at <= dt.datetime.now(dt.UTC):
                raise InvalidRequestError("expires is in the past", param="expires")
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        if not name or len(name) > 128:
            raise InvalidRequestError("name must be 1-128 characters", param="name")
        secret = _new_secret()
        try:
            record = await self._repo.insert(
                key_id="key_" + secrets.token_hex(8),
                name=name,
                role=role,
                secret_hash=hash_secret(secret),
                prefix=secret[: len(SECRET_PREFIX) + 4],
                expires_at=expires_at,
                policy=policy,
                tenant_id=tenant_id,
                user_id=user_id,
            )
        except MissingRecordError as exc:
            raise NotFoundError("no such tenant or user", param="user_id") from exc
        return record, secret

    async def list(
        self, tenant_id: str | None = None, user_id: str | None = None
    ) -> list[ApiKeyRecord]:
        return await self._repo.list(tenant_id, user_id)

    async def get(self, key_id: str, tenant_id: str | None = None) -> ApiKeyRecord:
        """The key, or 404 (a key of another tenant is not found either)."""
        record = await self._repo.get(key_id, tenant_id)
        if record is None:
            raise NotFoundError(f"no key {key_id}", param="key_id")
        return record

    async def revoke(self, key_id: str, tenant_id: str | None = None) -> bool:
        ok = await self._repo.revoke(key_id, tenant_id)
        self.forget()
        return ok

    async def rotate(
        self, key_id: str, tenant_id: str | None = None, *, grace_s: float = 3600
    ) -> tuple[ApiKeyRecord, str]:
        """A new secret for the key (same id, terms and records); the old one keeps working
        for ``grace_s`` seconds so callers can switch over. 404 for an unknown or revoked key."""
        if not 0 <= grace_s <= MAX_ROTATION_GRACE_S:
            raise InvalidRequestError(
                f"grace_s must be 0-{MAX_ROTATION_GRACE_S} seconds", param="grace_s"
            )
        secret = _new_secret()
        record = await self._repo.rotate(
            key_id,
            tenant_id,
            secret_hash=hash_secret(secret),
            prefix=secret[: len(SECRET_PREFIX) + 4],
            old_valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace_s),
        )
        if record is None:
            raise NotFoundError(f"no active key {key_id}", param="key_id")
        self.forget()
        return record, secret

    def forget(self) -> None:
        """Drop cached lookups (this replica's; others' expire within the cache TTL)."""
        self._known.clear()
        self._unknown.clear()
        self._pending.clear()  # a lookup under way may predate the change

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
        # One lookup per key at a time: when an entry expires, the requests that arrive
        # together (a busy key's whole concurrency) wait for the first one's answer.
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        task = asyncio.ensure_future(self._fetch(digest, now))
        self._pending[digest] = task

        def done(_t: object) -> None:
            if self._pending.get(digest) is task:
                del self._pending[digest]

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _fetch(self, digest: str, now: float) -> Principal | None:
        found = await self._repo.find_active_by_hash(digest)
        principal = Principal.of(found) if found else None
        cache = self._known if principal else self._unknown
        cache[digest] = (now + self._ttl, principal)
        cache.move_to_end(digest)
        if len(cache) > _CACHE_MAX:
            cache.popitem(last=False)
        return principal

    async def authenticate(self, authorization: str | None, client: str | None = None) -> Principal:
        """Resolve an ``Authorization`` header to a Principal or raise 401. A ``client``
        address that failed ``failures_per_minute`` times in the last minute gets 429 before
        any lookup — a spray of random keys costs a counter, not the database — unless its key
        is one already known valid in the cache (others behind the same address keep working)."""
        key = f"authfail:{client}" if client is not None and self._limiter is not None else None
        try:
            digest = self._digest(authorization)
            known = self._cached(self._known, digest)
            if known is not None:  # a key known valid passes even a throttled address
                return self._admitted(known, client)
            refusal = await self._refusal(key) if key is not None else None
            if refusal is not None:
                self._count("throttled")
                if self._audit is not None:
                    self._audit.count("auth.failed", client_ip=client, reason="throttled")
                raise refusal
            principal = await self._lookup(digest)
            if principal is None:
                raise _Refused(
                    "invalid", "Authentication Fails, your api key is invalid or revoked"
                )
            return self._admitted(principal, client)
        except _Refused as exc:
            self._count(exc.reason)
            if self._audit is not None:
                self._audit.count("auth.failed", client_ip=client, reason=exc.reason)
            if key is not None and self._limiter is not None:
                await self._limiter.hit(
                    key, limit=self._failures_per_minute, period_s=60, force=True
                )
            raise

    async def resume(self, digest: str, client: str | None = None) -> Principal:
        """The principal of a console session's key, looked up by the key's digest as a
        bearer key is: 401 once the key is revoked, expired or rotated past its grace."""
        principal = self._cached(self._known, digest) or await self._lookup(digest)
        if principal is None:
            self._count("session")
            raise AuthenticationError(
                "Authentication Fails: the API key this console session was opened with is "
                "revoked or replaced; log in again",
                code="session_key_invalid",
            )
        return self._admitted(principal, client)

    @staticmethod
    def _admitted(principal: Principal, client: str | None) -> Principal:
        """The key's own terms: not expired (401), called from an allowed address (403)."""
        if principal.expires_at is not None and principal.expires_at <= dt.datetime.now(dt.UTC):
            raise _Refused(
                "expired",
                "Authentication Fails, your api key expired at "
                f"{principal.expires_at:%Y-%m-%d %H:%M:%S} UTC",
            )
        if not principal.policy.allows_address(client):
            raise PermissionDeniedError(
                f"this API key may not be used from {client or 'an unknown address'}"
            )
        return principal

    async def _refusal(self, key: str) -> RateLimitError | None:
        """The 429 for an address with no failures left; None while it has some."""
        assert self._limiter is not None
        ahead = await self._limiter.hit(key, limit=self._failures_per_minute, period_s=60, cost=0)
        if ahead.allowed:
            return None
        wait = max(1, math.ceil(ahead.retry_after_s))
        return RateLimitError(
            "Too many failed authentications from this address; retry in "
            f"{wait} s with a valid API key",
            retry_after=wait,
        )

    @staticmethod
    def _cached(
        cache: OrderedDict[str, tuple[float, Principal | None]], digest: str
    ) -> Principal | None:
        hit = cache.get(digest)
        if hit is None or hit[0] <= time.monotonic():
            return None
        cache.move_to_end(digest)
        return hit[1]

    def _count(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.auth_failures.labels(reason).inc()

    @staticmethod
    def _digest(authorization: str | None) -> str:
        """The SHA-256 of the header's key; 401 for a missing or malformed header."""
        if not authorization:
            raise _Refused(
                "missing",
                "Authentication Fails: no API key given "
                "(send the header Authorization: Bearer sk-...)",
            )
        if len(authorization) > MAX_AUTH_HEADER:
            raise _Refused(
                "malformed", "Authentication Fails: the Authorization header is too long"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Refused(
                "malformed", "Authentication Fails (auth header format should be Bearer sk-...)"
            )
        return hash_secret(token)
