"""What an API key may do: its policy, stored with the key and checked on every call."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork


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
    max_concurrent: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Calls under way at once at most."
    )
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Output tokens per call at most (lower asks pass as asked)."
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
