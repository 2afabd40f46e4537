"""The router: one request's attempts across a model group's deployments, then its fallbacks.

For a request it orders the group's deployments (the balancer), skips those whose breaker is
open or that asked to be left alone (``Retry-After``), and calls one. A failure that another
try can mend — connect errors, timeouts, 429, 500, 502, 503, 504, a stream cut or garbled before
its first content — is tried again, on another deployment when the group has one, with
full-jitter backoff when it is the same one, within ``max_retries`` and the retry budget. When
the group has nothing left, the model's fallback list takes over (``context_fallbacks`` for a
prompt too long, ``balance_fallbacks`` after a 402). Client errors (400, 401, 402, 404, 422)
are never retried.

Retries end at the first content: while another attempt is still possible, the role chunk and
keep-alives are held back (a non-stream answer is read whole), so a retry never repeats or loses
a token. A call with no other attempt possible passes everything through at once.

The router counts every call on its deployment (in flight), feeds the breaker, the TTFT average
and the metrics, and lets go of the deployment when the events are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from seekport.errors import (
    ContextLengthExceededError,
    OverloadedError,
    SeekportError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.routing.retry import RetryBudget, backoff
from seekport.gateway.routing.table import Deployment, Group, RoutingTable
from seekport.protocol.events import (
    ContentDelta,
    Event,
    KeepAlive,
    ReasoningDelta,
    RoleDelta,
)
from seekport.telemetry import tracing
from seekport.telemetry.metrics import Metrics

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
CallFor = Callable[[str], BackendCall]

# what one failed attempt means for the rest of the request
RETRY, RATE_LIMITED, CONTEXT, BALANCE, FATAL = (
    "retry",
    "rate_limited",
    "context",
    "balance",
    "fatal",
)


def classify(exc: SeekportError, call: BackendCall) -> str:
    """Why an attempt failed, as far as routing cares."""
    if isinstance(exc, ContextLengthExceededError) or _says_context_length(exc):
        return CONTEXT
    if isinstance(exc, UpstreamStatusError):
        if exc.status_code == 402:
            return BALANCE
        if exc.status_code == 429:
            return RATE_LIMITED
        return RETRY if exc.status_code in RETRY_STATUS else FATAL
    if isinstance(exc, UpstreamTimeoutError | OverloadedError):
        return RETRY  # also a local engine's full queue or restart: another deployment may serve
    if isinstance(exc, UpstreamError):
        # connect errors, 5xx, broken or malformed answers; not the upstream refusing our
        # credentials (401/403): another try gets the same answer
        return FATAL if call.stats.upstream_status in (401, 403) else RETRY
    return FATAL


def _says_context_length(exc: SeekportError) -> bool:
    if exc.status_code != 400:
        return False
    text = f"{exc.code or ''} {exc.message}".lower()
    return "context_length" in text or "context length" in text or "maximum context" in text


def is_content(ev: Event) -> bool:
    """An event the client would see as part of the answer (not the role chunk, not a
    keep-alive, not an empty delta)."""
    if isinstance(ev, RoleDelta | KeepAlive):
        return False
    if isinstance(ev, ContentDelta | ReasoningDelta):
        return bool(ev.text)
    return True


@dataclass(slots=True)
class Routed:
    """The attempt that answers: its deployment, its call and its events (held ones first)."""

    deployment: Deployment
    call: BackendCall
    events: AsyncIterator[Event]
    attempts: int = 1
    fallback_from: str | None = None


@dataclass(slots=True)
class _Plan:
    """One request's path through the table: the models to try in order, retries left."""

    table: RoutingTable
    origin: str  # the model asked for (after its alias): whose fallback lists apply
    chain: list[str]
    retries_left: int
    tried: set[int] = field(default_factory=set)  # id() of deployments tried in this group
    in_group: int = 0  # attempts on the current model's group
    attempts: int = 0  # attempts in all
    last: SeekportError | None = None
    last_kind: str | None = None
    switched: set[str] = field(default_factory=set)  # fallback lists already taken

    def more_possible(self, group: Group, dep: Deployment, now: float) -> bool:
        if len(self.chain) > 1:
            return True
        if "fallbacks" not in self.switched and self.table.policy.fallbacks.get(self.origin):
            return True
        if self.retries_left <= 0:
            return False
        return dep.retry_same or any(
            d is not dep and d.weight > 0 and d.skip_until <= now and d.healthy()
            for d in group.deployments
        )


