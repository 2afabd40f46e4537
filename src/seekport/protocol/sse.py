"""Server-sent events framing: data-only events as OpenAI and DeepSeek send them."""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def event(payload: bytes) -> bytes:
    """One ``data:`` event around an already serialised JSON payload."""
    return b"data: " + payload + b"\n\n"
