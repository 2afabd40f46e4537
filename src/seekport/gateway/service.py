"""ChatService: route the call → meter its events → build the usage record.

Framework-free: the edge's request scope hands it a validated request and gets back a
``ChatResult`` (typed events plus the response headers); the edge encodes the events and makes
the one usage record of the request with ``usage_event`` and ``record``. The router
(``gateway/routing``) picks the deployment, retries and falls back; rate limits, guards and the
cache slot in here in later issues, as policies over the same events.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from seekport.config import AliasConfig
from seekport.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from seekport.gateway.accounting import UsageEvent, UsageRecorder
from seekport.gateway.auth import Principal
from seekport.gateway.backends.base import BackendCall, CallStats, Endpoint
from seekport.gateway.routing.router import Router
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    ReasoningDelta,
    ToolCallDelta,
    UsageReport,
)
from seekport.store.kv import Limiter
from seekport.telemetry.metrics import Metrics


@dataclass(slots=True)
class RequestContext:
    """What the edge knows about one request, for the service and its usage record."""

    request_id: str  # ours, unique; the usage record's key
    client_request_id: str | None  # X-Request-ID the client sent, if any
    route: str
    client_ip: str | None
    started: float  # time.perf_counter()
    principal: Principal | None = None
    beta: bool = False  # the request came in under /beta
    region: str | None = None  # x-seekport-region: tag-aware routing prefers it


@dataclass(slots=True)
class ChatResult:
    """An admitted call: its events (metered into ``call.stats`` as they pass) and the
    headers its response carries. Later policies (rate limits, cache) add headers here."""

    call: BackendCall
    deployment: Deployment
    events: AsyncIterator[Event]
    headers: dict[str, str] = field(default_factory=dict)
    passthrough: bool = True  # no policy changed the events: upstream bytes may go out as-is


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


SLOT_LEASE_S = 3600.0  # the longest a concurrency slot outlives a replica that died holding it


class ChatService:
    def __init__(
        self,
        table: RoutingTable,
        recorder: UsageRecorder,
        metrics: Metrics,
        aliases: list[AliasConfig] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.router = Router(table, metrics)
        self._aliases = {a.name: a for a in aliases or ()}
        self._recorder = recorder
        self._metrics = metrics
        self._limiter = limiter  # None: keys' requests per minute are not enforced

    @property
    def _groups(self) -> dict[str, Any]:
        return self.router.table.groups

    def swap(self, table: RoutingTable, aliases: list[AliasConfig]) -> None:
        """A reload: new requests route by the new table; those under way keep theirs."""
        self.router.swap(table)
        self._aliases = {a.name: a for a in aliases}

    def model_ids(self) -> list[str]:
        """Served models, then aliases: what /models lists."""
        return [*self._groups, *self._aliases]

    def served_model(self, model: str | None) -> str | None:
        """The served model a public name stands for (itself, or an alias's target); None for
        a name served nowhere."""
        if model is None:
            return None
        alias = self._aliases.get(model)
        if alias is not None:
            return alias.model
        return model if model in self._groups else None

    def deployment_for(self, model: str) -> Deployment:
        """The first deployment of the model's group (what the edge checks a request against:
        a local model's limits); raises 404 for a model served nowhere."""
        group = self._groups.get(self.served_model(model) or model)
        if not group:
            raise ModelNotFoundError(
                f"Model Not Exist: the model '{model}' does not exist; "
                "GET /v1/models lists the models served here",
                param="model",
            )
        first: Deployment = group.deployments[0]
        return first

    def ready(self) -> bool:
        return all(d.backend.ready() for d in self.router.table)

    async def open(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, object],
    ) -> ChatResult:
        """Admit the call; errors before the first event raise here. An alias becomes its
        served model here, its fixed parameters merged over the client's."""
        self.deployment_for(req.model)
        limits: dict[str, str] = {}
        if ctx.principal is not None:
            limits = await self._admit(ctx.principal, req.model)
            req, body = _capped(req, body, ctx.principal.policy.max_tokens)
        release = await self._hold_slot(ctx)
        try:
            return await self._open(ctx, endpoint, req, body, limits, release)
        except BaseException:
            if release is not None:
                await release()
            raise

    async def _open(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, object],
        limits: dict[str, str],
        release: Callable[[], Awaitable[None]] | None,
    ) -> ChatResult:
        alias = self._aliases.get(req.model)
        if alias is not None:
            req, body = _through_alias(alias, req, body)
        if isinstance(req, ChatCompletionRequest):
            req.refuse_forced_tool_choice_while_thinking()
        stream = bool(req.stream)

        def call_for(model: str) -> BackendCall:
            """A fresh call (its own stats) for each attempt; a fallback's names its model."""
            r, b = (req, body) if model == req.model else _retargeted(req, body, model)
            return BackendCall(endpoint, model, r, b, ctx.request_id, stream=stream, beta=ctx.beta)

        routed = await self.router.open(req.model, call_for, stream=stream, region=ctx.region)
        call, dep = routed.call, routed.deployment
        headers = {
            "x-request-id": ctx.client_request_id or ctx.request_id,
            "x-seekport-model": call.model,
            "x-seekport-deployment": dep.id,
        }
        if routed.attempts > 1:
            headers["x-seekport-attempts"] = str(routed.attempts)
        headers.update(limits)
        return ChatResult(call, dep, _Metered(call.stats, routed.events, release), headers)

    async def _hold_slot(self, ctx: RequestContext) -> Callable[[], Awaitable[None]] | None:
        """One of the key's ``max_concurrent`` slots for this call (429 when all are taken);
        returns what gives it back (when the answer's events are closed). The slot is a lease:
        a replica that dies holding it frees it within ``SLOT_LEASE_S``."""
        who = ctx.principal
        cap = who.policy.max_concurrent if who is not None else None
        if who is None or cap is None or self._limiter is None:
            return None
        limiter, key, token = self._limiter, f"cc:key:{who.key_id}", ctx.request_id
        if not await limiter.acquire_slot(key, token, limit=cap, ttl_s=SLOT_LEASE_S):
            raise RateLimitError(
                f"Rate limit reached: this API key may make {cap} requests at a time; retry "
                "when one has finished",
                retry_after=1,
            )

        async def release() -> None:
            await limiter.release_slot(key, token)

        return release

    async def _admit(self, who: Principal, model: str) -> dict[str, str]:
        """The key's policy for this call: the model it may call (403), its requests per
        minute (429); returns the ``x-ratelimit-*`` headers of the answer."""
        policy = who.policy
        if not policy.allows_model(model):
            raise PermissionDeniedError(
                f"this API key may not call the model '{model}' "
                f"(it may call: {', '.join(policy.models)})",
                param="model",
            )
        if policy.rpm is None or self._limiter is None:
            return {}
        d = await self._limiter.hit(f"rpm:key:{who.key_id}", limit=policy.rpm, period_s=60)
        headers = {
            "x-ratelimit-limit-requests": str(policy.rpm),
            "x-ratelimit-remaining-requests": str(d.remaining),
            "x-ratelimit-reset-requests": f"{math.ceil(d.reset_s)}s",
        }
        if not d.allowed:
            raise RateLimitError(
                f"Rate limit reached: this API key may make {policy.rpm} requests per minute; "
                f"retry in {math.ceil(d.retry_after_s)} s",
                retry_after=max(1, math.ceil(d.retry_after_s)),
                headers=headers,
            )
        return headers

    # ---- accounting: the edge's request scope makes exactly one record per request

    def usage_event(
        self,
        ctx: RequestContext,
        result: ChatResult | None,
        model: str | None,
        status: int,
        code: str | None,
        *,
        stream: bool,
    ) -> UsageEvent:
        now = time.perf_counter()
        stats = result.call.stats if result else None
        ttft = (
            (stats.first_token_at - ctx.started) * 1000 if stats and stats.first_token_at else None
        )
        ev = UsageEvent(
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            key_id=ctx.principal.key_id if ctx.principal else None,
            route=ctx.route,
            model=model,
            served_model=result.call.model if result else self.served_model(model),
            backend=result.deployment.backend.kind if result else None,
            deployment=result.deployment.id if result else None,
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
        )
        if result is not None:
            self._observe_tokens(ev)
        return ev

    def _observe_tokens(self, ev: UsageEvent) -> None:
        m, model = self._metrics, ev.model or "-"
        if ev.prompt_tokens:
            m.tokens.labels(model, "prompt").inc(ev.prompt_tokens)
        if ev.completion_tokens:
            m.tokens.labels(model, "completion").inc(ev.completion_tokens)
        if ev.cached_tokens:
            m.tokens.labels(model, "cached").inc(ev.cached_tokens)
        if ev.ttft_ms is not None:
            m.ttft.labels(model).observe(ev.ttft_ms / 1000)

    async def record(self, ev: UsageEvent) -> None:
        """Commit the record; raises OverloadedError (503) if it could not be stored."""
        await self._recorder.record(ev)

    def record_nowait(self, ev: UsageEvent) -> None:
        """For paths that cannot wait (the client is gone): commit in the background."""
        self._recorder.record_nowait(ev)


