"""``/embeddings`` (also under ``/v1``): OpenAI's shape, floats or base64.

Thin: parse, hand the call to EmbeddingService inside the request scope (one usage record),
encode the vectors (orjson writes the float32 rows directly; base64 is their little-endian
bytes, which is what the ``openai`` package asks for by default and decodes).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from seekport.api.deps import authorize, services_or_none
from seekport.api.routes.admin import body as body_schema
from seekport.api.routes.inference import _parse
from seekport.api.scope import RequestScope
from seekport.errors import OverloadedError
from seekport.gateway.embeddings import EmbeddingOutcome, Vectors
from seekport.protocol.embeddings import EmbeddingRequest, EmbeddingResponse

router = APIRouter()


def encode(vectors: Vectors, model: str, tokens: int, encoding: str) -> bytes:
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    if encoding == "base64":
        little = vectors.astype("<f4", copy=False)
        data: list[dict[str, Any]] = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(row.tobytes()).decode(),
            }
            for i, row in enumerate(little)
        ]
    else:
        data = [
            {"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)
        ]
    return orjson.dumps(
        {"object": "list", "data": data, "model": model, "usage": usage},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


@router.post("/embeddings", include_in_schema=False)
@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    openapi_extra=body_schema(EmbeddingRequest),
)
async def embeddings(request: Request) -> Response:
    scope = RequestScope(services_or_none(request), request, "embeddings")
    outcome: EmbeddingOutcome | None = None

    async def handle() -> Response:
        nonlocal outcome
        svc = scope.services
        scope.ctx.principal = await authorize(svc, request, "infer")
        req, body = await _parse(request, EmbeddingRequest)
        assert isinstance(req, EmbeddingRequest)
        scope.model = req.model
        if svc.embeddings is None:
            raise OverloadedError("embeddings are not served yet", retry_after=1)
        emb = svc.embeddings
        scope.usage_of = lambda status, code: emb.usage_event(
            scope.ctx, outcome, req.model, status, code
        )
        backend = emb.backend_for(req.model, svc.chat.model_ids())
        scope.label = req.model
        outcome = await emb.embed(scope.ctx, req, body, backend)
        data = encode(
            outcome.embedded.vectors,
            req.model,
            outcome.embedded.prompt_tokens,
            req.encoding_format,
        )
        await scope.record(200, None)
        return Response(
            data,
            media_type="application/json",
            headers={**scope.headers(), **outcome.headers},
        )

    return await scope.run(handle)
