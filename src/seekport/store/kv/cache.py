"""The response cache's storage: an in-process LRU bounded by bytes, in front of Redis when
``redis_url`` is set (replicas share entries; each keeps its hottest ones in memory).

Values are opaque bytes with a time to live. Redis errors are misses (a cache outage is never
an API outage) and are logged at most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("seekport.kv")
WARN_EVERY_S = 60.0


class ResponseCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def bytes_held(self) -> int:
        """Bytes this process holds in memory."""
        ...

    async def aclose(self) -> None: ...


class MemoryCache:
    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return hit[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self._max:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (self._clock() + ttl_s, value)
        self._bytes += len(value)
        while self._bytes > self._max:  # least recently used first
            self._drop(next(iter(self._items)))

    def bytes_held(self) -> int:
        return self._bytes

    async def aclose(self) -> None:
        self._items.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self._bytes -= len(value)


class TieredCache:
    """Memory first, then Redis (a Redis hit is kept in memory for the rest of its TTL)."""

    def __init__(
        self, memory: MemoryCache, url: str, *, prefix: str = "seekport:rc:", timeout_s: float = 0.5
    ) -> None:
        self._memory = memory
        self._redis: Any = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._warned = -WARN_EVERY_S

    async def get(self, key: str) -> bytes | None:
        value = await self._memory.get(key)
        if value is not None:
            return value
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._prefix + key)
            pipe.pttl(self._prefix + key)
            value, ttl_ms = await pipe.execute()
        except RedisError as exc:
            self._warn(exc)
            return None
        if value is None:
            return None
        if ttl_ms and ttl_ms > 0:
            await self._memory.set(key, value, ttl_ms / 1000)
        return bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._memory.set(key, value, ttl_s)
        try:
            await self._redis.set(self._prefix + key, value, px=max(1, round(ttl_s * 1000)))
        except RedisError as exc:
            self._warn(exc)

    def bytes_held(self) -> int:
        return self._memory.bytes_held()

    async def aclose(self) -> None:
        await self._memory.aclose()
        await self._redis.aclose()

    def _warn(self, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "redis did not answer; the response cache misses meanwhile",
                extra={"fields": {"error": type(exc).__name__}},
            )


def cache_for(redis_url: str | None, max_bytes: int) -> ResponseCache:
    memory = MemoryCache(max_bytes)
    return TieredCache(memory, redis_url) if redis_url else memory
