"""Ordering a group's deployments for one request.

Every strategy starts from smooth weighted round-robin (nginx's: each pick adds every
candidate's weight to its running score, takes the highest and takes the total off it), which
spreads picks by weight without bursts. ``least_inflight`` and ``lowest_latency`` take the
candidates with the fewest calls under way (per unit of weight) or the lowest EWMA of time to
first token (unmeasured ones first), round-robin among those equals, then the rest by that
measure; and ``tag_aware`` puts the deployments whose ``region`` tag matches the request's
first. The first of the order is tried first; the rest are the retry order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

STRATEGIES = ("weighted_round_robin", "least_inflight", "lowest_latency", "tag_aware")


class Ewma:
    """An exponentially weighted moving average; None until the first sample."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def observe(self, sample: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            self.value += self.alpha * (sample - self.value)


@dataclass(slots=True, frozen=True)
class Candidate:
    index: int  # the deployment's place in its group
    weight: float
    tags: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    ttft: float | None = None


class Balancer:
    def __init__(self, strategy: str, rng: Callable[[], float] | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{strategy}' (one of {', '.join(STRATEGIES)})")
        self.strategy = strategy
        self._rng = rng  # None: deterministic; else the scores start at random (replicas differ)
        self._score: dict[int, float] = {}

    def order(self, candidates: list[Candidate], region: str | None = None) -> list[Candidate]:
        """The candidates in the order to try them; advances the round-robin state."""
        live = [c for c in candidates if c.weight > 0]
        if not live:
            return []
        if self.strategy == "tag_aware" and region is not None:
            near = [c for c in live if c.tags.get("region") == region]
            far = [c for c in live if c.tags.get("region") != region]
            return (
                self._round_robin(near) + self._round_robin(far) if near else self._round_robin(far)
            )
        key = _KEYS.get(self.strategy)
        if key is None:
            return self._round_robin(live)
        # round-robin among the best (equals keep taking turns), then the rest by the key
        best = min(key(c) for c in live)
        rest = sorted((c for c in live if key(c) != best), key=lambda c: (key(c), c.index))
        return self._round_robin([c for c in live if key(c) == best]) + rest

    def _round_robin(self, live: list[Candidate]) -> list[Candidate]:
        if not live:
            return []
        total = sum(c.weight for c in live)
        for c in live:
            if c.index not in self._score:
                self._score[c.index] = self._rng() * c.weight if self._rng else 0.0
            self._score[c.index] += c.weight
        first = max(live, key=lambda c: (self._score[c.index], -c.index))
        self._score[first.index] -= total
        rest = sorted(
            (c for c in live if c is not first),
            key=lambda c: (-self._score[c.index], c.index),
        )
        return [first, *rest]

    def state(self) -> dict[int, float]:
        return dict(self._score)


def _load(c: Candidate) -> tuple[float, float]:
    return (c.in_flight / c.weight, 0.0)


def _latency(c: Candidate) -> tuple[float, float]:
    """Unmeasured deployments first, so each gets a first sample; then the fastest."""
    return (float(c.ttft is not None), c.ttft or 0.0)


_KEYS: dict[str, Callable[[Candidate], tuple[float, float]]] = {
    "least_inflight": _load,
    "lowest_latency": _latency,
}
