"""One pure-ASGI middleware for what comes before any route: the body limit, the in-flight
gauge, and an ``x-request-id`` on every response that lacks one (health probes, unknown routes,
framework errors; API routes set their own through the request scope). Pure ASGI:
BaseHTTPMiddleware costs far more per request and breaks streaming cancellation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seekport.api.errors import error_response
from seekport.api.scope import client_request_id, new_request_id
from seekport.errors import InvalidRequestError, PayloadTooLargeError, SeekportError
from seekport.telemetry.metrics import Metrics

# API routes whose refusals here are recorded like any other request (their route labels)
API_ROUTES = {
    f"{prefix}/{name}": label
    for prefix in ("", "/v1", "/beta")
    for name, label in (("chat/completions", "chat.completions"), ("completions", "completions"))
}
API_ROUTES.update(
    {f"/anthropic{v}/messages": "anthropic.messages" for v in ("", "/v1")}
    | {f"/anthropic{v}/messages/count_tokens": "anthropic.count_tokens" for v in ("", "/v1")}
    | {f"{v}/responses": "responses" for v in ("", "/v1")}
    | {f"{v}/embeddings": "embeddings" for v in ("", "/v1")}
)


def is_upload(path: str) -> bool:
    """A document upload (``/v1/knowledge/{kb}/documents``): bounded by max_upload_bytes."""
    return path.startswith("/v1/knowledge/") and path.endswith("/documents")


# answers an API request refused here, before any route ran, and records it:
# (scope, receive, send, route label, error)
RefusalHook = Callable[[Scope, Receive, Send, str, SeekportError], Awaitable[None]]


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes or max_body_bytes
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_rid: bytes | None = None
        length: int | None = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                client_rid = v
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    echo = client_request_id(client_rid.decode("latin-1") if client_rid else None)
                    headers.append((b"x-request-id", (echo or new_request_id()).encode()))
                message["headers"] = headers
            await send(message)

        limit = self.max_upload if is_upload(scope.get("path", "")) else self.max_body
        if length is not None and (length < 0 or length > limit):
            await self._refuse(scope, receive, send_wrapper, length, limit)
            return

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
            return message

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.metrics.in_flight.dec()

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, length: int, limit: int
    ) -> None:
        """Answer a bad or too large declared body without reading it; API refusals are
        answered and recorded by the hook (a request scope of their own)."""
        err: SeekportError = (
            PayloadTooLargeError(f"request body is {length} bytes; the limit is {limit} bytes")
            if length >= 0
            else InvalidRequestError("invalid Content-Length header")
        )
        route = API_ROUTES.get(scope.get("path", ""))
        if route is not None and scope.get("method") == "POST" and self.on_refusal is not None:
            await self.on_refusal(scope, receive, send, route, err)
            return
        await error_response(err)(scope, receive, send)
