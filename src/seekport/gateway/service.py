"""ChatService: route the call → meter its events → build the usage record.

Framework-free: the edge's request scope hands it a validated request and gets back a
``ChatResult`` (typed events plus the response headers); the edge encodes the events and makes
the one usage record of the request with ``usage_event`` and ``record``. In order: the key's
terms and the guard on the request, admission (``limits``) and budget reservations, an alias,
the response cache, the router (``gateway/routing``: deployment, retries, fallbacks), then the
answer's events through the cache's recording, the guard, the content log and ``metering``.
Request shaping lives in ``shaping``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from seekport.config import AliasConfig
from seekport.config.cache import CacheConfig
from seekport.config.content_log import ContentLogConfig
from seekport.config.guard import GuardConfig
from seekport.config.pricing import PricingConfig
from seekport.errors import ModelNotFoundError, PermissionDeniedError
from seekport.gateway.accounting import UsageEvent, UsageRecorder
from seekport.gateway.auth import Principal
from seekport.gateway.backends.base import BackendCall, Endpoint
from seekport.gateway.budgets import Budgets
from seekport.gateway.cache import ResponseCacher
from seekport.gateway.content_log import ContentLogger
from seekport.gateway.grounding import ground, wants_grounding
from seekport.gateway.guard.policy import Guard
from seekport.gateway.hit_memo import Entry, HitMemo, Notes, answer_of
from seekport.gateway.knowledge import KnowledgeDesk
from seekport.gateway.limits import Admission, Terms
from seekport.gateway.metering import Held, Metered, from_list, usage_event
from seekport.gateway.routing.router import Router
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.gateway.semantic_cache import Lookup
from seekport.gateway.shaping import (
    budgeted,
    capped,
    estimate,
    guarded,
    output_limit,
    retargeted,
    revalidated,
    scopes_of,
    through_alias,
)
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.protocol.events import Event
from seekport.protocol.keys import Limits
from seekport.store.kv import Limiter
from seekport.telemetry import tracing
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
    cache_refresh: bool = False  # Cache-Control: no-cache: skip the cached answer, store anew
    citations: list[dict[str, Any]] | None = None  # a grounded answer's sources (grounding.py)


@dataclass(slots=True)
class ChatResult:
    """An admitted call: its events (metered into ``call.stats`` as they pass) and the
    headers its response carries. Later policies (rate limits, cache) add headers here."""

    call: BackendCall
    deployment: Deployment
    events: AsyncIterator[Event]
    headers: dict[str, str] = field(default_factory=dict)
    passthrough: bool = True  # no policy changed the events: upstream bytes may go out as-is
    cache_hit: bool = False  # replayed from the response cache: no backend was called


class ChatService:
    def __init__(
        self,
        table: RoutingTable,
        recorder: UsageRecorder,
        metrics: Metrics,
        aliases: list[AliasConfig] | None = None,
        limiter: Limiter | None = None,
        budgets: Budgets | None = None,
        model_limits: dict[str, Limits] | None = None,
        cache: ResponseCacher | None = None,
        guard: Guard | None = None,
        content: ContentLogger | None = None,
        knowledge: KnowledgeDesk | None = None,
    ) -> None:
        self.router = Router(table, metrics)
        self.knowledge = knowledge  # None: knowledge_bases in a body is a 400
        self._aliases = {a.name: a for a in aliases or ()}
        self._recorder = recorder
        self._metrics = metrics
        self._admission = Admission(limiter)  # no limiter: nothing is limited
        self._budgets = budgets  # None: no budgets, no costs
        self._model_limits = model_limits or {}
        self._cache = cache  # None: no response cache
        self._guard = guard  # None: no guard
        self._content = content  # None: no content log
        self._memo = HitMemo() if cache is not None else None  # cache hits the short way
        self._generation = 0  # of the configuration: a reload makes memo entries stale

    @property
    def _groups(self) -> dict[str, Any]:
        return self.router.table.groups

    def swap(
        self,
        table: RoutingTable,
        aliases: list[AliasConfig],
        pricing: PricingConfig | None = None,
        model_limits: dict[str, Limits] | None = None,
        cache: CacheConfig | None = None,
        guard: GuardConfig | None = None,
        content_log: ContentLogConfig | None = None,
    ) -> None:
        """A reload: new requests route by the new table (and are priced by the new prices);
        those under way keep theirs."""
        self._generation += 1
        if self._memo is not None:
            self._memo.clear()
        self.router.swap(table)
        self._aliases = {a.name: a for a in aliases}
        if pricing is not None and self._budgets is not None:
            self._budgets.pricing = pricing
        if model_limits is not None:
            self._model_limits = model_limits
        if cache is not None and self._cache is not None:
            self._cache.config = cache
        if guard is not None:
            self._guard = Guard(guard, self._metrics)
        if content_log is not None and self._content is not None:
            self._content.config = content_log

    def model_ids(self) -> list[str]:
        """Served models, then aliases: what /models lists."""
        return [*self._groups, *self._aliases]

    def versions(self) -> dict[str, str]:
        """The registry version (NAME@VERSION) each model served from the registry runs
        (``BASE@V+ADAPTER@V``, or ``ADAPTER@V`` over a base from elsewhere, with an adapter)."""
        found: dict[str, str] = {}
        for d in self.router.table:
            version = getattr(d.backend, "version", None)
            if isinstance(version, str):
                found[d.model] = version
        return found

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
        raw: bytes | None = None,
    ) -> ChatResult:
        """Admit the call; errors before the first event raise here. An alias becomes its
        served model here, its fixed parameters merged over the client's. ``raw``: the
        request's bytes (an exact cache hit then leaves a memo entry for them)."""
        self.deployment_for(req.model)
        held = Held(self._budgets)
        grounded = isinstance(req, ChatCompletionRequest) and wants_grounding(body)
        notes: Notes | None = None
        if ctx.principal is None:
            if grounded:
                body, ctx.citations = await ground(self.knowledge, None, body)
        else:
            who = ctx.principal
            self._admit_model(who, req.model)
            req, body = capped(req, body, who.policy.max_tokens)
            if raw is not None and self._memo is not None and not grounded:
                notes = Notes(raw, self._generation, (req, body))
            with tracing.span("seekport.limits"):
                held.ticket = await self._admission.admit(
                    self._scopes(who, req.model), ctx.request_id, lambda: estimate(req, body)
                )
            try:
                if grounded:  # after admission: retrieval is work a limit must bound
                    body, ctx.citations = await ground(self.knowledge, who, body)
                    req = revalidated(req, body)  # type: ignore[arg-type]
                if self._guard is not None:  # it sees the sources too: a document's data
                    model = self.served_model(req.model) or req.model
                    kinds = notes.redactions if notes is not None else None
                    req, body, held.guard, held.redaction = guarded(
                        self._guard, who, model, req, body, kinds
                    )
                req, body = await self._reserve(ctx, who, req, body, held, notes)
            except BaseException:
                await held.settle(None)
                raise
        try:
            return await self._open(ctx, endpoint, req, body, held, notes)
        except BaseException:
            await held.settle(None)  # nothing was spent: reservations go back whole
            raise

    def _logged(
        self,
        ctx: RequestContext,
        model: str,
        body: dict[str, Any],
        events: AsyncIterator[Event],
    ) -> AsyncIterator[Event]:
        """The content log's transcript of the answer, when the caller's tenant keeps one."""
        who = ctx.principal
        if self._content is None or who is None:
            return events
        mode = self._content.mode_for(who.tenant_id)
        if mode == "off":
            return events
        return self._content.transcribe(
            events,
            mode=mode,
            request_id=ctx.request_id,
            tenant_id=who.tenant_id,
            user_id=who.user_id,
            key_id=who.key_id,
            model=model,
            body=body,
        )

    def _guarded(self, held: Held, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        if self._guard is None or held.guard is None or not held.guard.guards_output:
            return events
        return self._guard.answer(held.guard, events, held.redaction)

    async def _reserve(
        self,
        ctx: RequestContext,
        who: Principal,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, Any],
        held: Held,
        notes: Notes | None = None,
    ) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
        """Reserve the call's most possible cost on the budgets over it (402 when one has
        not enough left; ``shaping.budgeted``)."""
        model = self.served_model(req.model)
        if self._budgets is None or model is None:
            return req, body
        policy = self.router.table.policy
        models = [model]  # and the models a fallback may send it to: the dearest is reserved
        for lists in (policy.fallbacks, policy.context_fallbacks, policy.balance_fallbacks):
            models += lists.get(model, [])
        req, body, reserve = budgeted(self._budgets, who, models, req, body)
        if reserve is not None:
            if notes is not None:
                notes.reserve = reserve
            held.hold = await self._budgets.reserve(who, ctx.request_id, *reserve)
        return req, body

    async def _open(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, object],
        held: Held,
        notes: Notes | None = None,
    ) -> ChatResult:
        alias = self._aliases.get(req.model)
        if alias is not None:
            req, body = through_alias(alias, req, body)
        if isinstance(req, ChatCompletionRequest):
            req.refuse_forced_tool_choice_while_thinking()
        stream = bool(req.stream)

        def call_for(model: str) -> BackendCall:
            """A fresh call (its own stats) for each attempt; a fallback's names its model."""
            r, b = (req, body) if model == req.model else retargeted(req, body, model)
            return BackendCall(endpoint, model, r, b, ctx.request_id, stream=stream, beta=ctx.beta)

        key = self._cache_key(ctx, endpoint, req, body)
        lookup: Lookup | None = None
        if key is not None and self._cache is not None and not ctx.cache_refresh:
            similarity: float | None = None
            with tracing.span("seekport.cache"):
                cached = await self._cache.replay(key, req.model)
                if cached is None:
                    lookup, cached = await self._semantic(ctx, endpoint, req, body)
                    similarity = lookup.similarity if lookup is not None and cached else None
            if cached is not None:
                if similarity is None and notes is not None and self._memo is not None:
                    assert ctx.principal is not None
                    kind = self._kind(ctx, endpoint)
                    self._memo.remember(
                        ctx.principal, kind, notes, req, body, key, held.guard, held.redaction
                    )
                replay = self._guarded(held, from_list(cached))
                replay = self._logged(ctx, req.model, body, replay)
                return self._replayed(ctx, call_for(req.model), replay, held, similarity)
        with tracing.span("seekport.route"):
            routed = await self.router.open(req.model, call_for, stream=stream, region=ctx.region)
        call, dep = routed.call, routed.deployment
        headers = {
            "x-request-id": ctx.client_request_id or ctx.request_id,
            "x-seekport-model": call.model,
            "x-seekport-deployment": dep.id,
        }
        if routed.attempts > 1:
            headers["x-seekport-attempts"] = str(routed.attempts)
        if held.ticket is not None:
            headers.update(held.ticket.headers)
        held.model = call.model
        events: AsyncIterator[Event] = routed.events
        if key is not None and self._cache is not None:
            headers["x-cache"] = "miss"
            if call.model == req.model:  # a fallback's answer is not the asked model's
                events = self._cache.recording(key, events, lookup)
        guarded = self._guarded(held, events)  # after the cache: it keeps the model's words
        logged = self._logged(ctx, req.model, body, guarded)
        return ChatResult(
            call,
            dep,
            Metered(call.stats, logged, held),
            headers,
            passthrough=guarded is events,
        )

    def recalled(self, ctx: RequestContext, endpoint: Endpoint, raw: bytes) -> Entry | None:
        """The memo's entry for these bytes from this caller (``hit_memo``), if it has one."""
        who, memo = ctx.principal, self._memo
        if who is None or memo is None or ctx.cache_refresh:
            return None
        return memo.get(who, self._kind(ctx, endpoint), raw, self._generation)

    async def open_hit(
        self, ctx: RequestContext, endpoint: Endpoint, entry: Entry
    ) -> ChatResult | None:
        """A cache hit the short way: the recalled entry's answer, while it is still stored.
        None: take the long way (``open``)."""
        who, cache = ctx.principal, self._cache
        assert who is not None and cache is not None
        with tracing.span("seekport.cache", short=True):
            stored = await cache.stored(entry.key)
        if stored is None:
            return None
        req, body = entry.req, entry.body
        held = Held(self._budgets)
        with tracing.span("seekport.limits"):
            held.ticket = await self._admission.admit(
                self._scopes(who, req.model), ctx.request_id, lambda: entry.estimate
            )
        try:
            if entry.reserve is not None and self._budgets is not None:
                held.hold = await self._budgets.reserve(who, ctx.request_id, *entry.reserve)
            answer = await answer_of(entry, stored, cache, self._guard)
        except BaseException:
            await held.settle(None)
            raise
        if answer is None:
            await held.settle(None)
            return None
        held.guard, held.redaction = entry.guard, entry.redaction
        call = BackendCall(
            endpoint, req.model, req, body, ctx.request_id, stream=bool(req.stream), beta=ctx.beta
        )
        events = self._logged(ctx, req.model, body, from_list(answer))
        return self._replayed(ctx, call, events, held)

    async def _semantic(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, Any],
    ) -> tuple[Lookup | None, list[Event] | None]:
        """After an exact miss: the answer to the nearest earlier question of the same
        context, when the semantic cache is on for this model."""
        who = ctx.principal
        if self._cache is None or who is None:
            return None, None
        index = self._cache.semantic_for(req.model, who.policy.semantic_cache)
        if index is None:
            return None, None
        lookup = await index.lookup(
            who.tenant_id, req.model, self._kind(ctx, endpoint), body, output_limit(req)
        )
        if lookup is None or lookup.key is None:
            return lookup, None
        return lookup, await self._cache.replay(lookup.key, req.model, semantic=True)

    @staticmethod
    def _kind(ctx: RequestContext, endpoint: Endpoint) -> str:
        return f"{endpoint}{'+beta' if ctx.beta else ''}"

    def _cache_key(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, Any],
    ) -> str | None:
        who = ctx.principal
        if self._cache is None or who is None:
            return None
        kind, limit = self._kind(ctx, endpoint), output_limit(req)
        return self._cache.key_for(who.tenant_id, req.model, kind, body, limit, who.policy.cache)

    def _replayed(
        self,
        ctx: RequestContext,
        call: BackendCall,
        events: AsyncIterator[Event],
        held: Held,
        similarity: float | None = None,
    ) -> ChatResult:
        """A cache hit: the stored events, through the same metering and settlement."""
        headers = {
            "x-request-id": ctx.client_request_id or ctx.request_id,
            "x-seekport-model": call.model,
            "x-cache": "hit",
        }
        if similarity is not None:  # the semantic cache's: how alike the two questions were
            headers["x-cache-similarity"] = f"{similarity:.4f}"
        if held.ticket is not None:
            headers.update(held.ticket.headers)
        held.model = call.model
        dep = self.deployment_for(call.model)
        replay = Metered(call.stats, events, held)
        return ChatResult(call, dep, replay, headers, passthrough=False, cache_hit=True)

    def _scopes(self, who: Principal, model: str) -> list[Terms]:
        served = self.served_model(model)
        return scopes_of(who, served, self._model_limits.get(served or ""))

    def _admit_model(self, who: Principal, model: str) -> None:
        """403 for a model the key may not call."""
        if not who.policy.allows_model(model):
            raise PermissionDeniedError(
                f"this API key may not call the model '{model}' "
                f"(it may call: {', '.join(who.policy.models)})",
                param="model",
            )

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
        served = result.call.model if result else self.served_model(model)
        return usage_event(
            ctx, result, model, served, status, code, stream, self._budgets, self._metrics
        )

    async def record(self, ev: UsageEvent) -> None:
        """Commit the record; raises OverloadedError (503) if it could not be stored."""
        await self._recorder.record(ev)

    def record_nowait(self, ev: UsageEvent) -> None:
        """For paths that cannot wait (the client is gone): commit in the background."""
        self._recorder.record_nowait(ev)
