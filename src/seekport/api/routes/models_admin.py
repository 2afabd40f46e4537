"""The model registry and version switching over the admin API (superadmin, ``system``):
``GET|POST /admin/models/registry``, ``DELETE /admin/models/registry/{ref}``,
``GET /admin/models/{model}/versions``, ``POST /admin/models/{model}/use`` and
``/rollback``. Every change is audited."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import Services
from seekport.api.routes.admin import _admin, _json
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope
from seekport.errors import InvalidRequestError
from seekport.gateway.audit import AuditEvent
from seekport.gateway.auth import Principal
from seekport.protocol.admin import ModelUse, RegistryAdd
from seekport.store.pull import gguf_file_type, pull
from seekport.store.registry import ModelVersion, Registry

router = APIRouter()


def _registry(svc: Services) -> Registry:
    return Registry(svc.settings.resolved_models_dir)


async def _audit(
    svc: Services, actor: Principal, action: str, target: str, detail: dict[str, Any]
) -> None:
    if svc.audit is not None:
        await svc.audit.record(
            AuditEvent(
                action,
                actor_key_id=actor.key_id,
                actor_role=actor.role,
                tenant_id=actor.tenant_id,
                target_type="model",
                target_id=target,
                client_ip=actor.client_ip,
                detail=detail,
            )
        )


def _reloader(svc: Services) -> Any:
    if svc.reloader is None:
        raise InvalidRequestError("this server was not started from a config it can re-read")
    return svc.reloader


@router.get("/admin/models/registry")
async def registry_list(request: Request) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        entries = await asyncio.to_thread(_registry(svc).entries)
        return _json({"data": [dataclasses.asdict(e) for e in entries]}, scope)

    return await _admin(request, "admin.models", "system", work)


@router.post("/admin/models/registry")
async def registry_add(request: Request) -> Response:
    """Register a file on this machine (``path``) or pull one (``url``), SHA-256 checked."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        body, _ = await parse_body(request, RegistryAdd)
        if (body.path is None) == (body.url is None):
            raise InvalidRequestError("give exactly one of 'path' and 'url'", param="path")
        reg = _registry(svc)
        if body.path is not None:
            entry = await asyncio.to_thread(_add_file, reg, body, Path(body.path))
        else:
            assert body.url is not None
            entry = await asyncio.to_thread(
                pull,
                reg,
                body.url,
                name=body.name,
                version=body.version,
                sha256=body.sha256,
                mirror=body.mirror,
            )
        await _audit(svc, actor, "registry.add", entry.ref, {"source": entry.source})
        return _json(dataclasses.asdict(entry), scope, 201)

    return await _admin(request, "admin.models", "system", work)


def _add_file(reg: Registry, body: RegistryAdd, path: Path) -> ModelVersion:
    return reg.add(
        body.name,
        path,
        source=str(path),
        version=body.version,
        sha256=body.sha256,
        quantization=gguf_file_type(path) if path.is_file() else None,
    )


@router.delete("/admin/models/registry/{ref}")
async def registry_remove(request: Request, ref: str) -> Response:
    """Delete a version; one a model serves now is refused."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        reg = _registry(svc)
        entry = await asyncio.to_thread(reg.get, ref)
        # a version reads NAME@V, or BASE@V+ADAPTER@V for a base with a registered adapter
        serving = [m for m, v in svc.chat.versions().items() if entry.ref in v.split("+")]
        if serving:
            raise InvalidRequestError(
                f"{entry.ref} is served now (by {', '.join(serving)}); switch those models to "
                "another version first",
                code="model_in_use",
            )
        await asyncio.to_thread(reg.remove, entry.ref)
        await _audit(svc, actor, "registry.remove", entry.ref, {})
        return _json({"id": entry.ref, "deleted": True}, scope)

    return await _admin(request, "admin.models", "system", work)


@router.get("/admin/models/{model}/versions")
async def versions(request: Request, model: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        return _json(_reloader(svc).versions(model), scope)

    return await _admin(request, "admin.models", "system", work)


@router.post("/admin/models/{model}/use")
async def use(request: Request, model: str) -> Response:
    """Serve a local model from a registry version without dropping calls under way."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        body, _ = await parse_body(request, ModelUse)
        done = await _reloader(svc).use(model, body.version)
        await _audit(svc, actor, "model.use", model, {"serving": done["serving"]})
        return _json(done, scope)

    return await _admin(request, "admin.models", "system", work)


@router.post("/admin/models/{model}/rollback")
async def rollback(request: Request, model: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        done = await _reloader(svc).rollback(model)
        await _audit(svc, actor, "model.rollback", model, {"serving": done["serving"]})
        return _json(done, scope)

    return await _admin(request, "admin.models", "system", work)
