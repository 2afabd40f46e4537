"""``/models``, ``/user/balance``, health probes and ``/metrics``."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import Services, authorize, services_or_none
from seekport.api.scope import RequestScope
from seekport.config import Settings
from seekport.config.pricing import decimal_string
from seekport.errors import ModelNotFoundError, OverloadedError
from seekport.protocol.admin import unix
from seekport.protocol.balance import BalanceInfo, BudgetState, UserBalance
from seekport.protocol.models import ModelCard, ModelList

router = APIRouter()


def _card(model: str, created: int, owned_by: str, svc: Services) -> ModelCard:
    served = svc.chat.served_model(model) or model
    version = svc.chat.versions().get(served)
    embedding = svc.embeddings is not None and model in svc.embeddings.model_ids()
    return ModelCard(
        id=model,
        created=created,
        owned_by=owned_by,
        version=version,
        kind="embedding" if embedding else None,
    )


def _owners(settings: Settings) -> dict[str, str]:
    """``owned_by`` of each listed id; an alias shows its served model's."""
    owners = {m.name: m.owned_by for m in settings.models}
    for a in settings.aliases:
        owners[a.name] = owners.get(a.model, "seekport")
    return owners


def _listed(svc: Services) -> list[str]:
    """Chat models, aliases, then embedding models."""
    embedding = svc.embeddings.model_ids() if svc.embeddings is not None else []
    return [*svc.chat.model_ids(), *embedding]


def _json(body: str, scope: RequestScope) -> Response:
    return Response(body, media_type="application/json", headers=scope.headers())


@router.get("/models", include_in_schema=False)
@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    scope = RequestScope(services_or_none(request), request, "models", record=False)

    async def handle() -> Response:
        svc = scope.services
        who = await authorize(svc, request, "models")
        owners = _owners(svc.settings)
        data = [
            _card(m, svc.started_at, owners.get(m, "seekport"), svc)
            for m in _listed(svc)
            if who.policy.allows_model(m)  # a key limited to some models sees only those
        ]
        return _json(ModelList(data=data).model_dump_json(exclude_none=True), scope)

    return await scope.run(handle)


@router.get("/models/{model_id:path}", include_in_schema=False)
@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    scope = RequestScope(services_or_none(request), request, "models", record=False)

    async def handle() -> Response:
        svc = scope.services
        who = await authorize(svc, request, "models")
        if model_id not in _listed(svc) or not who.policy.allows_model(model_id):
            raise ModelNotFoundError(
                f"Model Not Exist: the model '{model_id}' does not exist", param="model"
            )
        card = _card(model_id, svc.started_at, _owners(svc.settings).get(model_id, "seekport"), svc)
        return _json(card.model_dump_json(exclude_none=True), scope)

    return await scope.run(handle)


@router.get("/user/balance", response_model=UserBalance)
@router.get("/v1/user/balance", include_in_schema=False)
async def balance(request: Request) -> Response:
    """What the key may still spend (DeepSeek's shape): the tightest of the budgets over it
    (its own, its user's, its tenant's), each listed under ``budgets``."""
    scope = RequestScope(services_or_none(request), request, "balance", record=False)

    async def handle() -> Response:
        svc = scope.services
        who = await authorize(svc, request, "balance")
        found = await svc.budgets.balances(who) if svc.budgets is not None else []
        now = dt.datetime.now(dt.UTC)
        currency = svc.settings.pricing.currency
        states, left = [], []
        for b in found:
            limit = b.scope.budget.nanos()
            remaining = max(0, limit - b.used)
            left.append(remaining)
            states.append(
                BudgetState(
                    scope=b.scope.scope,
                    id=b.scope.id,
                    period=b.scope.budget.period,
                    amount=decimal_string(limit),
                    spent=decimal_string(b.used),
                    remaining=decimal_string(remaining),
                    resets_at=unix(b.scope.budget.window(now)[1]),
                )
            )
        infos = []
        if left:
            tightest = decimal_string(min(left))
            infos.append(
                BalanceInfo(
                    currency=currency,
                    total_balance=tightest,
                    granted_balance=tightest,
                    topped_up_balance="0.00",
                )
            )
        out = UserBalance(
            is_available=all(r > 0 for r in left), balance_infos=infos, budgets=states
        )
        return _json(out.model_dump_json(), scope)

    return await scope.run(handle)


@router.get("/health/live")
async def live() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    svc = services_or_none(request)
    ok = svc is not None and svc.chat.ready()
    return Response(
        b'{"status":"ready"}' if ok else b'{"status":"starting"}',
        status_code=200 if ok else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    svc = services_or_none(request)
    if svc is None:
        raise OverloadedError("the server is starting or stopping; retry", retry_after=1)
    await authorize(svc, request, "metrics")
    return Response(svc.metrics.render(), media_type=svc.metrics.content_type)
