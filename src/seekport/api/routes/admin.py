"""Admin routes (admin role only): ``GET /admin/routing`` and ``POST /admin/reload``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import require_admin, services_or_none
from seekport.api.scope import RequestScope
from seekport.errors import InvalidRequestError

router = APIRouter()


def _json(data: object, scope: RequestScope) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers=scope.headers())


@router.get("/admin/routing")
async def routing(request: Request) -> Response:
    """Each model's deployments (weight, tags, in flight, TTFT average, breaker state), the
    strategy, the retry budget and the fallback lists."""
    scope = RequestScope(services_or_none(request), request, "admin.routing", record=False)

    async def handle() -> Response:
        svc = scope.services
        scope.ctx.principal = await require_admin(svc, request)
        return _json(svc.chat.router.snapshot(), scope)

    return await scope.run(handle)


@router.post("/admin/reload")
async def reload(request: Request) -> Response:
    """Re-read the config and swap the routing table (as SIGHUP does); a config that fails
    validation is refused with a 400 naming the error, and the running one stays."""
    scope = RequestScope(services_or_none(request), request, "admin.reload", record=False)

    async def handle() -> Response:
        svc = scope.services
        scope.ctx.principal = await require_admin(svc, request)
        if svc.reloader is None:
            raise InvalidRequestError("this server was not started from a config it can re-read")
        return _json(await svc.reloader.reload(), scope)

    return await scope.run(handle)
