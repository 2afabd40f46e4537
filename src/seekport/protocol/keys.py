"""What an API key may do (its policy, stored with the key and checked on every call), the
limits a user or a tenant puts over all its keys, and the roles."""

from __future__ import annotations

import datetime as dt
import ipaddress
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

Role = Literal["superadmin", "admin", "user", "auditor", "viewer"]
ROLES: tuple[Role, ...] = ("superadmin", "admin", "user", "auditor", "viewer")


Period = Literal["daily", "weekly", "monthly", "total"]


class Budget(BaseModel):
    """Money a key, user or tenant may spend per period (UTC calendar periods), in the
    gateway's accounting currency (``pricing.currency``). Past it: 402 Insufficient Balance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Annotated[Decimal, Field(gt=0, le=1_000_000_000, decimal_places=9)] = Field(
        description="The amount per period."
    )
    period: Period = Field(default="monthly", description="When the spend starts over.")

    def window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
        """The current period's start and end (None: never ends)."""
        day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if self.period == "daily":
            return day, day + dt.timedelta(days=1)
        if self.period == "weekly":
            start = day - dt.timedelta(days=day.weekday())
            return start, start + dt.timedelta(days=7)
        if self.period == "monthly":
            start = day.replace(day=1)
            nxt = (start + dt.timedelta(days=32)).replace(day=1)
            return start, nxt
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC), None

    def nanos(self) -> int:
        return int(self.amount * 1_000_000_000)


class Limits(BaseModel):
    """Limits over every call of a user's or a tenant's keys together; unset: no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Requests per minute."
    )
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(
        default=None, description="Tokens (prompt + completion) per minute."
    )
    max_concurrent: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Calls under way at once."
    )
    budget: Budget | None = Field(default=None, description="Spend per period, all keys.")

    def stored(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_defaults=True)


class KeyPolicy(BaseModel):
    """Empty fields mean no restriction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(
        default=(), max_length=256, description="Models (or aliases) the key may call."
    )
    ip_allow: tuple[IPvAnyNetwork, ...] = Field(
        default=(), max_length=256, description="Client address ranges (CIDR) it may call from."
    )
    rpm: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Requests per minute (GCRA; a full minute's burst)."
    )
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(
        default=None,
        description="Tokens (prompt + completion) per minute: an estimate is reserved at "
        "admission and settled with the real count after.",
    )
    max_concurrent: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Calls under way at once at most."
    )
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Output tokens per call at most (lower asks pass as asked)."
    )
    budget: Budget | None = Field(default=None, description="Spend per period.")
    cache: bool | None = Field(
        default=None,
        description="The response cache for this key's calls: true (any model, when the "
        "cache is enabled), false (never); unset: as the config says.",
    )
    semantic_cache: bool | None = Field(
        default=None,
        description="The semantic cache for this key's calls (a rephrased question reuses an "
        "earlier answer): true (any model, when the cache applies), false (never); unset: "
        "as cache.semantic says.",
    )
    guard: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The guard policy for this key's calls: a name under guard.policies, or "
        "off; unset: its tenant's, its model's or the default.",
    )

    def allows_model(self, model: str) -> bool:
        return not self.models or model in self.models

    def allows_address(self, address: str | None) -> bool:
        if not self.ip_allow:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.ip_allow)

    def stored(self) -> dict[str, object]:
        """The JSON kept in the key's row (only what is set)."""
        return self.model_dump(mode="json", exclude_defaults=True)
