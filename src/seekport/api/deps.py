"""What routes get from the composition root, stored on ``app.state``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request

from seekport.config import Settings
from seekport.errors import AuthenticationError, PermissionDeniedError
from seekport.gateway.audit import AuditLog
from seekport.gateway.auth import KeyService, Permission, Principal
from seekport.gateway.budgets import Budgets
from seekport.gateway.directory import Directory
from seekport.gateway.embeddings import EmbeddingService
from seekport.gateway.service import ChatService
from seekport.gateway.sessions import Session, Sessions
from seekport.store.protocols import AuditStore, ContentStore, UsageReader
from seekport.telemetry import tracing
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.api.jobs import Jobs
    from seekport.api.reload import Reloader
    from seekport.gateway.knowledge import KnowledgeDesk


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: KeyService
    chat: ChatService
    metrics: Metrics
    started_at: int
    directory: Directory
    budgets: Budgets | None = None  # None: no budgets (an app built without a limiter)
    audit: AuditLog | None = None
    audit_store: AuditStore | None = None
    usage: UsageReader | None = None
    jobs: Jobs | None = None
    content: ContentStore | None = None
    draining: bool = False  # SIGTERM came: new requests get 503
    reloader: Reloader | None = None  # None: no config source to re-read (an app built in code)
    embeddings: EmbeddingService | None = None
    knowledge: KnowledgeDesk | None = None  # None: no local embedding model
    sessions: Sessions | None = None  # the web console's logins; None: console off


def services_or_none(request: Request) -> Services | None:
    """The wired services, or None while the server starts or stops (routes answer 503)."""
    svc = getattr(request.app.state, "services", None)
    assert svc is None or isinstance(svc, Services)
    return svc


def client_ip(request: Request) -> str | None:
    """The peer address (the failed-authentication throttle is kept per address)."""
    return request.client.host if request.client else None


SESSION_COOKIE = "seekport_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


async def authorize(
    services: Services,
    request: Request,
    permission: Permission,
    header: str | None = None,
) -> Principal:
    """The caller's principal if its role grants ``permission``: 401 without a valid key, 403
    for a role without it. Every route calls this first (``header``: the key when it came in
    another header than ``Authorization``, as Anthropic's ``x-api-key``). A request with no
    key but the console's session cookie is its session's key (``session_principal``)."""
    address = client_ip(request)
    with tracing.span("seekport.auth"):
        given = header if header is not None else request.headers.get("authorization")
        if not given and services.sessions is not None and SESSION_COOKIE in request.cookies:
            principal = await session_principal(services, request, address)
        else:
            principal = await services.keys.authenticate(given, address)
        principal.require(permission)
    if permission in ("infer", "models"):
        return principal
    return dataclasses.replace(principal, client_ip=address)  # the audit's "from where"


async def session_principal(services: Services, request: Request, address: str | None) -> Principal:
    """The principal of the console session the cookie names: 401 when it ended, 403 for a
    request that may change something (not GET or HEAD) without the session's CSRF token in
    ``X-CSRF-Token`` (another site's form or script cannot read it)."""
    assert services.sessions is not None
    session = services.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise AuthenticationError(
            "Authentication Fails: the console session ended or is not known here; log in again",
            code="session_expired",
        )
    if request.method not in SAFE_METHODS:
        check_csrf(request, session)
    return await services.keys.resume(session.digest, address)


def check_csrf(request: Request, session: Session) -> None:
    """403 unless the request comes from the console's own origin with the session's token."""
    same_site(request)
    if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise PermissionDeniedError(
            "a request through a console session must carry its CSRF token in the header "
            "X-CSRF-Token",
            code="csrf_failed",
        )


def same_site(request: Request) -> None:
    """403 for a browser request another site made. Current browsers say so in
    ``Sec-Fetch-Site`` (anything but same-origin, or none for a typed-in address), which a
    reverse proxy leaves alone; without it, an ``Origin`` whose host is not this one (the
    ``Host`` or the proxy's ``X-Forwarded-Host``) is refused."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        foreign = fetch_site not in ("same-origin", "none")
    else:
        origin = request.headers.get("origin")
        hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
        foreign = origin is not None and (origin == "null" or urlsplit(origin).netloc not in hosts)
    if foreign:
        raise PermissionDeniedError(
            "a console request must come from the console's own origin", code="csrf_failed"
        )
