"""One encoder per wire format: typed events (``protocol.events``) in, that format's bytes out.

An encoder owns everything format-specific about an answer: the role chunk, where usage goes,
``[DONE]``, in-band error events, and the non-stream body (the aggregate of the same events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from seekport.errors import SeekportError
from seekport.protocol.events import Event


class StreamEncoder(Protocol):
    def encode(self, ev: Event) -> bytes: ...
    def close(self) -> bytes: ...
    def done(self) -> bytes: ...
    def error(self, exc: SeekportError) -> bytes: ...


async def encoded(enc: StreamEncoder, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The bytes of a stream's events (no [DONE]: that follows the usage record)."""
    async for ev in events:
        data = enc.encode(ev)
        if data:
            yield data
    tail = enc.close()
    if tail:
        yield tail
