"""The one place that turns exceptions into error bodies and responses with the right status.

OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``, and Anthropic's
``{"type": "error", "error": {"type", "message"}}`` for the ``/anthropic`` routes; streams that
fail after their first byte carry the same body in-band (the encoders ask here for it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SeekportError,
)

log = logging.getLogger("seekport.api")


def error_body(exc: SeekportError) -> dict[str, Any]:
    """The OpenAI error body for this error."""
    return {
        "error": {
            "message": exc.message,
            "type": exc.error_type,
            "param": exc.param,
            "code": exc.code,
        }
    }


def anthropic_error_type(exc: SeekportError) -> str:
    """Anthropic's name for this error (the status code stays ours: 503, not 529)."""
    if isinstance(exc, InvalidRequestError):
        return "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    if isinstance(exc, AuthenticationError):
        return "authentication_error"
    if isinstance(exc, PermissionDeniedError):
        return "permission_error"
    if isinstance(exc, NotFoundError):
        return "not_found_error"
    if isinstance(exc, PayloadTooLargeError):
        return "request_too_large"
    if isinstance(exc, RateLimitError):
        return "rate_limit_error"
    if isinstance(exc, OverloadedError):
        return "overloaded_error"
    status = exc.status_code  # an upstream's own status, passed on
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }.get(status, "api_error")


def anthropic_error_body(exc: SeekportError) -> dict[str, Any]:
    """The Anthropic Messages error body for this error."""
    return {"type": "error", "error": {"type": anthropic_error_type(exc), "message": exc.message}}


def internal_error(request_id: str) -> SeekportError:
    """What the client sees of an unexpected failure: no details, the id to find the log."""
    return SeekportError(f"internal error; see the server log for request {request_id}")


def error_response(exc: SeekportError, headers: dict[str, str] | None = None) -> Response:
    return _response(exc, error_body(exc), headers)


def anthropic_error_response(exc: SeekportError, headers: dict[str, str] | None = None) -> Response:
    return _response(exc, anthropic_error_body(exc), headers)


def _response(exc: SeekportError, body: dict[str, Any], headers: dict[str, str] | None) -> Response:
    out = {**exc.headers, **(headers or {})}
    if exc.retry_after is not None or exc.status_code in (429, 503):
        out["retry-after"] = str(max(1, round(exc.retry_after or 1)))
    if isinstance(exc, AuthenticationError):
        out["www-authenticate"] = "Bearer"
    return Response(
        orjson.dumps(body),
        status_code=exc.status_code,
        media_type="application/json",
        headers=out,
    )


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The message and parameter of the first of pydantic's (or FastAPI's) errors."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid value", "type": ""}
    where = [str(p) for p in first["loc"] if p not in ("query", "path", "body")]
    loc = ".".join(where)
    if first["type"] == "missing":
        return f"Missing required parameter: '{loc}'", loc
    return f"Invalid parameter '{loc}': {first['msg']}", loc or None


def install_error_handlers(app: FastAPI) -> None:
    """For what no request scope caught: unknown routes, wrong methods, non-API routes."""

    async def on_seekport(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, SeekportError)
        return error_response(exc)

    async def on_http(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(NotFoundError("Not Found: no such route"))
        if exc.status_code == 405:
            not_allowed = InvalidRequestError(
                "method not allowed on this route", code="method_not_allowed"
            )
            not_allowed.status_code = 405
            return error_response(not_allowed)
        other = SeekportError(str(exc.detail))
        other.status_code = exc.status_code
        return error_response(other)

    async def on_invalid(_req: Request, exc: Exception) -> Response:
        # a query or path parameter FastAPI could not parse (admin routes): 400, our shape
        assert isinstance(exc, RequestValidationError)
        message, param = validation_message(exc.errors())
        return error_response(InvalidRequestError(message, param=param))

    async def on_unexpected(_req: Request, exc: Exception) -> Response:
        # Starlette sends this from outside every middleware: set the request id here.
        rid = "req_" + uuid.uuid4().hex
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": rid}})
        return error_response(internal_error(rid), {"x-request-id": rid})

    app.add_exception_handler(SeekportError, on_seekport)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)
