"""The ChatBackend Protocol the gateway serves against.

A backend answers one call with the typed events of ``protocol.events``, streamed or not: a
non-stream answer is the aggregate of the same events, built at the edge. ``generate`` admits
the call first (a full queue, a refused request or an upstream error status raise there, before
any event), then returns the events. ``[DONE]`` and the wire format are the edge's business.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from seekport.protocol.events import Event

Endpoint = Literal["chat", "completion"]


@dataclass(slots=True)
class CallStats:
    """What one call used and how it went; the service fills it from the events (backends
    may set ``prompt_tokens`` early, once the prompt is tokenised). Read by accounting."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None  # time.perf_counter() of the first output
    last_token_at: float | None = None
    finish_reason: str | None = None
    usage_seen: bool = False  # the backend's own usage arrived (authoritative)
    upstream_status: int | None = None  # remote: the upstream's own HTTP status, if any


@dataclass(slots=True)
class BackendCall:
    endpoint: Endpoint
    model: str  # the public model id the client asked for
    request: BaseModel  # validated ChatCompletionRequest or CompletionRequest
    body: dict[str, Any]  # the raw JSON body, unknown fields included
    request_id: str
    stream: bool = False
    stats: CallStats = field(default_factory=CallStats)
    beta: bool = False  # arrived under /beta (DeepSeek's FIM and prefix completion)


class ChatBackend(Protocol):
    """One deployment of a model (local engine or remote upstream)."""

    model: str
    kind: str
    fingerprint: str | None  # system_fingerprint of answers we encode ourselves
    reasoning: bool  # chat answers always carry reasoning_content (possibly empty)

    async def start(self) -> None:
        """Load or connect. Called once in the app's lifespan."""

    async def aclose(self) -> None:
        """Release everything; running calls are aborted."""

    def ready(self) -> bool:
        """True once the backend can serve (local: model loaded)."""

    async def generate(self, call: BackendCall) -> AsyncIterator[Event]:
        """Admit the call (errors raise here, before any event) and return its events."""


class OwnedEvents:
    """A backend's events that always let go of what the call holds (an upstream connection,
    an engine sequence) on ``aclose``, even if nobody ever asked for the first event: an async
    generator that never started skips its ``finally``."""

    __slots__ = ("_gen", "_release", "_started")

    def __init__(self, gen: AsyncGenerator[Event, None], release: Callable[[], None]) -> None:
        self._gen = gen
        self._release = release  # what the generator's finally would have done
        self._started = False

    def __aiter__(self) -> OwnedEvents:
        return self

    async def __anext__(self) -> Event:
        self._started = True
        return await anext(self._gen)

    async def aclose(self) -> None:
        if not self._started:
            self._started = True
            self._release()
        await self._gen.aclose()
