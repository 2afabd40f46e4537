"""What routes get from the composition root, stored on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from seekport.config import Settings
from seekport.errors import OverloadedError
from seekport.gateway.auth import KeyService, Principal
from seekport.gateway.service import ChatService, RequestContext
from seekport.telemetry.metrics import Metrics


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: KeyService
    chat: ChatService
    metrics: Metrics
    started_at: int


def services(request: Request) -> Services:
    svc = getattr(request.app.state, "services", None)
    if svc is None:  # before the lifespan built them, or after it tore them down
        raise OverloadedError("the server is starting or stopping; retry later", retry_after=1)
    assert isinstance(svc, Services)
    return svc


def context(request: Request, route: str) -> RequestContext:
    state = request.scope.setdefault("state", {})
    state["route_label"] = route
    return RequestContext(
        request_id=state.get("request_id") or "",
        client_request_id=state.get("client_request_id"),
        route=route,
        client_ip=request.client.host if request.client else None,
        started=state.get("started", 0.0),
        beta=request.url.path.startswith("/beta/"),
    )


async def authenticate(request: Request) -> Principal:
    return await services(request).keys.authenticate(request.headers.get("authorization"))
