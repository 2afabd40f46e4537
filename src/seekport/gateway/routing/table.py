"""The routing table: each public model's group of deployments, and the policy they share.

A table is built once from the settings and the started backends, and never changed: a reload
builds a new one and the router swaps it in, so a request keeps the table it started with.
What a deployment learns while serving (its breaker, TTFT average, in-flight count, a
``Retry-After`` skip) lives on its ``Deployment`` object, which a reload carries over when the
deployment's config is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seekport.config.routing import RoutingConfig
from seekport.gateway.backends.base import ChatBackend
from seekport.gateway.routing.balancer import Balancer, Candidate, Ewma
from seekport.gateway.routing.breaker import Breaker


@dataclass(slots=True, eq=False)
class Deployment:
    """One backend serving a public model name; ``id`` labels responses, metrics and records."""

    id: str
    model: str
    backend: ChatBackend
    weight: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    breaker: Breaker | None = None  # None: never ejected (tests, a table built by hand)
    first_token_timeout_s: float | None = None  # remote upstreams only
    ttft: Ewma = field(default_factory=Ewma)
    in_flight: int = 0  # calls under way on it (counted by the router, for every backend)
    skip_until: float = 0.0  # monotonic time before which it is left out (Retry-After)
    config: Any = None  # the model config it was built from: a reload keeps it if unchanged

    @property
    def retry_same(self) -> bool:
        """May a failed call be tried again on this same deployment? Remote upstreams: yes (a
        network blip, a 503). The local engine: no, its failures do not pass in a moment."""
        return self.backend.kind != "local"

    def allows(self) -> bool:
        return self.breaker is None or self.breaker.allow()

    def healthy(self) -> bool:
        return self.breaker is None or self.breaker.level() == 0

    def snapshot(self, now: float) -> dict[str, Any]:
        ttft = self.ttft.value
        return {
            "deployment": self.id,
            "backend": self.backend.kind,
            "weight": self.weight,
            "tags": self.tags,
            "in_flight": self.in_flight,
            "ready": self.backend.ready(),
            "ttft_ewma_ms": round(ttft * 1000, 1) if ttft is not None else None,
            "skipped_for_s": round(max(0.0, self.skip_until - now), 3),
            "breaker": self.breaker.snapshot() if self.breaker else None,
        }


@dataclass(slots=True)
class Group:
    """The deployments of one public model and the balancer that orders them."""

    model: str
    deployments: list[Deployment]
    balancer: Balancer

    def candidates(self, pool: list[Deployment]) -> list[Candidate]:
        index = {id(d): i for i, d in enumerate(self.deployments)}
        return [Candidate(index[id(d)], d.weight, d.tags, d.in_flight, d.ttft.value) for d in pool]


@dataclass(slots=True)
class RoutingTable:
    groups: dict[str, Group]
    policy: RoutingConfig

    def __iter__(self) -> Iterator[Deployment]:
        for group in self.groups.values():
            yield from group.deployments

    def backends(self) -> list[ChatBackend]:
        return [d.backend for d in self]

    @classmethod
    def of(cls, deployments: list[Deployment], policy: RoutingConfig | None = None) -> RoutingTable:
        policy = policy or RoutingConfig()
        groups: dict[str, Group] = {}
        for d in deployments:
            if d.model not in groups:
                groups[d.model] = Group(d.model, [], Balancer(policy.strategy))
            groups[d.model].deployments.append(d)
        return cls(groups, policy)
