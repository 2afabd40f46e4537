"""What routes get from the composition root, stored on ``app.state``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from seekport.config import Settings
from seekport.gateway.audit import AuditLog
from seekport.gateway.auth import KeyService, Permission, Principal
from seekport.gateway.budgets import Budgets
from seekport.gateway.directory import Directory
from seekport.gateway.embeddings import EmbeddingService
from seekport.gateway.service import ChatService
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


def services_or_none(request: Request) -> Services | None:
    """The wired services, or None while the server starts or stops (routes answer 503)."""
    svc = getattr(request.app.state, "services", None)
    assert svc is None or isinstance(svc, Services)
    return svc


def client_ip(request: Request) -> str | None:
    """The peer address (the failed-authentication throttle is kept per address)."""
    return request.client.host if request.client else None


async def authorize(
    services: Services,
    request: Request,
    permission: Permission,
    header: str | None = None,
) -> Principal:
    """The caller's principal if its role grants ``permission``: 401 without a valid key, 403
    for a role without it. Every route calls this first (``header``: the key when it came in
    another header than ``Authorization``, as Anthropic's ``x-api-key``)."""
    address = client_ip(request)
    with tracing.span("seekport.auth"):
        principal = await services.keys.authenticate(
            header if header is not None else request.headers.get("authorization"), address
        )
        principal.require(permission)
    if permission in ("infer", "models"):
        return principal
    return dataclasses.replace(principal, client_ip=address)  # the audit's "from where"
