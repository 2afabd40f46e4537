"""Admin routes. ``/admin/tenants``, ``/admin/users`` and ``/admin/keys`` manage tenants →
users → keys (superadmin: every tenant; admin: its own; another tenant's ids answer 404);
``GET /admin/routing`` and ``POST /admin/reload`` manage the gateway (superadmin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from seekport.api.deps import Services, authorize, services_or_none
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope
from seekport.errors import InvalidRequestError
from seekport.gateway.audit import AuditEvent
from seekport.gateway.auth import Permission, Principal
from seekport.protocol.admin import (
    Key,
    KeyCreate,
    KeyRotate,
    KeyWithSecret,
    ListOf,
    Tenant,
    TenantCreate,
    TenantUpdate,
    User,
    UserCreate,
    UserUpdate,
    unix,
)
from seekport.store.protocols import ApiKeyRecord, TenantRecord, UserRecord

router = APIRouter()


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with its ``$defs`` references replaced by what they name."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """OpenAPI's requestBody for a route that parses its own body (errors in our shape)."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": inlined}},
        }
    }


def _json(data: object, scope: RequestScope, status: int = 200) -> Response:
    body = data.model_dump_json().encode() if isinstance(data, BaseModel) else orjson.dumps(data)
    return Response(body, status, media_type="application/json", headers=scope.headers())


async def _admin(
    request: Request,
    route: str,
    permission: Permission,
    work: Callable[[Services, Principal, RequestScope], Awaitable[Response]],
) -> Response:
    """Authorize the caller for ``permission``, then run ``work`` inside the request scope
    (errors in the OpenAI shape, a request id)."""
    scope = RequestScope(services_or_none(request), request, route, record=False)

    async def handle() -> Response:
        svc = scope.services
        actor = await authorize(svc, request, permission)
        scope.ctx.principal = actor
        return await work(svc, actor, scope)

    return await scope.run(handle)


def _tenant(t: TenantRecord) -> Tenant:
    return Tenant(
        id=t.id,
        name=t.name,
        created_at=unix(t.created_at) or 0,
        disabled=t.disabled_at is not None,
        limits=t.limits,
    )


def _user(u: UserRecord) -> User:
    return User(
        id=u.id,
        tenant_id=u.tenant_id,
        name=u.name,
        created_at=unix(u.created_at) or 0,
        disabled=u.disabled_at is not None,
        limits=u.limits,
    )


def _key(k: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "tenant_id": k.tenant_id,
        "user_id": k.user_id,
        "prefix": k.prefix,
        "created_at": unix(k.created_at) or 0,
        "expires_at": unix(k.expires_at),
        "revoked_at": unix(k.revoked_at),
        "previous_secret_valid_until": unix(k.prev_valid_until),
        "policy": k.policy,
    }


# ---- tenants


@router.post(
    "/admin/tenants", response_model=Tenant, status_code=201, openapi_extra=body(TenantCreate)
)
async def create_tenant(request: Request) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, TenantCreate)
        made = await svc.directory.create_tenant(actor, spec.name, spec.limits)
        return _json(_tenant(made), scope, 201)

    return await _admin(request, "admin.tenants", "tenants", work)


@router.get("/admin/tenants", response_model=ListOf[Tenant])
async def list_tenants(request: Request) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        found = await svc.directory.list_tenants(actor)
        return _json(ListOf[Tenant](data=[_tenant(t) for t in found]), scope)

    return await _admin(request, "admin.tenants", "users", work)


@router.get("/admin/tenants/{tenant_id}", response_model=Tenant)
async def get_tenant(request: Request, tenant_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        return _json(_tenant(await svc.directory.tenant(actor, tenant_id)), scope)

    return await _admin(request, "admin.tenants", "users", work)


@router.patch("/admin/tenants/{tenant_id}", response_model=Tenant, openapi_extra=body(TenantUpdate))
async def update_tenant(request: Request, tenant_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, TenantUpdate)
        done = await svc.directory.update_tenant(
            actor, tenant_id, limits=spec.limits, disabled=spec.disabled
        )
        return _json(_tenant(done), scope)

    return await _admin(request, "admin.tenants", "tenants", work)


# ---- users


@router.post("/admin/users", response_model=User, status_code=201, openapi_extra=body(UserCreate))
async def create_user(request: Request) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, UserCreate)
        made = await svc.directory.create_user(
            actor, spec.name, tenant_id=spec.tenant_id, limits=spec.limits
        )
        return _json(_user(made), scope, 201)

    return await _admin(request, "admin.users", "users", work)