def _capped(
    req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any], cap: int | None
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The key's output cap over the client's ask (a remote upstream gets it in the body)."""
    if cap is None:
        return req, body
    if isinstance(req, ChatCompletionRequest):
        asked = req.output_limit
        fields = ["max_tokens"] + (["max_completion_tokens"] if req.max_completion_tokens else [])
    else:
        asked, fields = req.max_tokens, ["max_tokens"]
    if asked is not None and asked <= cap:
        return req, body
    update = dict.fromkeys(fields, cap)
    capped = req.model_copy(update=update)
    return capped, {**body, **update}


def _retargeted(
    req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any], model: str
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The request for a fallback model: the same, under that model's name."""
    served = req.model_copy(update={"model": model})
    if (
        isinstance(req, ChatCompletionRequest)
        and isinstance(served, ChatCompletionRequest)
        and req.output_ceiling
    ):
        served.as_ceiling()
    return served, {**body, "model": model}


def _through_alias(
    alias: AliasConfig, req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any]
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The request as its served model gets it: the alias's fixed fields over the client's
    (a remote upstream gets this body), and the model's own name."""
    merged = {**body, **alias.fixed(), "model": alias.model}
    try:
        served = type(req).model_validate(merged)
        ceiling = isinstance(req, ChatCompletionRequest) and req.output_ceiling
        if ceiling and isinstance(served, ChatCompletionRequest):
            served.as_ceiling()  # a translation's mark, kept
        return served, merged
    except ValidationError as exc:  # a client field that the alias's fixed ones contradict
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            f"Invalid parameter '{loc}' through alias '{alias.name}': {first['msg']}",
            param=loc or None,
        ) from exc


class _Metered:
    """The backend's events, metered into ``stats`` as they pass; ``aclose`` always reaches the
    backend's iterator (a generator here would skip it if never started)."""

    __slots__ = ("_events", "_release", "_stats")

    def __init__(
        self,
        stats: CallStats,
        events: AsyncIterator[Event],
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._stats = stats
        self._events = events
        self._release = release  # a concurrency slot, given back when the events are closed

    def __aiter__(self) -> _Metered:
        return self

    async def __anext__(self) -> Event:
        ev = await anext(self._events)
        meter(self._stats, ev)
        return ev

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if release is not None:
                await release()
