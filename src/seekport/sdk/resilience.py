"""The client's retries and its circuit breaker per model.

Retries: exponential backoff with full jitter (AWS's "Exponential Backoff and Jitter"): the
n-th retry waits a random time in ``[0, min(max_delay, initial_delay * 2**n)]`` — 1 s, 2 s …
up to 32 s by default — or exactly the server's ``Retry-After`` when it sends one. Only
errors a retry can fix are retried (a connection or timeout failure, 408, 409, 429, 500, 502,
503, 504), never a stream that already yielded content.

Breaker: per model, the outcomes of the last ``window_s`` seconds; with at least ``min_calls``
of them and an error share over ``error_rate`` it opens, and calls go to the model's fallback
for ``cooldown_s``. Then one call at a time probes the model: a success closes the breaker, a
failure opens it again. Errors are what says the model is unwell (connection failures,
timeouts, 5xx), not a caller's own 4xx or rate limit.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from seekport.errors import SeekportError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 6
    initial_delay: float = 1.0
    max_delay: float = 32.0
    # a Retry-After longer than this is not waited for: the error is raised at once
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("retry settings must not be negative")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds before retry number ``retry`` (0-based); None: do not retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return rng.uniform(0, min(self.max_delay, self.initial_delay * 2**retry))


def retryable(exc: SeekportError) -> bool:
    from seekport.sdk.errors import APIConnectionError, StreamInterruptedError

    if isinstance(exc, StreamInterruptedError):
        return False
    if isinstance(exc, APIConnectionError):
        return True
    return exc.status_code in RETRYABLE_STATUS


def unhealthy(exc: SeekportError) -> bool:
    """Counts against the model's breaker."""
    from seekport.sdk.errors import APIConnectionError, CircuitOpenError

    if isinstance(exc, CircuitOpenError):
        return False
    return isinstance(exc, APIConnectionError) or exc.status_code >= 500


State = Literal["closed", "open", "half_open"]


@dataclass
class BreakerSettings:
    error_rate: float = 0.3
    min_calls: int = 10
    window_s: float = 60.0
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.error_rate <= 1:
            raise ValueError("error_rate must be in (0, 1]")
        if self.min_calls < 1 or self.window_s <= 0 or self.cooldown_s < 0:
            raise ValueError("min_calls >= 1, window_s > 0 and cooldown_s >= 0")


@dataclass
class Breaker:
    settings: BreakerSettings = field(default_factory=BreakerSettings)
    clock: Callable[[], float] = time.monotonic
    _outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    _opened_at: float | None = None
    _probing: bool = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at < self.settings.cooldown_s:
            return "open"
        return "half_open"

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.settings.cooldown_s - (self.clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go to this model now? (In half-open state: one probe at a time.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probing:
            return False
        self._probing = True
        return True

    def record(self, ok: bool) -> None:
        now = self.clock()
        if self._opened_at is not None:
            if not self._probing:
                return  # a call sent before it opened: the probe decides
            self._probing = False
            if ok:
                self._opened_at = None
                self._outcomes.clear()
            else:
                self._opened_at = now
            return
        self._outcomes.append((now, ok))
        while self._outcomes and self._outcomes[0][0] < now - self.settings.window_s:
            self._outcomes.popleft()
        n = len(self._outcomes)
        errors = sum(1 for _, good in self._outcomes if not good)
        if n >= self.settings.min_calls and errors / n > self.settings.error_rate:
            self._opened_at = now

    def release(self) -> None:
        """A probe that ended without an outcome (the caller went away, a 4xx)."""
        self._probing = False


class Breakers:
    """One breaker per model, and the fallbacks to use while one is open."""

    def __init__(
        self,
        settings: BreakerSettings | None,
        fallbacks: dict[str, str | list[str]] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings  # None: no breakers (every call goes to its model)
        self.fallbacks = {
            k: [v] if isinstance(v, str) else list(v) for k, v in (fallbacks or {}).items()
        }
        self._clock = clock
        self._by_model: dict[str, Breaker] = {}

    def of(self, model: str) -> Breaker | None:
        if self.settings is None:
            return None
        b = self._by_model.get(model)
        if b is None:
            b = self._by_model[model] = Breaker(self.settings, self._clock)
        return b

    def pick(self, model: str) -> str:
        """The model to send to: the asked one while its breaker lets it, else the first
        fallback whose own breaker lets it. Raises CircuitOpenError when none does."""
        from seekport.sdk.errors import CircuitOpenError

        for candidate in [model, *self.fallbacks.get(model, [])]:
            b = self.of(candidate)
            if b is None or b.allow():
                return candidate
        b = self.of(model)
        wait = b.retry_in() if b is not None else 0.0
        raise CircuitOpenError(
            f"the circuit breaker of '{model}' is open (too many failures) and no fallback "
            "model is available; configure fallbacks= or retry later",
            retry_after=max(1.0, wait),
        )

    def state(self, model: str) -> State:
        b = self.of(model)
        return b.state if b is not None else "closed"
