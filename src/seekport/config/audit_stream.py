"""The ``audit_stream:`` section: audit rows streamed to a SIEM as they are committed."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AuditStreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jsonl: Path | None = Field(
        default=None,
        description="Append each audit row as a JSON line to this file (for Filebeat or "
        "Fluent Bit to ship; reopened when logrotate moves it).",
    )
    syslog: str | None = Field(
        default=None,
        description="Send each audit row as a JSON syslog message to udp://HOST:PORT or "
        "tcp://HOST:PORT (newline-framed).",
    )
    facility: str = Field(default="local0", description="The syslog facility (local0…local7).")

    @field_validator("syslog")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, _, rest = v.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme not in ("udp", "tcp") or not host or not port.isdigit():
            raise ValueError("expected udp://HOST:PORT or tcp://HOST:PORT")
        return v

    @field_validator("facility")
    @classmethod
    def _facility(cls, v: str) -> str:
        if v not in {f"local{i}" for i in range(8)} | {"auth", "authpriv", "user", "daemon"}:
            raise ValueError("expected local0…local7, auth, authpriv, user or daemon")
        return v
