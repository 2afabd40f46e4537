"""``/v1/responses`` (also ``/responses``): OpenAI's Responses API, stateless as DeepSeek's.

Thin, like the chat route: authenticate, parse the Responses request, translate it to a chat
request (``protocol/responses.py``), hand that to ChatService inside the request scope, and
write the events as a ``response`` (``api/encoders/responses.py``). Errors are OpenAI-shaped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import authorize, services_or_none
from seekport.api.encoders.responses import MEDIA_JSON, ResponseMeta, ResponsesBody, ResponsesStream
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope, aclose
from seekport.errors import InvalidRequestError
from seekport.protocol.anthropic import has_images
from seekport.protocol.responses import ResponsesRequest, chat_body, chat_request, custom_tools

router = APIRouter()


def _echo(req: ResponsesRequest) -> dict[str, Any]:
    return {
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "tools": req.tools or [],
        "tool_choice": req.tool_choice or "auto",
        "store": False,
        "previous_response_id": None,
    }


@router.post("/responses", include_in_schema=False)
@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    scope = RequestScope(services_or_none(request), request, "responses")

    async def handle() -> Response:
        svc = scope.services
        scope.ctx.principal = await authorize(svc, request, "infer")
        req, _ = await parse_body(request, ResponsesRequest)
        assert isinstance(req, ResponsesRequest)
        scope.model = req.model
        scope.stream = bool(req.stream)
        dep = svc.chat.deployment_for(req.model)
        scope.label = req.model
        body = chat_body(req, req.model)
        if dep.backend.kind == "local" and has_images(body):
            raise InvalidRequestError(
                f"model '{req.model}' (local) reads text only: input_image is not supported",
                param="input",
            )
        chat = chat_request(body)
        meta = ResponseMeta(model=req.model, echo=_echo(req), custom=custom_tools(req))
        work = (
            _stream(scope, chat, body, meta) if req.stream else _complete(scope, chat, body, meta)
        )
        return await scope.race(work)

    return await scope.run(handle)


async def _complete(
    scope: RequestScope, req: Any, body: dict[str, Any], meta: ResponseMeta
) -> Response:
    result = await scope.services.chat.open(scope.ctx, "chat", req, body)
    scope.result = result
    out = ResponsesBody(replace(meta, model=result.call.model))  # a fallback names itself
    try:
        async for ev in result.events:
            out.add(ev)
    finally:
        await aclose(result.events)
    data = out.body()
    await scope.record(200, None)  # the last byte follows the record (503 if it failed)
    return Response(data, media_type=MEDIA_JSON, headers=scope.headers())


async def _stream(
    scope: RequestScope, req: Any, body: dict[str, Any], meta: ResponseMeta
) -> Response:
    result = await scope.services.chat.open(scope.ctx, "chat", req, body)
    scope.result = result
    enc = ResponsesStream(replace(meta, model=result.call.model))
    first = b""
    try:
        first = enc.encode(await anext(result.events))
    except StopAsyncIteration:
        pass
    except BaseException:
        await aclose(result.events)
        raise
    return scope.streaming(enc, first, result.events)
