"""EmbeddingService: ``/embeddings`` through the same terms as a chat call.

An embedding model is a ``models[]`` entry with ``kind: embedding``; entries sharing a name
are its deployments, taken in turn. A call passes the key's model list (403), admission
(requests and tokens per minute, calls at once, per key, user, tenant and model) and, when the
model is priced, the budgets (the inputs' bytes as an upper bound of their tokens), then one
backend embeds every input. The edge makes the one usage record from ``usage_event``
(through the same group-committing recorder as chat calls).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from seekport.errors import InvalidRequestError, ModelNotFoundError, PermissionDeniedError
from seekport.gateway.accounting import UsageEvent
from seekport.gateway.budgets import Budgets, Hold, budget_scopes
from seekport.gateway.limits import Admission, Terms, Ticket
from seekport.gateway.metering import observe_tokens
from seekport.gateway.service import RequestContext
from seekport.gateway.shaping import scopes_of
from seekport.protocol.embeddings import EmbeddingRequest, InputType
from seekport.protocol.keys import Limits
from seekport.store.kv import Limiter
from seekport.telemetry.metrics import Metrics

Vectors = npt.NDArray[np.float32]


@dataclass(slots=True)
class EmbeddingCall:
    model: str  # the public model id
    texts: list[str] | None  # the inputs as texts, or None when they are token arrays
    tokens: list[list[int]] | None
    input_type: InputType
    body: dict[str, Any]  # the client's body (a remote upstream gets it, its model renamed)
    request_id: str


@dataclass(slots=True)
class Embedded:
    vectors: Vectors  # [inputs, dim], float32, in the order of the inputs
    prompt_tokens: int


class EmbeddingBackend(Protocol):
    """One deployment of an embedding model (the local embedder or a remote upstream)."""

    model: str
    kind: str
    dim: int | None  # None: known once the upstream answered

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def ready(self) -> bool: ...

    async def embed(self, call: EmbeddingCall) -> Embedded: ...


@dataclass(slots=True)
class EmbeddingOutcome:
    """A call that ran: its vectors and the deployment that made them."""

    embedded: Embedded
    backend: EmbeddingBackend
    headers: dict[str, str] = field(default_factory=dict)


class EmbeddingService:
    def __init__(
        self,
        backends: dict[str, list[EmbeddingBackend]],
        metrics: Metrics,
        limiter: Limiter | None = None,
        budgets: Budgets | None = None,
        model_limits: dict[str, Limits] | None = None,
    ) -> None:
        self._backends = backends
        self._turns = {name: itertools.cycle(deps) for name, deps in backends.items()}
        self._metrics = metrics
        self._admission = Admission(limiter)
        self._budgets = budgets
        self._model_limits = model_limits or {}

    def model_ids(self) -> list[str]:
        return list(self._backends)

    def backends(self) -> list[EmbeddingBackend]:
        return [b for deps in self._backends.values() for b in deps]

    def ready(self) -> bool:
        return all(b.ready() for b in self.backends())

    def backend_for(self, model: str, chat_models: Sequence[str] = ()) -> EmbeddingBackend:
        """The next deployment of ``model``; 404 for a model served nowhere, 400 for a chat
        model (it has no embeddings)."""
        turn = self._turns.get(model)
        if turn is None:
            if model in chat_models:
                raise InvalidRequestError(
                    f"the model '{model}' is a chat model; embeddings come from an embedding "
                    f"model ({', '.join(self._backends) or 'none is configured'})",
                    param="model",
                    code="model_not_embedding",
                )
            raise ModelNotFoundError(
                f"the model '{model}' does not exist; GET /v1/models lists the models served here",
                param="model",
            )
        backend: EmbeddingBackend = next(turn)
        return backend

    async def embed(
        self,
        ctx: RequestContext,
        req: EmbeddingRequest,
        body: dict[str, Any],
        backend: EmbeddingBackend,
    ) -> EmbeddingOutcome:
        """Admit the call, embed every input, settle what admission held."""
        texts = req.texts()
        call = EmbeddingCall(
            model=req.model,
            texts=texts,
            tokens=None if texts is not None else _token_arrays(req),
            input_type=req.kind,
            body=body,
            request_id=ctx.request_id,
        )
        size = _input_bytes(call)
        ticket: Ticket | None = None
        hold: Hold | None = None
        who = ctx.principal
        if who is not None:
            if not who.policy.allows_model(req.model):
                raise PermissionDeniedError(
                    f"this API key may not call the model '{req.model}' "
                    f"(it may call: {', '.join(who.policy.models)})",
                    param="model",
                )
            scopes = scopes_of(who)
            lim = self._model_limits.get(req.model)
            if lim is not None:
                scopes.append(
                    Terms(
                        f"model:{req.model}",
                        f"the model '{req.model}'",
                        lim.rpm,
                        lim.tpm,
                        lim.max_concurrent,
                    )
                )
            ticket = await self._admission.admit(
                scopes, ctx.request_id, lambda: math.ceil(size / 4)
            )
            if self._budgets is not None and budget_scopes(who):
                try:
                    hold = await self._budgets.reserve(who, ctx.request_id, [req.model], size, 0)
                except BaseException:
                    await ticket.settle(0)
                    raise
        used = 0
        try:
            embedded = await backend.embed(call)
            used = embedded.prompt_tokens
        finally:
            if ticket is not None:
                await ticket.settle(used)
            if hold is not None:
                await hold.settle(self._cost_accounting(req.model, used))
        headers = {"x-seekport-model": req.model}
        if ticket is not None:
            headers.update(ticket.headers)
        return EmbeddingOutcome(embedded, backend, headers)

    def _cost(self, model: str | None, tokens: int) -> tuple[int, str] | None:
        if self._budgets is None:
            return None
        return self._budgets.cost(model, tokens, 0, 0, dt.datetime.now(dt.UTC))

    def _cost_accounting(self, model: str, tokens: int) -> int:
        priced = self._cost(model, tokens)
        if priced is None or self._budgets is None:
            return 0
        return self._budgets.pricing.to_accounting(*priced)

    def usage_event(
        self,
        ctx: RequestContext,
        outcome: EmbeddingOutcome | None,
        model: str | None,
        status: int,
        code: str | None,
    ) -> UsageEvent:
        tokens = outcome.embedded.prompt_tokens if outcome is not None else 0
        ev = UsageEvent(
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            key_id=ctx.principal.key_id if ctx.principal else None,
            route=ctx.route,
            model=model,
            served_model=model if model in self._backends else None,
            backend=outcome.backend.kind if outcome is not None else None,
            stream=0,
            status=status,
            error_code=code,
            prompt_tokens=tokens,
            completion_tokens=0,
            cached_tokens=0,
            latency_ms=(time.perf_counter() - ctx.started) * 1000,
            ttft_ms=None,
            client_ip=ctx.client_ip,
            created_at=dt.datetime.now(dt.UTC),
            tenant_id=ctx.principal.tenant_id if ctx.principal else None,
            user_id=ctx.principal.user_id if ctx.principal else None,
        )
        if outcome is not None:
            priced = self._cost(model, tokens)
            if priced is not None:
                ev.cost_nanos, ev.currency = priced
            observe_tokens(self._metrics, ev)
        return ev


def _token_arrays(req: EmbeddingRequest) -> list[list[int]]:
    inp = req.input
    if isinstance(inp, list) and inp and isinstance(inp[0], int):
        return [[x for x in inp if isinstance(x, int)]]
    return [x for x in inp if isinstance(x, list)] if isinstance(inp, list) else []


def _input_bytes(call: EmbeddingCall) -> int:
    """An upper bound of the inputs' tokens (a byte-level tokenizer never makes more tokens
    than bytes; a token array is its length)."""
    if call.texts is not None:
        return sum(len(t.encode()) for t in call.texts) + 8 * len(call.texts)
    return sum(len(t) for t in call.tokens or ())
