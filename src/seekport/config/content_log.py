"""The ``content_log:`` section: what was asked and answered, kept apart from usage records
(off by default)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["off", "redacted", "full"]


class ContentLogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        default="off",
        description="off; redacted (personal data replaced by its kind, e.g. [EMAIL]); or full.",
    )
    tenants: dict[str, Mode] = Field(
        default_factory=dict, description="A tenant's own mode (by tenant id)."
    )
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = Field(
        default=30, description="Entries older than this are deleted by the daily job."
    )
    erasure_grace_days: Annotated[float, Field(ge=0, le=365)] = Field(
        default=7.0,
        description="A user's erased entries are hidden at once and deleted this much later.",
    )
    max_chars: Annotated[int, Field(ge=1024, le=10_000_000)] = Field(
        default=200_000, description="Request and answer text kept per entry, each at most."
    )

    def mode_for(self, tenant_id: str | None) -> Mode:
        if tenant_id is not None and tenant_id in self.tenants:
            return self.tenants[tenant_id]
        return self.mode
