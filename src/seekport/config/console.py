"""The ``console:`` section: the web console at ``/console`` and its login sessions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Serve the web console (keys, usage, models, knowledge bases, playground) "
        "at `/console`; its pages use the same API routes and role checks as any client.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs the console's session cookies (32+ characters; set it from the "
        "environment, `SEEKPORT_CONSOLE__SESSION_SECRET`). None: a random one per process, so "
        "sessions end when the server restarts.",
        min_length=32,
    )
    session_ttl_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = Field(
        default=8 * 3600,
        description="A session ends this long after its last request (8 hours), or at logout.",
    )
    session_lifetime_s: Annotated[int, Field(ge=60, le=90 * 86_400)] = Field(
        default=86_400,
        description="A session ends this long after login however active it is (a day); "
        "the cookie's Max-Age.",
    )
    max_sessions: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=10_000,
        description="Open sessions held by one server; past it the least recently used one "
        "ends. Sessions live in the server's memory: behind several replicas, route a "
        "browser to one replica (sticky sessions).",
    )
    secure_cookie: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure (sent over HTTPS only). None: when the "
        "request came over HTTPS (as the proxy's `X-Forwarded-Proto` says to uvicorn).",
    )