@router.get("/admin/users", response_model=ListOf[User])
async def list_users(request: Request, tenant_id: str | None = None) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        found = await svc.directory.list_users(actor, tenant_id)
        return _json(ListOf[User](data=[_user(u) for u in found]), scope)

    return await _admin(request, "admin.users", "users", work)


@router.get("/admin/users/{user_id}", response_model=User)
async def get_user(request: Request, user_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        return _json(_user(await svc.directory.user(actor, user_id)), scope)

    return await _admin(request, "admin.users", "users", work)


@router.patch("/admin/users/{user_id}", response_model=User, openapi_extra=body(UserUpdate))
async def update_user(request: Request, user_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, UserUpdate)
        done = await svc.directory.update_user(
            actor, user_id, limits=spec.limits, disabled=spec.disabled
        )
        return _json(_user(done), scope)

    return await _admin(request, "admin.users", "users", work)


# ---- keys


@router.post(
    "/admin/keys", response_model=KeyWithSecret, status_code=201, openapi_extra=body(KeyCreate)
)
async def create_key(request: Request) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, KeyCreate)
        record, secret = await svc.directory.create_key(
            actor,
            spec.name,
            spec.role,
            tenant_id=spec.tenant_id,
            user_id=spec.user_id,
            policy=spec.policy(),
            expires_at=spec.expires_at,
        )
        made = KeyWithSecret(**_key(record), secret=secret)
        return _json(made, scope, 201)

    return await _admin(request, "admin.keys", "keys", work)


@router.get("/admin/keys", response_model=ListOf[Key])
async def list_keys(
    request: Request, tenant_id: str | None = None, user_id: str | None = None
) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        found = await svc.directory.list_keys(actor, tenant_id=tenant_id, user_id=user_id)
        return _json(ListOf[Key](data=[Key(**_key(k)) for k in found]), scope)

    return await _admin(request, "admin.keys", "keys", work)


@router.get("/admin/keys/{key_id}", response_model=Key)
async def get_key(request: Request, key_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        return _json(Key(**_key(await svc.directory.key(actor, key_id))), scope)

    return await _admin(request, "admin.keys", "keys", work)


@router.post("/admin/keys/{key_id}/revoke", response_model=Key)
async def revoke_key(request: Request, key_id: str) -> Response:
    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        done = await svc.directory.revoke_key(actor, key_id)
        return _json(Key(**_key(done)), scope)

    return await _admin(request, "admin.keys", "keys", work)


@router.post(
    "/admin/keys/{key_id}/rotate",
    response_model=KeyWithSecret,
    openapi_extra=body(KeyRotate, required=False),
)
async def rotate_key(request: Request, key_id: str) -> Response:
    """A new secret for the key; the previous one works for ``grace_s`` more seconds."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        raw = await request.body()
        spec = (await parse_body(request, KeyRotate))[0] if raw.strip() else KeyRotate()
        record, secret = await svc.directory.rotate_key(actor, key_id, grace_s=spec.grace_s)
        return _json(KeyWithSecret(**_key(record), secret=secret), scope)

    return await _admin(request, "admin.keys", "keys", work)


# ---- the gateway itself


@router.get("/admin/routing")
async def routing(request: Request) -> Response:
    """Each model's deployments (weight, tags, in flight, TTFT average, breaker state), the
    strategy, the retry budget and the fallback lists."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        return _json(svc.chat.router.snapshot(), scope)

    return await _admin(request, "admin.routing", "system", work)


@router.post("/admin/reload")
async def reload(request: Request) -> Response:
    """Re-read the config and swap the routing table (as SIGHUP does); a config that fails
    validation is refused with a 400 naming the error, and the running one stays."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        if svc.reloader is None:
            raise InvalidRequestError("this server was not started from a config it can re-read")
        done = await svc.reloader.reload()
        if svc.audit is not None:
            await svc.audit.record(
                AuditEvent(
                    "config.reload",
                    actor_key_id=actor.key_id,
                    actor_role=actor.role,
                    tenant_id=actor.tenant_id,
                    target_type="config",
                    client_ip=actor.client_ip,
                )
            )
        return _json(done, scope)

    return await _admin(request, "admin.reload", "system", work)
