"""Prometheus metrics, one registry per app (no module globals), names prefixed ``seekport_``."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The gateway's metrics. Labels stay low-cardinality: route, model, status, backend."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "seekport_requests",
            "Requests by route, model and HTTP status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "seekport_request_latency_seconds",
            "Time from request to last byte.",
            ["route", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "seekport_time_to_first_token_seconds",
            "Time from request to the first token.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "seekport_tokens",
            "Tokens by model and kind (prompt, completion, cached).",
            ["model", "kind"],
            registry=r,
        )
        self.spend = Counter(
            "seekport_spend",
            "What answered requests cost, in their price table's currency (pricing:), by the "
            "model asked for: the usage records' cost, as it is recorded.",
            ["model", "currency"],
            registry=r,
        )
        self.in_flight = Gauge(
            "seekport_requests_in_flight", "Requests being served now.", registry=r
        )
        self.upstream_errors = Counter(
            "seekport_upstream_errors",
            "Failed upstream calls by backend and reason.",
            ["backend", "reason"],
            registry=r,
        )
        # routing across a model group's deployments
        self.attempts = Counter(
            "seekport_upstream_attempts",
            "Calls to a deployment by outcome (ok, or why it failed: timeout, upstream, "
            "overloaded, rate_limited, balance, context, fatal).",
            ["model", "deployment", "outcome"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "seekport_breaker_state",
            "A deployment's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["model", "deployment"],
            registry=r,
        )
        self.fallbacks = Counter(
            "seekport_fallbacks",
            "Requests that moved on from their model's group to a fallback model.",
            ["model", "to"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "seekport_cache_lookups",
            "Response cache lookups by model and result (hit, semantic_hit, miss).",
            ["model", "result"],
            registry=r,
        )
        self.cache_short_hits = Counter(
            "seekport_cache_short_hits",
            "Exact cache hits served the short way: a caller's request bytes seen before, "
            "from the memo of what the gateway derived from them (a subset of the hits).",
            ["model"],
            registry=r,
        )
        self.cache_bytes = Counter(
            "seekport_cache_bytes",
            "Bytes of answers stored in (stored) and served from (served) the response cache.",
            ["direction"],
            registry=r,
        )
        self.cache_memory_bytes = Gauge(
            "seekport_cache_memory_bytes",
            "Bytes the response cache holds in this process's memory.",
            registry=r,
        )
        self.guard_actions = Counter(
            "seekport_guard_actions",
            "The guard's actions by kind (a personal-data kind, or words) and action (redact, "
            "block on a request; redact_output, content_filter on an answer).",
            ["kind", "action"],
            registry=r,
        )
        self.auth_failures = Counter(
            "seekport_auth_failures",
            "Failed authentications: missing, malformed, invalid (unknown or revoked key), "
            "throttled (the client address failed too often and got 429 before any lookup).",
            ["reason"],
            registry=r,
        )
        self.backup_last_success = Gauge(
            "seekport_backup_last_success_timestamp_seconds",
            "When the last scheduled backup of the embedded store succeeded (Unix time).",
            registry=r,
        )
        self.usage_write_failures = Counter(
            "seekport_usage_write_failures",
            "Usage records that could not be committed.",
            registry=r,
        )

        # local engine (continuous batching)
        self.engine_waiting = Gauge(
            "seekport_engine_waiting", "Sequences waiting for a slot.", ["model"], registry=r
        )
        self.engine_running = Gauge(
            "seekport_engine_running", "Sequences decoding.", ["model"], registry=r
        )
        self.engine_kv_cells = Gauge(
            "seekport_engine_kv_cells_used",
            "KV cache cells reserved or holding prefixes.",
            ["model"],
            registry=r,
        )
        # the limits beside the gauges they bound, so rules alert on saturation ratios
        self.engine_waiting_limit = Gauge(
            "seekport_engine_waiting_limit",
            "Sequences that may wait beyond the free slots; more are refused with 503.",
            ["model"],
            registry=r,
        )
        self.engine_slots = Gauge(
            "seekport_engine_slots", "Sequences that may decode together.", ["model"], registry=r
        )
        self.engine_kv_cells_total = Gauge(
            "seekport_engine_kv_cells_total", "KV cache cells in all.", ["model"], registry=r
        )
        self.engine_tokens = Counter(
            "seekport_engine_tokens",
            "Tokens run through the model, by phase.",
            ["model", "phase"],
            registry=r,
        )
        self.engine_prefix_hits = Counter(
            "seekport_engine_prefix_cache_hit_tokens",
            "Prompt tokens served from cached KV.",
            ["model"],
            registry=r,
        )
        self.engine_batch = Histogram(
            "seekport_engine_batch_size",
            "Sequences per engine step.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.tpot = Histogram(
            "seekport_time_per_output_token_seconds",
            "Gap between output tokens of a stream.",
            ["model"],
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: prometheus_client checks the values and takes a
        lock on every ``labels`` call (~4 µs; a request makes a dozen). For the per-request
        counters and histograms only, whose label values are bounded (routes, served models,
        statuses, kinds) and never removed."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
