"""Drive a backend the way the edge does: its typed events through the real OpenAI encoders.

For backend tests that read wire bytes (chunks, bodies) rather than events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from seekport.api.encoders import encoded
from seekport.api.encoders.openai import AnswerMeta, OpenAIBody, OpenAIStream
from seekport.gateway.backends.base import BackendCall


def meta(backend: Any, call: BackendCall) -> AnswerMeta:
    chat = call.endpoint == "chat"
    return AnswerMeta(
        model=backend.model,
        chat=chat,
        fingerprint=backend.fingerprint,
        wants_usage=bool(getattr(call.request, "wants_usage_in_stream", False)),
        top_logprobs=(getattr(call.request, "top_logprobs", None) or 0) if chat else 0,
        reasoning=chat and backend.reasoning,
    )


async def stream(backend: Any, call: BackendCall) -> AsyncIterator[bytes]:
    """Admit the call (errors raise here), then its SSE events one by one (no [DONE])."""
    events = await backend.generate(call)
    enc = OpenAIStream(meta(backend, call))

    async def out() -> AsyncIterator[bytes]:
        try:
            async for data in encoded(enc, events):
                yield data
        finally:
            await events.aclose()

    return out()


async def complete(backend: Any, call: BackendCall) -> bytes:
    """The whole non-stream body."""
    body = OpenAIBody(meta(backend, call))
    async for ev in await backend.generate(call):
        body.add(ev)
    return body.body()
