"""``/models``, health probes and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import authorize, services_or_none
from seekport.api.scope import RequestScope
from seekport.config import Settings
from seekport.errors import ModelNotFoundError, OverloadedError
from seekport.protocol.models import ModelCard, ModelList

router = APIRouter()


def _card(model: str, created: int, owned_by: str) -> ModelCard:
    return ModelCard(id=model, created=created, owned_by=owned_by)


def _owners(settings: Settings) -> dict[str, str]:
    """``owned_by`` of each listed id; an alias shows its served model's."""
    owners = {m.name: m.owned_by for m in settings.models}
    for a in settings.aliases:
        owners[a.name] = owners.get(a.model, "seekport")
    return owners


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
            _card(m, svc.started_at, owners.get(m, "seekport"))
            for m in svc.chat.model_ids()
            if who.policy.allows_model(m)  # a key limited to some models sees only those
        ]
        return _json(ModelList(data=data).model_dump_json(), scope)

    return await scope.run(handle)


@router.get("/models/{model_id:path}", include_in_schema=False)
@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    scope = RequestScope(services_or_none(request), request, "models", record=False)

    async def handle() -> Response:
        svc = scope.services
        who = await authorize(svc, request, "models")
        if model_id not in svc.chat.model_ids() or not who.policy.allows_model(model_id):
            raise ModelNotFoundError(
                f"Model Not Exist: the model '{model_id}' does not exist", param="model"
            )
        card = _card(model_id, svc.started_at, _owners(svc.settings).get(model_id, "seekport"))
        return _json(card.model_dump_json(), scope)

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
