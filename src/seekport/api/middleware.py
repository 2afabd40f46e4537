"""One pure-ASGI middleware for the cross-cutting seams: request id, body limit, in-flight
gauge, per-route latency and status metrics. (Pure ASGI: BaseHTTPMiddleware costs far more
per request and breaks streaming cancellation.)"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seekport.api.errors import error_response
from seekport.errors import InvalidRequestError, PayloadTooLargeError, SeekportError
from seekport.telemetry.metrics import Metrics

_CLIENT_ID = re.compile(rb"^[\x21-\x7e]{1,128}$")

# API routes whose refusals are recorded even when the edge refuses them (route labels as the
# routes set them)
API_ROUTES = {
    f"{prefix}/{name}": label
    for prefix in ("", "/v1", "/beta")
    for name, label in (("chat/completions", "chat.completions"), ("completions", "completions"))
}

# records a request refused here, before any route ran: (scope, route label, error)
RefusalHook = Callable[[Scope, str, SeekportError], Awaitable[None]]


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        client_rid: bytes | None = None
        length: int | None = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                client_rid = v if _CLIENT_ID.match(v) else None
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1
        own = "req_" + uuid.uuid4().hex  # always unique: the usage record's key
        rid = client_rid or own.encode()  # echoed back: the client's id when it sent one
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = own
        state["client_request_id"] = client_rid.decode() if client_rid else None
        state["started"] = started
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid))
                message["headers"] = headers
            await send(message)

        if length is not None and (length < 0 or length > self.max_body):
            await self._refuse(scope, receive, send_wrapper, length)
            self._observe(state, status, started)
            return

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise PayloadTooLargeError(
                        f"request body exceeds the limit of {self.max_body} bytes"
                    )
            return message

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self._observe(state, status, started)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, length: int) -> None:
        """Answer a bad or too large declared body without reading it; record API refusals."""
        err: SeekportError = (
            PayloadTooLargeError(
                f"request body is {length} bytes; the limit is {self.max_body} bytes"
            )
            if length >= 0
            else InvalidRequestError("invalid Content-Length header")
        )
        await error_response(err)(scope, receive, send)
        route = API_ROUTES.get(scope.get("path", ""))
        if route is not None and scope.get("method") == "POST":
            scope["state"]["route_label"] = route
            if self.on_refusal is not None:
                await self.on_refusal(scope, route, err)

    def _observe(self, state: dict[str, Any], status: int, started: float) -> None:
        route = state.get("route_label")
        if route is None:
            return  # health probes, /metrics and unknown paths are not API traffic
        model = state.get("model") or "-"
        m = self.metrics
        m.requests.labels(route, model, str(status)).inc()
        m.latency.labels(route, model).observe(time.perf_counter() - started)
