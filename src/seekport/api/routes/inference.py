"""``/chat/completions`` and ``/completions`` (also under ``/v1`` and ``/beta``).

Thin: parse, hand the request to ChatService inside the request scope, encode the events.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from seekport.api.deps import authorize, services_or_none
from seekport.api.encoders.openai import MEDIA_JSON, AnswerMeta, OpenAIBody, OpenAIStream
from seekport.api.errors import validation_message
from seekport.api.scope import RequestScope, aclose
from seekport.errors import InvalidRequestError
from seekport.gateway.backends.base import Endpoint
from seekport.gateway.service import ChatResult
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest

log = logging.getLogger("seekport.api")
# Fields with which some gateways let a caller pick the upstream or its credentials (an SSRF
# and key-leak path): refused on every route, never forwarded.
BANNED = frozenset(
    {"api_base", "base_url", "api_key", "api_version", "extra_headers", "custom_llm_provider"}
)
router = APIRouter()


async def _parse(request: Request, model_cls: type[BaseModel]) -> tuple[Any, dict[str, Any]]:
    return _parsed(await request.body(), model_cls)


def _parsed(raw: bytes, model_cls: type[BaseModel]) -> tuple[Any, dict[str, Any]]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    banned = BANNED.intersection(body)
    if banned:
        name = sorted(banned)[0]
        raise InvalidRequestError(
            f"Invalid parameter '{name}': the gateway chooses the upstream and its credentials; "
            "a request may not name them",
            param=name,
            code="banned_parameter",
        )
    try:
        req = model_cls.model_validate(body)
    except ValidationError as exc:
        message, param = validation_message(exc.errors())
        raise InvalidRequestError(message, param=param) from exc
    if req.model_extra:
        log.info(
            "unknown request fields accepted",
            extra={"fields": {"fields": [k[:64] for k in sorted(req.model_extra)[:20]]}},
        )
    return req, body


def _meta(
    result: ChatResult,
    req: ChatCompletionRequest | CompletionRequest,
    citations: list[dict[str, Any]] | None = None,
) -> AnswerMeta:
    chat = isinstance(req, ChatCompletionRequest)
    backend = result.deployment.backend
    return AnswerMeta(
        model=result.call.model,  # the served model (an alias's target)
        chat=chat,
        fingerprint=backend.fingerprint,
        wants_usage=req.wants_usage_in_stream,
        top_logprobs=(req.top_logprobs or 0) if isinstance(req, ChatCompletionRequest) else 0,
        reasoning=chat and backend.reasoning,
        passthrough=result.passthrough and citations is None,
        extra={"citations": citations} if citations is not None else None,
    )


async def _serve(
    request: Request, route: str, endpoint: Endpoint, model_cls: type[BaseModel]
) -> Response:
    scope = RequestScope(services_or_none(request), request, route)

    async def handle() -> Response:
        scope.ctx.principal = await authorize(scope.services, request, "infer")
        raw = await request.body()
        # Stop the work if the client hangs up before the answer starts: the local engine frees
        # its slot, a remote upstream is let go now rather than at its read timeout. (Once a
        # stream has started, StreamingResponse watches for the disconnect itself.)
        return await scope.race(_answer(scope, endpoint, raw, model_cls))

    return await scope.run(handle)


async def _answer(
    scope: RequestScope, endpoint: Endpoint, raw: bytes, model_cls: type[BaseModel]
) -> Response:
    chat = scope.services.chat
    # the same bytes from the same caller that got a cached answer before: the short way
    entry = chat.recalled(scope.ctx, endpoint, raw)
    if entry is not None:
        req = entry.req
        scope.model = scope.label = req.model
        scope.stream = bool(req.stream)
        result = await chat.open_hit(scope.ctx, endpoint, entry)
    if entry is None or result is None:
        req, body = _parsed(raw, model_cls)
        scope.model = req.model
        scope.stream = bool(req.stream)
        chat.deployment_for(req.model)
        scope.label = req.model  # a metrics label: served models only
        result = await chat.open(scope.ctx, endpoint, req, body, raw)
    scope.result = result
    meta = _meta(result, req, scope.ctx.citations)
    return await (_stream(scope, meta, result) if req.stream else _complete(scope, meta, result))


async def _complete(scope: RequestScope, meta: AnswerMeta, result: ChatResult) -> Response:
    out = OpenAIBody(meta)
    try:
        async for ev in result.events:
            out.add(ev)
    finally:
        await aclose(result.events)
    data = out.body()
    await scope.record(200, None)  # the last byte follows the record (503 if it failed)
    return Response(data, media_type=MEDIA_JSON, headers=scope.headers())


async def _stream(scope: RequestScope, meta: AnswerMeta, result: ChatResult) -> Response:
    enc = OpenAIStream(meta)
    # Pull events until there are bytes to send, so errors before any byte get their status.
    first = b""
    try:
        while not first:
            first = enc.encode(await anext(result.events))
    except StopAsyncIteration:
        pass
    except BaseException:
        await aclose(result.events)
        raise
    return scope.streaming(enc, first, result.events)


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
