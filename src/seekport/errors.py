"""The one exception tree of seekport.

Domain code raises these; only ``seekport.api.errors`` turns them into error bodies and HTTP
responses of the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``.

    SeekportError                      500 internal_error
    ├── InvalidRequestError            400 invalid_request_error
    │   ├── ContextLengthExceededError 400 context_length_exceeded
    │   ├── DocumentError              400 document_unparseable: an upload we cannot read
    │   └── ModelNotFoundError         404 model_not_found
    ├── AuthenticationError            401 authentication_error
    ├── PermissionDeniedError          403 permission_denied
    ├── NotFoundError                  404 not_found
    ├── InsufficientBalanceError       402 insufficient_balance: a budget is spent
    ├── PayloadTooLargeError           413 request_too_large
    ├── RateLimitError                 429 rate_limit_exceeded (Retry-After)
    ├── OverloadedError                503 server_overloaded (Retry-After)
    │   └── EngineFailedError          503 engine_failed: the local engine failed, restarts
    ├── UpstreamError                  502 upstream_error
    │   ├── UpstreamStatusError        the upstream's own 4xx/5xx, passed on
    │   └── UpstreamTimeoutError       504 upstream_timeout
    └── ConfigError                    start-up only: a bad setting, with the fix
"""

from __future__ import annotations


class SeekportError(Exception):
    """Base of every error seekport raises on purpose."""

    status_code: int = 500
    error_type: str = "internal_error"
    code: str | None = "internal_error"
    request_id: str | None = None  # the SDK's copy of the server's X-Request-ID

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.headers = headers or {}  # extra response headers (x-ratelimit-*)


class InvalidRequestError(SeekportError):
    """The request body or its parameters are invalid (400)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus the requested output) does not fit the model's context (400)."""

    code = "context_length_exceeded"


class DocumentError(InvalidRequestError):
    """An uploaded document cannot be parsed; the message names the file and the reason (400)."""

    code = "document_unparseable"


class ModelNotFoundError(InvalidRequestError):
    """The requested model is not served here (404, as OpenAI answers)."""

    status_code = 404
    code = "model_not_found"


class AuthenticationError(SeekportError):
    """Missing, malformed, unknown or revoked API key (401)."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(SeekportError):
    """The key is valid but may not do this (403)."""

    status_code = 403
    error_type = "permission_denied"
    code = "permission_denied"


class NotFoundError(SeekportError):
    """No such route or resource (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PayloadTooLargeError(SeekportError):
    """The request body exceeds the configured limit (413)."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class InsufficientBalanceError(SeekportError):
    """A budget is spent (402, DeepSeek's "Insufficient Balance")."""

    status_code = 402
    error_type = "unknown_error"  # what DeepSeek's 402 body says
    code = "insufficient_balance"


class RateLimitError(SeekportError):
    """A per-key limit was reached (429, always with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class OverloadedError(SeekportError):
    """The server cannot take more work now (503, always with Retry-After)."""

    status_code = 503
    error_type = "server_error"
    code = "server_overloaded"


class EngineFailedError(OverloadedError):
    """The local engine failed under this request and is restarting (503, Retry-After)."""

    code = "engine_failed"


class UpstreamError(SeekportError):
    """A remote upstream failed in a way the client cannot fix (502)."""

    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; its status is passed on to the client."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after=retry_after)
        self.status_code = status_code
        if error_type:
            self.error_type = error_type


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer in time (504)."""

    status_code = 504
    code = "upstream_timeout"


class ConfigError(SeekportError):
    """A setting is invalid; the message names the field and the fix. Raised at start-up."""

    error_type = "config_error"
    code = "config_error"
