"""The one place that turns exceptions into OpenAI error bodies with the right status."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    SeekportError,
)

log = logging.getLogger("seekport.api")


def error_response(exc: SeekportError) -> Response:
    headers: dict[str, str] = {}
    if exc.retry_after is not None or exc.status_code in (429, 503):
        headers["retry-after"] = str(max(1, round(exc.retry_after or 1)))
    if isinstance(exc, AuthenticationError):
        headers["www-authenticate"] = "Bearer"
    return Response(
        orjson.dumps(exc.to_body()),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
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

    async def on_unexpected(req: Request, exc: Exception) -> Response:
        rid = req.scope.get("state", {}).get("request_id")
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": rid}})
        return error_response(
            SeekportError(f"internal error; see the server log for request {rid}")
        )

    app.add_exception_handler(SeekportError, on_seekport)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
