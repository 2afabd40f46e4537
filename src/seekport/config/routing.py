"""The ``routing:`` section: how a request picks among the deployments of a model group.

Entries of ``models:`` that share a ``name`` form a group; each entry is a deployment with a
``weight``, ``tags`` and an id (``deployment``). This section holds the policy the groups share:
the balancing strategy, retries before the first content, the per-deployment circuit breaker,
and the fallback lists from one model to others.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["weighted_round_robin", "least_inflight", "lowest_latency", "tag_aware"]


class BreakerConfig(BaseModel):
    """A circuit breaker per deployment (Hystrix-style): open after ``consecutive_failures``
    failures in a row, or when more than ``error_rate`` of at least ``min_requests`` calls in
    the last ``window_s`` failed; then one probe per cooldown, the cooldown doubling per
    re-ejection up to ``max_cooldown_s``. The last healthy deployment of a group is never
    ejected for its error rate. Failures are what routing retries (connect errors, timeouts,
    5xx, broken or garbled answers); a 429 only skips the deployment for its Retry-After."""

    model_config = ConfigDict(extra="forbid")

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5, description="Failures in a row that open the breaker."
    )
    error_rate: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.3, description="Share of failed calls in the window above which it opens."
    )
    window_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0, description="The sliding window of the error rate."
    )
    min_requests: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=5, description="Calls the window needs before its error rate counts."
    )
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="How long an opened breaker waits before one probe call (half-open).",
    )
    max_cooldown_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=300.0,
        description="The cooldown doubles each time a deployment is ejected again, up to this; "
        "also how long a 402 (insufficient balance) keeps a deployment out.",
    )

    @model_validator(mode="after")
    def _cooldowns(self) -> BreakerConfig:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError("max_cooldown_s must be at least cooldown_s")
        return self


FallbackMap = dict[str, Annotated[list[str], Field(min_length=1, max_length=16)]]


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field(
        default="weighted_round_robin",
        description="How a group's deployment is picked: `weighted_round_robin` (by `weight`), "
        "`least_inflight` (fewest calls under way), `lowest_latency` (EWMA of time to first "
        "token), `tag_aware` (deployments whose `tags.region` equals the request's "
        "`x-seekport-region` header first, weighted round-robin within, then the rest).",
    )
    max_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        default=2,
        description="Further attempts after a failed one, each on another deployment of the "
        "group when it has one; only for connect errors, timeouts, 429, 500, 502, 503 and 504, "
        "and only before the first content reached the client.",
    )
    retry_budget: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.2,
        description="Retries under way at most this share of the requests under way (at "
        "least 3 at a time; Envoy's retry budget): caps the extra load retries put on "
        "failing upstreams.",
    )
    max_retry_wait_s: Annotated[float, Field(ge=0, le=300)] = Field(
        default=5.0,
        description="The longest a retry waits (backoff, or an upstream's `Retry-After`); a "
        "deployment asking for longer is skipped for that long instead.",
    )
    backoff_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.1,
        description="First retry's backoff ceiling; doubles per retry (full jitter: a random "
        "wait between 0 and the ceiling), at most `max_retry_wait_s`.",
    )
    breaker: BreakerConfig = Field(
        default_factory=BreakerConfig,
        description="The circuit breaker every deployment gets (`routing.breaker` below).",
    )
    fallbacks: FallbackMap = Field(
        default={},
        description="Model → ordered models to try when every deployment of its group failed "
        "or is open, e.g. `{deepseek-v4-pro: [deepseek-flash, smollm2-135m-instruct]}`.",
    )
    context_fallbacks: FallbackMap = Field(
        default={},
        description="Model → models to try when a request is too long for it (a larger "
        "context window).",
    )
    balance_fallbacks: FallbackMap = Field(
        default={},
        description="Model → models to try when its upstream answers 402 (insufficient "
        "balance); that deployment is then cooled down for `max_cooldown_s`.",
    )

    def check_models(self, served: set[str]) -> None:
        """Every name in the fallback lists is a served model; raises ValueError."""
        for section in ("fallbacks", "context_fallbacks", "balance_fallbacks"):
            mapping: dict[str, list[str]] = getattr(self, section)
            for model, targets in mapping.items():
                unknown = [t for t in (model, *targets) if t not in served]
                if unknown:
                    raise ValueError(
                        f"routing.{section}: {', '.join(sorted(set(unknown)))} is not a served "
                        f"model (models: {', '.join(sorted(served))})"
                    )
                if model in targets:
                    raise ValueError(f"routing.{section}: '{model}' falls back to itself")
