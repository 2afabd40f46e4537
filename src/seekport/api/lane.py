"""The API routes' short path through the ASGI app.

FastAPI sends a request through its whole stack: its telemetry and body-limit wrappers,
Starlette's error middleware, the exception middleware, an exit stack, a router that matches
the path against every route, then the handler's dependency solving, each layer wrapping
``send`` again. That cost ~0.2 ms of CPU per request, a fifth of a cache hit's.

The API routes (``middleware.API_ROUTES``: chat, completions, messages, responses,
embeddings) need none of it: each takes only the request and maps every exception to a
response in the API's own error shape (``RequestScope.run``). So ``SeekportApp`` sends a POST to
one of them to its endpoint through ``EdgeMiddleware`` alone (the body limit, the request id,
the in-flight gauge, as on every route). Every other request, the lifespan and these routes'
OpenAPI entries stay FastAPI's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from seekport.api.errors import error_response, internal_error
from seekport.api.middleware import API_ROUTES, EdgeMiddleware, RefusalHook
from seekport.api.scope import new_request_id
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.api")
Endpoint = Callable[[Request], Awaitable[Response]]


class SeekportApp(FastAPI):
    """FastAPI, with the API routes on the short path once ``add_edge`` has run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lane: dict[str, Endpoint] = {}
        self._edge: EdgeMiddleware | None = None
        self._routers: list[APIRouter] = []

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        super().include_router(router, **kwargs)
        if not kwargs.get("prefix"):
            self._routers.append(router)  # where add_edge finds the API routes

    def add_edge(
        self,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        """``EdgeMiddleware`` in front of every route; the API routes' POSTs through one of
        their own, straight to their endpoints. Call it after the routers are included."""
        edge = {
            "metrics": metrics,
            "max_body_bytes": max_body_bytes,
            "max_upload_bytes": max_upload_bytes,
            "on_refusal": on_refusal,
        }
        self.add_middleware(EdgeMiddleware, **edge)  # type: ignore[arg-type]
        lane: dict[str, Endpoint] = {}
        for route in (r for router in self._routers for r in router.routes):
            if not isinstance(route, APIRoute) or route.path not in API_ROUTES:
                continue
            if "POST" not in (route.methods or ()) or not _request_only(route):
                raise TypeError(f"{route.path}: an API route takes the request alone")
            lane[route.path] = route.endpoint
        if set(lane) != set(API_ROUTES):
            raise TypeError(f"API routes not found: {sorted(set(API_ROUTES) - set(lane))}")
        self._lane = lane
        self._edge = EdgeMiddleware(
            self._serve_lane,
            metrics=metrics,
            max_body_bytes=max_body_bytes,
            max_upload_bytes=max_upload_bytes,
            on_refusal=on_refusal,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._edge is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self._lane
        ):
            await self._edge(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _serve_lane(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # what ``request.app`` reads (the services)
        endpoint = self._lane[scope["path"]]
        try:
            response = await endpoint(Request(scope, receive, send))
        except Exception:  # the routes map their own errors: this is a bug
            request_id = new_request_id()
            log.exception("request failed", extra={"fields": {"request_id": request_id}})
            response = error_response(internal_error(request_id))
        await response(scope, receive, send)


def _request_only(route: APIRoute) -> bool:
    d = route.dependant
    return d.request_param_name is not None and not (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.dependencies
    )
