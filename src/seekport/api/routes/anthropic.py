"""``/anthropic/v1/messages`` (also ``/anthropic/messages``) and ``.../messages/count_tokens``.

Thin, like the chat route: authenticate (``x-api-key`` or ``Authorization: Bearer``; the latter
wins when both are sent), parse the Anthropic request, translate it to a chat request
(``protocol/anthropic.py``), hand that to ChatService inside the request scope, and write the
events as an Anthropic message (``api/encoders/anthropic.py``). Errors are Anthropic-shaped.
``anthropic-version`` / ``anthropic-beta`` headers and ``?beta=true`` are accepted and ignored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import authorize, services_or_none
from seekport.api.encoders.anthropic import MEDIA_JSON, AnthropicBody, AnthropicStream, MessageMeta
from seekport.api.errors import anthropic_error_response
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope, aclose
from seekport.errors import InvalidRequestError
from seekport.gateway.auth import Principal
from seekport.protocol.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    chat_body,
    chat_request,
    count_body,
    estimate_tokens,
    has_images,
    served_model,
)
from seekport.protocol.chat import ChatCompletionRequest

router = APIRouter()


@runtime_checkable
class PromptCounter(Protocol):
    """A backend that holds its model's tokenizer (the local engine)."""

    async def count_prompt_tokens(self, req: ChatCompletionRequest) -> int: ...


async def _authenticate(scope: RequestScope, request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        key = request.headers.get("x-api-key")
        header = f"Bearer {key}" if key else None
    return await authorize(scope.services, request, "infer", header or "")


def _scope(request: Request, route: str, *, record: bool = True) -> RequestScope:
    return RequestScope(
        services_or_none(request), request, route, record=record, render=anthropic_error_response
    )


@router.post("/anthropic/messages", include_in_schema=False)
@router.post("/anthropic/v1/messages")
async def messages(request: Request) -> Response:
    scope = _scope(request, "anthropic.messages")

    async def handle() -> Response:
        svc = scope.services
        scope.ctx.principal = await _authenticate(scope, request)
        req, _ = await parse_body(request, MessagesRequest)
        assert isinstance(req, MessagesRequest)
        scope.stream = bool(req.stream)
        model = served_model(req.model, svc.chat.model_ids(), svc.settings.anthropic_model_map)
        scope.model = model
        dep = svc.chat.deployment_for(model)
        scope.label = model
        body = chat_body(req, model)
        if dep.backend.kind == "local" and has_images(body):
            raise InvalidRequestError(
                f"model '{model}' (local) reads text only: image blocks are not supported",
                param="messages",
            )
        chat = chat_request(body)
        meta = MessageMeta(model=model)
        work = (
            _stream(scope, chat, body, meta) if req.stream else _complete(scope, chat, body, meta)
        )
        return await scope.race(work)

    return await scope.run(handle)


async def _complete(
    scope: RequestScope, req: Any, body: dict[str, Any], meta: MessageMeta
) -> Response:
    result = await scope.services.chat.open(scope.ctx, "chat", req, body)
    scope.result = result
    out = AnthropicBody(replace(meta, model=result.call.model))  # a fallback names itself
    try:
        async for ev in result.events:
            out.add(ev)
    finally:
        await aclose(result.events)
    data = out.body()
    await scope.record(200, None)  # the last byte follows the record (503 if it failed)
    return Response(data, media_type=MEDIA_JSON, headers=scope.headers())


async def _stream(
    scope: RequestScope, req: Any, body: dict[str, Any], meta: MessageMeta
) -> Response:
    result = await scope.services.chat.open(scope.ctx, "chat", req, body)
    scope.result = result
    enc = AnthropicStream(replace(meta, model=result.call.model))
    # the first event (admitted): message_start goes out with it
    first = b""
    try:
        first = enc.encode(await anext(result.events))
    except StopAsyncIteration:
        pass
    except BaseException:
        await aclose(result.events)
        raise
    return scope.streaming(enc, first, result.events)


@router.post("/anthropic/messages/count_tokens", include_in_schema=False)
@router.post("/anthropic/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """``{"input_tokens": N}``: the local model's own tokenizer count of the templated prompt;
    for a remote upstream an estimate (``protocol.anthropic.estimate_tokens``). No usage record,
    as nothing is generated."""
    scope = _scope(request, "anthropic.count_tokens", record=False)

    async def handle() -> Response:
        svc = scope.services
        scope.ctx.principal = await _authenticate(scope, request)
        req, _ = await parse_body(request, CountTokensRequest)
        assert isinstance(req, CountTokensRequest)
        model = served_model(req.model, svc.chat.model_ids(), svc.settings.anthropic_model_map)
        scope.label = model
        backend = svc.chat.deployment_for(model).backend
        body = count_body(req, model)
        if isinstance(backend, PromptCounter):
            n = await backend.count_prompt_tokens(chat_request(body))
        else:
            n = estimate_tokens(body)
        data = orjson.dumps({"input_tokens": n})
        return Response(data, media_type=MEDIA_JSON, headers=scope.headers())

    return await scope.run(handle)
