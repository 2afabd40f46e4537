"""The admin REST API's bodies (``/admin/tenants``, ``/admin/users``, ``/admin/keys``):
pydantic models, so OpenAPI documents them. Times are Unix seconds, as OpenAI's ``created``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from seekport.protocol.keys import KeyPolicy, Limits, Role

T = TypeVar("T")
Name = Annotated[str, Field(min_length=1, max_length=128)]
Id = Annotated[str, Field(min_length=1, max_length=128)]


def unix(t: dt.datetime | None) -> int | None:
    return int(t.timestamp()) if t is not None else None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_In):
    name: Name
    limits: Limits = Field(default_factory=Limits)


class TenantUpdate(_In):
    limits: Limits | None = None
    disabled: bool | None = Field(
        default=None, description="A disabled tenant's keys stop working (within 1 s)."
    )


class Tenant(BaseModel):
    object: Literal["tenant"] = "tenant"
    id: str
    name: str
    created_at: int
    disabled: bool
    limits: Limits


class UserCreate(_In):
    name: Name
    tenant_id: Id | None = Field(default=None, description="Default: the caller's tenant.")
    limits: Limits = Field(default_factory=Limits)


class UserUpdate(_In):
    limits: Limits | None = None
    disabled: bool | None = Field(
        default=None, description="A disabled user's keys stop working (within 1 s)."
    )


class User(BaseModel):
    object: Literal["user"] = "user"
    id: str
    tenant_id: str
    name: str
    created_at: int
    disabled: bool
    limits: Limits


class KeyCreate(KeyPolicy):
    """A key's name, role, owner and terms (the terms as ``seekport keys create`` takes them)."""

    name: Name
    role: Role = "user"
    tenant_id: Id | None = Field(default=None, description="Default: the caller's tenant.")
    user_id: Id | None = None
    expires_at: AwareDatetime | None = None

    def policy(self) -> KeyPolicy:
        return KeyPolicy.model_validate(self.model_dump(include=set(KeyPolicy.model_fields)))


class KeyRotate(_In):
    grace_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = Field(
        default=3600, description="How long the previous secret keeps working."
    )


class Key(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    role: str
    tenant_id: str
    user_id: str | None
    prefix: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    previous_secret_valid_until: int | None
    policy: KeyPolicy


class KeyWithSecret(Key):
    secret: str = Field(description="Shown this once; only its hash is stored.")


class ListOf(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]


class UsageGroup(BaseModel):
    """Totals of one group (a day, a served model or a key) in one currency."""

    group: str | None = None
    currency: str | None = Field(default=None, description="None: unpriced calls.")
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = Field(default=0, description="Cost in 1e-9 of the currency.")
    cost: str = "0.000000"
    errors: int = Field(default=0, description="Calls answered with an error (status >= 400).")
    latency_ms_avg: float = Field(default=0.0, description="Mean time to the whole answer.")
    tokens_per_s: float = Field(
        default=0.0, description="Completion tokens per second of the calls that generated."
    )
    generating_ms: float = Field(
        default=0.0, description="Time of the calls that generated (what tokens_per_s divides by)."
    )
    last_at: int | None = Field(default=None, description="Unix time of the newest call.")


class UsageReport(BaseModel):
    object: Literal["usage_report"] = "usage_report"
    group_by: str | None
    data: list[UsageGroup]
    totals: list[UsageGroup] = Field(description="One per currency.")


class AuditRow(BaseModel):
    seq: int
    id: str
    at: str
    action: str
    outcome: str
    actor_key_id: str | None
    actor_role: str | None
    tenant_id: str | None
    target_type: str | None
    target_id: str | None
    client_ip: str | None
    count: int = Field(description="More than 1: an aggregated row (refusals per minute).")
    detail: dict[str, object] | None


class AuditPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditRow]
    next: int | None = Field(description="Pass as `after` for the next page; None: the end.")


class RegistryAdd(_In):
    """``POST /admin/models/registry``: register a file already on the server's machine
    (``path``) or pull one (``url``: http(s), or ``hf:OWNER/REPO/FILE``)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    path: Annotated[str, Field(max_length=4096)] | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None
    version: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    sha256: Annotated[str, Field(min_length=64, max_length=64)] | None = None
    mirror: Annotated[str, Field(max_length=2048)] | None = None


class ModelUse(_In):
    """``POST /admin/models/{model}/use``: serve a local model from this registry version."""

    version: Annotated[str, Field(min_length=1, max_length=100, description="NAME@VERSION")]
