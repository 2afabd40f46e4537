"""The server's error bodies as the exceptions of ``seekport.errors``, plus the client's own.

An HTTP error becomes the class the server raised (by status and ``code``), with the server's
``message``, ``param``, ``code``, ``Retry-After`` and ``X-Request-ID``; its ``status_code`` is
the one received. A failure to reach the server at all is an :class:`APIConnectionError`.
"""

from __future__ import annotations

from typing import Any

from seekport.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    DocumentError,
    EngineFailedError,
    InsufficientBalanceError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SeekportError,
    UpstreamError,
    UpstreamTimeoutError,
)

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "CircuitOpenError",
    "StreamInterruptedError",
    "error_from",
    "retry_after_of",
]


class APIConnectionError(SeekportError):
    """The server could not be reached, or the connection broke before an answer."""

    status_code = 0
    error_type = "connection_error"
    code = "connection_error"


class APITimeoutError(APIConnectionError):
    """No answer within the call's timeout."""

    error_type = "timeout"
    code = "timeout"


class StreamInterruptedError(APIConnectionError):
    """A stream broke after content was yielded; it is never retried (the caller has the
    part already)."""

    code = "stream_interrupted"


class CircuitOpenError(OverloadedError):
    """The model's breaker is open and no fallback model is free: the call is not sent."""

    code = "circuit_open"


_BY_CODE: dict[str, type[SeekportError]] = {
    "context_length_exceeded": ContextLengthExceededError,
    "document_unparseable": DocumentError,
    "model_not_found": ModelNotFoundError,
    "engine_failed": EngineFailedError,
    "server_overloaded": OverloadedError,
    "upstream_timeout": UpstreamTimeoutError,
    "rate_limit_exceeded": RateLimitError,
    "insufficient_balance": InsufficientBalanceError,
}
_BY_STATUS: dict[int, type[SeekportError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    500: SeekportError,
    502: UpstreamError,
    503: OverloadedError,
    504: UpstreamTimeoutError,
}


def retry_after_of(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds; an HTTP date is ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def error_from(
    status: int, body: Any, headers: Any = None, *, request_id: str | None = None
) -> SeekportError:
    """The exception for an error answer (``body``: the parsed JSON, or text)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {"message": body if isinstance(body, str) and body else f"HTTP {status}"}
    code = err.get("code")
    code = str(code) if code is not None else None
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InvalidRequestError if 400 <= status < 500 else UpstreamError
    message = str(err.get("message") or f"HTTP {status}")
    param = err.get("param")
    exc = cls(
        message,
        param=str(param) if param is not None else None,
        code=code,
        retry_after=retry_after_of(headers) if headers is not None else None,
    )
    if status:
        exc.status_code = status
    if isinstance(err.get("type"), str):
        exc.error_type = err["type"]
    exc.request_id = request_id or (headers.get("x-request-id") if headers is not None else None)
    return exc
