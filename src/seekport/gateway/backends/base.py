"""The ChatBackend Protocol the gateway serves against.

A backend answers one call either as a whole JSON body (``complete``) or as a stream of
already-encoded SSE events (``stream``). Streams carry bytes, not models, so remote SSE is
passed through without re-serialising each chunk. ``[DONE]`` is not part of a backend's stream:
the service adds it after the usage record is committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

Endpoint = Literal["chat", "completion"]


@dataclass(slots=True)
class CallStats:
    """Filled in by the backend while it serves a call; read by accounting."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None  # time.perf_counter() of the first output token
    last_token_at: float | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class BackendCall:
    endpoint: Endpoint
    model: str  # the public model id the client asked for
    request: BaseModel  # validated ChatCompletionRequest or CompletionRequest
    body: dict[str, Any]  # the raw JSON body, unknown fields included
    request_id: str
    stats: CallStats = field(default_factory=CallStats)
    beta: bool = False  # arrived under /beta (DeepSeek's FIM and prefix completion)


class ChatBackend(Protocol):
    """One deployment of a model (local engine or remote upstream)."""

    model: str
    kind: str

    async def start(self) -> None:
        """Load or connect. Called once in the app's lifespan."""

    async def aclose(self) -> None:
        """Release everything; running calls are aborted."""

    def ready(self) -> bool:
        """True once the backend can serve (local: model loaded)."""

    async def complete(self, call: BackendCall) -> bytes:
        """The whole response body (JSON). Raises SeekportError subclasses."""

    async def stream(self, call: BackendCall) -> AsyncIterator[bytes]:
        """Admit the call (errors raise here, before any byte) and return its SSE events."""
