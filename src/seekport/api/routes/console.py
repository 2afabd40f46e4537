"""The web console: its page at ``/console`` and its assets (in the package: no CDN, works
offline), and its sessions: ``POST /console/session`` logs in with an API key, ``GET`` says who
is logged in (and the CSRF token), ``DELETE`` logs out.

A session stands in for its key on every API route (``deps.session_principal``): the pages
call the same routes as any client, with the same role checks. The cookie is HttpOnly and
SameSite=Strict; requests that may change something also carry the session's CSRF token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from seekport.api.deps import (
    SESSION_COOKIE,
    Services,
    check_csrf,
    client_ip,
    same_site,
    services_or_none,
)
from seekport.api.routes.admin import _json
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope
from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from seekport.gateway.audit import AuditEvent
from seekport.gateway.auth import GRANTS, MAX_AUTH_HEADER, Principal, hash_secret
from seekport.gateway.sessions import Session, Sessions

router = APIRouter(include_in_schema=False)
ASSETS = Path(__file__).resolve().parents[1] / "console" / "assets"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Login(BaseModel):
    key: str = Field(min_length=1, max_length=MAX_AUTH_HEADER - len("Bearer "))


class ConsoleAssets(StaticFiles):
    """The console's files, with the page's security headers."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update({k: v for k, v in PAGE_HEADERS.items() if k != "Cache-Control"})
        return response


@router.get("/console")
async def page(request: Request) -> Response:
    _sessions(services_or_none(request))
    return FileResponse(ASSETS / "index.html", headers=PAGE_HEADERS)


@router.get("/console/")
async def page_slash() -> Response:
    return RedirectResponse("/console", status_code=308)


def _sessions(svc: Services | None) -> Sessions:
    if svc is None or svc.sessions is None:
        raise NotFoundError("the web console is off on this server (console.enabled)")
    return svc.sessions


def _who(principal: Principal, session: Session) -> dict[str, object]:
    return {
        "object": "console.session",
        "authenticated": True,
        "key_id": principal.key_id,
        "name": principal.name,
        "role": principal.role,
        "tenant_id": principal.tenant_id,
        "grants": sorted(GRANTS.get(principal.role, ())),
        "csrf": session.csrf,
        "expires_at": session.expires_at,
    }


@router.post("/console/session")
async def login(request: Request) -> Response:
    """Log in with an API key: a session cookie, and who the key is (with the CSRF token)."""
    scope = RequestScope(services_or_none(request), request, "console.login", record=False)

    async def handle() -> Response:
        svc = scope.services
        sessions = _sessions(svc)
        # another site's form may post text/plain and follow the answer: no login from it
        # (a login CSRF would put the victim's console on the attacker's key)
        same_site(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise InvalidRequestError(
                "log in with a JSON body: Content-Type: application/json", code="invalid_json"
            )
        spec, _ = await parse_body(request, Login)
        key = spec.key.strip()
        address = client_ip(request)
        principal = await svc.keys.authenticate(f"Bearer {key}", address)
        sessions.close(request.cookies.get(SESSION_COOKIE))  # no session outlives a new login
        cookie, session = sessions.open(hash_secret(key))
        scope.ctx.principal = principal
        if svc.audit is not None:
            await svc.audit.record(
                AuditEvent(
                    "console.login",
                    actor_key_id=principal.key_id,
                    actor_role=principal.role,
                    tenant_id=principal.tenant_id,
                    client_ip=address,
                )
            )
        response = _json(_who(principal, session), scope)
        secure = svc.settings.console.secure_cookie
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=None if sessions.lifetime_s is None else int(sessions.lifetime_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https" if secure is None else secure,
        )
        return response

    return await scope.run(handle)


@router.get("/console/session")
async def whoami(request: Request) -> Response:
    """The logged-in key and the session's CSRF token, or ``authenticated: false`` (200: the
    page asks this first, and being logged out is not an error)."""
    scope = RequestScope(services_or_none(request), request, "console.session", record=False)

    async def handle() -> Response:
        svc = scope.services
        sessions = _sessions(svc)
        cookie = request.cookies.get(SESSION_COOKIE)
        session = sessions.find(cookie)
        if session is None:
            return _json({"object": "console.session", "authenticated": False}, scope)
        try:
            principal = await svc.keys.resume(session.digest, client_ip(request))
        except AuthenticationError:  # its key was revoked: the session ends with it
            sessions.close(cookie)
            return _json({"object": "console.session", "authenticated": False}, scope)
        return _json(_who(principal, session), scope)

    return await scope.run(handle)


@router.delete("/console/session", status_code=204)
async def logout(request: Request) -> Response:
    """End the session (its CSRF token required) and clear the cookie."""
    scope = RequestScope(services_or_none(request), request, "console.logout", record=False)

    async def handle() -> Response:
        sessions = _sessions(scope.services)
        cookie = request.cookies.get(SESSION_COOKIE)
        session = sessions.find(cookie)
        if session is not None:  # an ended session needs no token to be cleared
            check_csrf(request, session)
            sessions.close(cookie)
        response = Response(status_code=204, headers=scope.headers())
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return await scope.run(handle)


def install(app: FastAPI, enabled: bool) -> None:
    """The console's routes and assets, when it is on."""
    if enabled:
        app.include_router(router)
        app.mount("/console/assets", ConsoleAssets(directory=ASSETS), name="console-assets")
