"""Metering and settlement of one call's events: ``meter`` accounts each event into the call's
stats; ``Metered`` passes the events on metered and, when they close, has ``Held`` settle what
admission took (the limits' ticket with the real tokens, the budgets' hold with the real cost).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from seekport.gateway.accounting import UsageEvent
from seekport.gateway.backends.base import CallStats
from seekport.gateway.budgets import Budgets, Hold
from seekport.gateway.guard.policy import Compiled, Redaction
from seekport.gateway.limits import Ticket
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    ReasoningDelta,
    ToolCallDelta,
    UsageReport,
)
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.gateway.service import ChatResult, RequestContext


def meter(stats: CallStats, ev: Event) -> None:
    """Account one event: first output time, a lower bound of output tokens until the backend's
    own usage arrives (it comes last, so a stream cut short still bills what it delivered)."""
    if isinstance(ev, ContentDelta | ReasoningDelta | ToolCallDelta):
        if isinstance(ev, ToolCallDelta) or ev.text:
            if stats.first_token_at is None:
                stats.first_token_at = time.perf_counter()
            if not stats.usage_seen:
                stats.completion_tokens += 1
    elif isinstance(ev, Finish):
        stats.finish_reason = ev.reason
        if stats.first_token_at is None:
            stats.first_token_at = time.perf_counter()
    elif isinstance(ev, UsageReport):
        u = ev.usage
        stats.prompt_tokens = u.prompt_tokens
        stats.completion_tokens = u.completion_tokens
        stats.cached_tokens = u.cached_tokens
        stats.usage_seen = True


async def from_list(events: list[Event]) -> AsyncIterator[Event]:
    for ev in events:
        yield ev


class Held:
    """What admission took for a call: its limits' ticket and its budgets' hold, settled
    once when its events close (or given back whole when it never opened)."""

    __slots__ = ("_budgets", "guard", "hold", "model", "redaction", "ticket")

    def __init__(self, budgets: Budgets | None) -> None:
        self._budgets = budgets
        self.ticket: Ticket | None = None
        self.hold: Hold | None = None
        self.model: str | None = None  # the model that served it (its price)
        self.guard: Compiled | None = None  # the guard's policy for this call
        self.redaction: Redaction | None = None  # the request's placeholders

    async def settle(self, stats: CallStats | None) -> None:
        ticket, self.ticket = self.ticket, None
        hold, self.hold = self.hold, None
        try:
            if ticket is not None:
                await ticket.settle(stats.prompt_tokens + stats.completion_tokens if stats else 0)
        finally:
            if hold is not None:
                await hold.settle(self._cost(stats))

    def _cost(self, stats: CallStats | None) -> int:
        if stats is None or self._budgets is None:
            return 0
        pricing = self._budgets.pricing
        priced = self._budgets.cost(
            self.model,
            stats.prompt_tokens,
            stats.cached_tokens,
            stats.completion_tokens,
            dt.datetime.now(dt.UTC),
        )
        return 0 if priced is None else pricing.to_accounting(*priced)


class Metered:
    """The backend's events, metered into ``stats`` as they pass; ``aclose`` always reaches the
    backend's iterator (a generator here would skip it if never started)."""

    __slots__ = ("_events", "_held", "_stats")

    def __init__(
        self, stats: CallStats, events: AsyncIterator[Event], held: Held | None = None
    ) -> None:
        self._stats = stats
        self._events = events
        self._held = held  # limits and budgets held: settled with real usage on close

    def __aiter__(self) -> Metered:
        return self

    async def __anext__(self) -> Event:
        ev = await anext(self._events)
        meter(self._stats, ev)
        return ev

    async def aclose(self) -> None:
        held, self._held = self._held, None
        try:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if held is not None:
                await held.settle(self._stats)


def usage_event(
    ctx: RequestContext,
    result: ChatResult | None,
    model: str | None,
    served: str | None,
    status: int,
    code: str | None,
    stream: bool,
    budgets: Budgets | None,
    metrics: Metrics,
) -> UsageEvent:
    """A chat call's usage record: its tokens, timings, cost and who made it."""
    now = time.perf_counter()
    stats = result.call.stats if result else None
    ttft = (stats.first_token_at - ctx.started) * 1000 if stats and stats.first_token_at else None
    ev = UsageEvent(
        request_id=ctx.request_id,
        client_request_id=ctx.client_request_id,
        key_id=ctx.principal.key_id if ctx.principal else None,
        route=ctx.route,
        model=model,
        served_model=served,
        backend=_backend_of(result),
        deployment=result.deployment.id if result and not result.cache_hit else None,
        stream=int(stream),
        status=status,
        error_code=code,
        prompt_tokens=stats.prompt_tokens if stats else 0,
        completion_tokens=stats.completion_tokens if stats else 0,
        cached_tokens=stats.cached_tokens if stats else 0,
        latency_ms=(now - ctx.started) * 1000,
        ttft_ms=ttft,
        client_ip=ctx.client_ip,
        created_at=dt.datetime.now(dt.UTC),
        tenant_id=ctx.principal.tenant_id if ctx.principal else None,
        user_id=ctx.principal.user_id if ctx.principal else None,
    )
    if result is not None and budgets is not None and stats is not None:
        priced = budgets.cost(
            result.call.model,
            stats.prompt_tokens,
            stats.cached_tokens,
            stats.completion_tokens,
            ev.created_at,
        )
        if priced is not None:
            ev.cost_nanos, ev.currency = priced
    if result is not None:
        observe_tokens(metrics, ev)
    return ev


def observe_tokens(metrics: Metrics, ev: UsageEvent) -> None:
    model = ev.model or "-"
    if ev.prompt_tokens:
        metrics.child(metrics.tokens, model, "prompt").inc(ev.prompt_tokens)
    if ev.completion_tokens:
        metrics.child(metrics.tokens, model, "completion").inc(ev.completion_tokens)
    if ev.cached_tokens:
        metrics.child(metrics.tokens, model, "cached").inc(ev.cached_tokens)
    if ev.ttft_ms is not None:
        metrics.child(metrics.ttft, model).observe(ev.ttft_ms / 1000)
    if ev.cost_nanos and ev.currency:
        metrics.child(metrics.spend, model, ev.currency).inc(ev.cost_nanos / 1e9)


def _backend_of(result: ChatResult | None) -> str | None:
    if result is None:
        return None
    return "cache" if result.cache_hit else result.deployment.backend.kind
