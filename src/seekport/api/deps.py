"""What routes get from the composition root, stored on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from seekport.config import Settings
from seekport.gateway.auth import KeyService
from seekport.gateway.service import ChatService
from seekport.telemetry.metrics import Metrics


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: KeyService
    chat: ChatService
    metrics: Metrics
    started_at: int
    draining: bool = False  # SIGTERM came: new requests get 503


def services_or_none(request: Request) -> Services | None:
    """The wired services, or None while the server starts or stops (routes answer 503)."""
    svc = getattr(request.app.state, "services", None)
    assert svc is None or isinstance(svc, Services)
    return svc
