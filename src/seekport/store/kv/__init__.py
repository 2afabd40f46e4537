"""Ephemeral state, in one process or shared by replicas through Redis: rate decisions and
concurrency slots today (``Limiter``), the response cache later."""

from __future__ import annotations

from seekport.config import Settings
from seekport.store.kv.base import Decision, Gcra, Limiter, Reservation
from seekport.store.kv.memory import MemoryLimiter

__all__ = ["Decision", "Gcra", "Limiter", "MemoryLimiter", "Reservation", "limiter_for"]


def limiter_for(settings: Settings) -> Limiter:
    """Redis when ``redis_url`` is set (shared by replicas), else in-process."""
    if settings.redis_url:
        from seekport.store.kv.redis_limiter import RedisLimiter

        return RedisLimiter(settings.redis_url, fail_open=settings.redis_fail_open)
    return MemoryLimiter()
