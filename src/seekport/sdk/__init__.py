"""The Python SDK: ``Client`` and ``AsyncClient`` (httpx; imports only ``seekport.protocol``
and ``seekport.errors``). See docs/sdk.md."""

from seekport.sdk.aio import AsyncClient, RetryEvent
from seekport.sdk.client import ChatStream, Client, CompletionStream
from seekport.sdk.errors import (
    APIConnectionError,
    APITimeoutError,
    CircuitOpenError,
    StreamInterruptedError,
)
from seekport.sdk.resilience import BreakerSettings, RetryPolicy
from seekport.sdk.streaming import AsyncChatStream, AsyncCompletionStream, ChatDelta, TextDelta

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AsyncChatStream",
    "AsyncClient",
    "AsyncCompletionStream",
    "BreakerSettings",
    "ChatDelta",
    "ChatStream",
    "CircuitOpenError",
    "Client",
    "CompletionStream",
    "RetryEvent",
    "RetryPolicy",
    "StreamInterruptedError",
    "TextDelta",
]