class Router:
    def __init__(
        self,
        table: RoutingTable,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.table = table
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.budget = RetryBudget(table.policy.retry_budget)

    def swap(self, table: RoutingTable) -> None:
        """A reload's new table: requests under way keep theirs."""
        self.table = table
        self.budget.ratio = table.policy.retry_budget

    def group(self, model: str) -> Group | None:
        return self.table.groups.get(model)

    async def open(
        self, model: str, call_for: CallFor, *, stream: bool, region: str | None = None
    ) -> Routed:
        """The first attempt that gets going (streams: reaches its first content while another
        attempt is possible); raises the last failure, or a 503 when nothing could be tried."""
        table = self.table
        plan = _Plan(table, model, [model], table.policy.max_retries)
        self.budget.request_started()
        try:
            routed = await self._route(plan, call_for, stream, region)
        except BaseException:
            self.budget.request_ended()
            raise
        routed.attempts = plan.attempts
        if routed.call.model != model:
            routed.fallback_from = model
        return routed

    async def _route(
        self, plan: _Plan, call_for: CallFor, stream: bool, region: str | None
    ) -> Routed:
        while plan.chain:
            model = plan.chain[0]
            group = plan.table.groups[model]
            dep = await self._pick(plan, group, region)
            if dep is None:
                self._next_model(plan)
                continue
            if plan.attempts > 0 and not self.budget.try_acquire():
                break  # retries are over budget: the last failure stands
            retry = plan.attempts > 0
            plan.attempts += 1
            plan.in_group += 1
            plan.tried.add(id(dep))
            hold = plan.more_possible(group, dep, self._clock())
            call = call_for(model)
            try:
                return await self._attempt(dep, call, stream=stream, hold=hold)
            except SeekportError as exc:
                self._failed(plan, dep, call, exc)
            finally:
                if retry:
                    self.budget.release()
        if plan.last is not None:
            raise plan.last
        raise self._all_down(plan)

    async def _pick(self, plan: _Plan, group: Group, region: str | None) -> Deployment | None:
        """The next deployment to try in ``group``, waiting out a short ``Retry-After`` or a
        backoff when the only choice is one just tried; None when the group has nothing left."""
        policy = plan.table.policy
        if plan.in_group > 0:
            if plan.last_kind in (FATAL, CONTEXT):
                return None
            if plan.last_kind != BALANCE:  # a 402 moves on to another account for free
                if plan.retries_left <= 0:
                    return None
                plan.retries_left -= 1
        now = self._clock()
        live = [d for d in group.deployments if d.weight > 0]
        fresh = [d for d in live if id(d) not in plan.tried and d.skip_until <= now]
        pool = fresh or [d for d in live if d.retry_same and plan.last_kind != BALANCE]
        if not pool:
            return None
        if not fresh and plan.in_group > 0:  # the same one again: back off or wait it out
            wait = max(
                min(d.skip_until for d in pool) - now,
                backoff(plan.in_group - 1, policy.backoff_s, policy.max_retry_wait_s),
            )
            if wait > policy.max_retry_wait_s:
                return None
            if wait > 0:
                await self._sleep(wait)  # at least until the earliest skip ends
            pool = [d for d in pool if d.skip_until <= now + wait]
        for cand in group.balancer.order(group.candidates(pool), region):
            dep = group.deployments[cand.index]
            if dep.allows():
                return dep
        return None

    def _next_model(self, plan: _Plan) -> None:
        """The group is done: on to the next model of the chain; when the chain runs out, the
        fallback list that the last failure calls for (each list once per request)."""
        done = plan.chain.pop(0)
        plan.tried.clear()
        plan.in_group = 0
        plan.retries_left = plan.table.policy.max_retries
        if not plan.chain and plan.last_kind != FATAL:
            policy = plan.table.policy
            section, lists = "fallbacks", policy.fallbacks
            if plan.last_kind == CONTEXT:
                section, lists = "context_fallbacks", policy.context_fallbacks
            elif plan.last_kind == BALANCE and plan.origin in policy.balance_fallbacks:
                section, lists = "balance_fallbacks", policy.balance_fallbacks
            if section not in plan.switched:
                plan.switched.add(section)
                targets = lists.get(plan.origin, [])
                plan.chain.extend(t for t in targets if t in plan.table.groups and t != done)
        if plan.chain:
            self._metrics.fallbacks.labels(plan.origin, plan.chain[0]).inc()

    def _failed(self, plan: _Plan, dep: Deployment, call: BackendCall, exc: SeekportError) -> None:
        kind = classify(exc, call)
        plan.last, plan.last_kind = exc, kind
        now = self._clock()
        outcome = kind if kind != RETRY else type(exc).__name__.removesuffix("Error").lower()
        self._metrics.child(self._metrics.attempts, dep.model, dep.id, outcome).inc()
        if exc.retry_after and kind in (RETRY, RATE_LIMITED) and dep.retry_same:
            # an upstream's Retry-After; the local engine's is advice to clients, and its
            # readiness says when it serves again
            dep.skip_until = max(dep.skip_until, now + exc.retry_after)
        if kind == RETRY and dep.breaker is not None:
            others = any(d is not dep and d.healthy() for d in self._siblings(plan, dep))
            dep.breaker.record_failure(others_healthy=others)
            self._observe_breaker(dep)
        elif kind == BALANCE and dep.breaker is not None:
            dep.breaker.trip(plan.table.policy.breaker.max_cooldown_s)
            self._observe_breaker(dep)
        elif dep.breaker is not None:
            dep.breaker.release_probe()
        if kind in (CONTEXT, FATAL):
            # the rest of the chain is no answer: a prompt too long takes the context list,
            # a client error ends the request
            plan.chain[1:] = []

    def _siblings(self, plan: _Plan, dep: Deployment) -> list[Deployment]:
        group = plan.table.groups.get(dep.model)
        return group.deployments if group else []

    def _all_down(self, plan: _Plan) -> OverloadedError:
        now = self._clock()
        waits = [
            max(d.skip_until - now, _retry_in(d))
            for g in plan.table.groups.values()
            for d in g.deployments
        ]
        wait = min((w for w in waits if w > 0), default=1.0)
        return OverloadedError(
            "every deployment that could serve this model is unavailable now (circuit open "
            "or rate limited); retry later",
            retry_after=max(1.0, round(wait)),
        )

    def _observe_breaker(self, dep: Deployment) -> None:
        if dep.breaker is not None:
            self._metrics.breaker_state.labels(dep.model, dep.id).set(dep.breaker.level())

    # ---- one attempt

    async def _attempt(
        self, dep: Deployment, call: BackendCall, *, stream: bool, hold: bool
    ) -> Routed:
        started = self._clock()
        dep.in_flight += 1
        try:
            with _attempt_span(dep, call):
                if not hold:
                    events = await dep.backend.generate(call)
                    held: list[Event] = []
                elif stream:
                    held, events = await self._until_content(dep, call)
                else:
                    held, events = await self._whole(dep, call)
        except BaseException:
            dep.in_flight -= 1
            raise
        self._metrics.child(self._metrics.attempts, dep.model, dep.id, "ok").inc()
        tracked = _Tracked(self, dep, call, held, events, started)
        return Routed(dep, call, tracked)

    async def _until_content(
        self, dep: Deployment, call: BackendCall
    ) -> tuple[list[Event], AsyncIterator[Event]]:
        """Start the call and read up to its first content (held events returned with the
        rest), within the deployment's first-token deadline."""
        held: list[Event] = []
        events: AsyncIterator[Event] | None = None
        try:
            async with asyncio.timeout(dep.first_token_timeout_s):
                events = await dep.backend.generate(call)
                async for ev in events:
                    held.append(ev)
                    if is_content(ev):
                        break
        except TimeoutError as exc:
            await _aclose(events)
            raise UpstreamTimeoutError(
                f"deployment '{dep.id}' sent no first token within {dep.first_token_timeout_s:g} s"
            ) from exc
        except BaseException:
            await _aclose(events)
            raise
        assert events is not None
        return held, events

    async def _whole(
        self, dep: Deployment, call: BackendCall
    ) -> tuple[list[Event], AsyncIterator[Event]]:
        """A non-stream answer, read whole: a failure anywhere in it can still be retried."""
        events = await dep.backend.generate(call)
        held: list[Event] = []
        try:
            async for ev in events:
                held.append(ev)
        finally:
            await _aclose(events)
        return held, _nothing()

    # ---- what the answer's events report back

    def succeeded(self, dep: Deployment, ttft_s: float) -> None:
        dep.ttft.observe(ttft_s)
        if dep.breaker is not None:
            dep.breaker.record_success()
            self._observe_breaker(dep)

    def broke(self, dep: Deployment, call: BackendCall, exc: SeekportError) -> None:
        """The answer failed after it started (no retry is possible any more)."""
        if dep.breaker is not None and classify(exc, call) == RETRY:
            group = self.table.groups.get(dep.model)
            others = any(d is not dep and d.healthy() for d in (group.deployments if group else ()))
            dep.breaker.record_failure(others_healthy=others)
            self._observe_breaker(dep)

    def ended(self, dep: Deployment, decided: bool) -> None:
        dep.in_flight -= 1
        self.budget.request_ended()
        if not decided and dep.breaker is not None:
            dep.breaker.release_probe()

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /admin/routing`` shows."""
        now = self._clock()
        policy = self.table.policy
        return {
            "strategy": policy.strategy,
            "max_retries": policy.max_retries,
            "retry_budget": self.budget.snapshot(),
            "groups": {
                name: [d.snapshot(now) for d in group.deployments]
                for name, group in self.table.groups.items()
            },
            "fallbacks": policy.fallbacks,
            "context_fallbacks": policy.context_fallbacks,
            "balance_fallbacks": policy.balance_fallbacks,
        }


def _retry_in(dep: Deployment) -> float:
    if dep.breaker is None:
        return 0.0
    value = dep.breaker.snapshot().get("retry_in_s", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


async def _nothing() -> AsyncIterator[Event]:
    return
    yield  # an async generator with no events


async def _aclose(events: AsyncIterator[Event] | None) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class _Tracked:
    """The answering attempt's events: the held ones, then the rest. Reports the first content
    (TTFT, breaker success), a failure after the start (breaker), and the end (in flight)."""

    __slots__ = ("_call", "_closed", "_decided", "_dep", "_events", "_held", "_router", "_started")

    def __init__(
        self,
        router: Router,
        dep: Deployment,
        call: BackendCall,
        held: list[Event],
        events: AsyncIterator[Event],
        started: float,
    ) -> None:
        self._router = router
        self._dep = dep
        self._call = call
        self._held = held
        self._events = events
        self._started = started
        self._decided = False
        self._closed = False
        for ev in held:
            self._see(ev)

    def _see(self, ev: Event) -> None:
        if not self._decided and is_content(ev):
            self._decided = True
            self._router.succeeded(self._dep, self._router._clock() - self._started)

    def __aiter__(self) -> _Tracked:
        return self

    async def __anext__(self) -> Event:
        if self._held:
            return self._held.pop(0)
        try:
            ev = await anext(self._events)
        except SeekportError as exc:
            self._decided = True
            self._router.broke(self._dep, self._call, exc)
            raise
        self._see(ev)
        return ev

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await _aclose(self._events)
        finally:
            self._router.ended(self._dep, self._decided)


def _attempt_span(dep: Deployment, call: BackendCall) -> contextlib.AbstractContextManager[Any]:
    """One attempt's CLIENT span (GenAI semantic conventions), when tracing is on: from the
    call to its answer's start (a non-stream answer: to its end)."""
    if not tracing.enabled():
        return contextlib.nullcontext()
    op = tracing.OPERATIONS.get(call.endpoint, call.endpoint)
    attributes = {
        "gen_ai.provider.name": dep.backend.kind,
        "seekport.deployment": dep.id,
        "seekport.stream": call.stream,
        **tracing.request_attributes(call.endpoint, call.model, call.body),
    }
    return tracing.span(f"{op} {call.model}", client=True, **attributes)
