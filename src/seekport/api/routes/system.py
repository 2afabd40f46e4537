"""``/models``, health probes and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import authenticate, context, services
from seekport.errors import ModelNotFoundError
from seekport.protocol.models import ModelCard, ModelList

router = APIRouter()


def _card(model: str, created: int, owned_by: str) -> ModelCard:
    return ModelCard(id=model, created=created, owned_by=owned_by)


@router.get("/models", include_in_schema=False)
@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    context(request, "models")
    await authenticate(request)
    svc = services(request)
    owners = {m.name: m.owned_by for m in svc.settings.models}
    data = [_card(m, svc.started_at, owners.get(m, "seekport")) for m in svc.chat.model_ids()]
    return Response(ModelList(data=data).model_dump_json(), media_type="application/json")


@router.get("/models/{model_id:path}", include_in_schema=False)
@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    context(request, "models")
    await authenticate(request)
    svc = services(request)
    if model_id not in svc.chat.model_ids():
        raise ModelNotFoundError(
            f"Model Not Exist: the model '{model_id}' does not exist", param="model"
        )
    owners = {m.name: m.owned_by for m in svc.settings.models}
    card = _card(model_id, svc.started_at, owners[model_id])
    return Response(card.model_dump_json(), media_type="application/json")


@router.get("/health/live")
async def live() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    svc = getattr(request.app.state, "services", None)
    ok = svc is not None and svc.chat.ready()
    return Response(
        b'{"status":"ready"}' if ok else b'{"status":"starting"}',
        status_code=200 if ok else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    await authenticate(request)
    svc = services(request)
    return Response(svc.metrics.render(), media_type=svc.metrics.content_type)
