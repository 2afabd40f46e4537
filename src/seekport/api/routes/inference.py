"""``/chat/completions`` and ``/completions`` (also under ``/v1`` and ``/beta``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response, StreamingResponse

from seekport.api.deps import Services, authenticate, context, services
from seekport.errors import InvalidRequestError, SeekportError
from seekport.gateway.backends.base import Endpoint
from seekport.gateway.service import RequestContext
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest

log = logging.getLogger("seekport.api")
router = APIRouter()

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "missing":
        return f"Missing required parameter: '{loc}'", loc
    return f"Invalid parameter '{loc}': {msg}", loc or None


async def _parse(request: Request, model_cls: type[BaseModel]) -> tuple[Any, dict[str, Any]]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    try:
        req = model_cls.model_validate(body)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise InvalidRequestError(message, param=param) from exc
    if req.model_extra:
        log.info(
            "unknown request fields accepted",
            extra={"fields": {"fields": [k[:64] for k in sorted(req.model_extra)[:20]]}},
        )
    return req, body


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _serve(
    request: Request, route: str, endpoint: Endpoint, model_cls: type[BaseModel]
) -> Response:
    svc = services(request)
    ctx: RequestContext = context(request, route)
    model: str | None = None
    try:
        ctx.principal = await authenticate(request)
        req, body = await _parse(request, model_cls)
        model = req.model
        svc.chat.backend_for(model)
        request.scope["state"]["model"] = model  # a metrics label: known models only
    except SeekportError as exc:
        await svc.chat.record_rejection(ctx, model, exc.status_code, exc.code)
        raise
    # Stop the work if the client hangs up before the answer starts: the local engine frees its
    # slot, a remote upstream is let go now rather than at its read timeout. (Once a stream has
    # started, StreamingResponse watches for the disconnect itself.)
    work = asyncio.ensure_future(
        _open_stream(svc, ctx, endpoint, req, body)
        if req.stream
        else _complete(svc, ctx, endpoint, req, body)
    )
    gone = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
    if not work.done() or work.cancelled():
        return Response(status_code=499)
    return work.result()


async def _complete(
    svc: Services, ctx: RequestContext, endpoint: Endpoint, req: Any, body: dict[str, Any]
) -> Response:
    data = await svc.chat.complete(ctx, endpoint, req, body)
    return Response(data, media_type="application/json")


async def _open_stream(
    svc: Services, ctx: RequestContext, endpoint: Endpoint, req: Any, body: dict[str, Any]
) -> Response:
    events = await svc.chat.stream(ctx, endpoint, req, body)
    return await _start_stream(events)


async def _start_stream(events: AsyncIterator[bytes]) -> Response:
    """Pull the first event before answering, so errors before any byte get their status."""
    it = aiter(events)
    try:
        first = await anext(it)
    except StopAsyncIteration:
        first = b""

    async def body() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for ev in it:
                yield ev
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.post("/chat/completions", include_in_schema=False)
@router.post("/v1/chat/completions")
@router.post("/beta/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    return await _serve(request, "chat.completions", "chat", ChatCompletionRequest)


@router.post("/completions", include_in_schema=False)
@router.post("/v1/completions")
@router.post("/beta/completions", include_in_schema=False)
async def completions(request: Request) -> Response:
    return await _serve(request, "completions", "completion", CompletionRequest)
