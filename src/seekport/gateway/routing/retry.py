"""Retry pacing: full-jitter backoff and a retry budget.

``backoff`` is the AWS "full jitter" wait: a random time between 0 and a ceiling that doubles
per attempt, capped. ``RetryBudget`` is Envoy's retry budget: retries under way may be at most
``ratio`` of the requests under way (but always ``min_concurrency``), so when an upstream fails
everything, retries add a bounded share of load instead of multiplying it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """The wait before retry ``attempt`` (0 for the first retry): uniform in
    [0, min(cap, base * 2**attempt)]."""
    if base <= 0 or cap <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(attempt, 32))
    return rng() * ceiling


class RetryBudget:
    def __init__(self, ratio: float, min_concurrency: int = 3) -> None:
        self.ratio = ratio
        self.min_concurrency = min_concurrency
        self.requests = 0  # requests under way
        self.retries = 0  # retries under way
        self.refused = 0  # retries the budget refused, in all

    def request_started(self) -> None:
        self.requests += 1

    def request_ended(self) -> None:
        self.requests = max(0, self.requests - 1)

    def limit(self) -> int:
        return max(self.min_concurrency, int(self.ratio * self.requests))

    def try_acquire(self) -> bool:
        """Take a retry slot; False (and counted) when the budget is spent."""
        if self.retries >= self.limit():
            self.refused += 1
            return False
        self.retries += 1
        return True

    def release(self) -> None:
        self.retries = max(0, self.retries - 1)

    def snapshot(self) -> dict[str, float | int]:
        return {
            "ratio": self.ratio,
            "requests_in_flight": self.requests,
            "retries_in_flight": self.retries,
            "limit": self.limit(),
            "refused": self.refused,
        }
