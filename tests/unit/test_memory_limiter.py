"""The in-process limiter on a fake clock: windows, leases and a bounded key table."""

from __future__ import annotations

from seekport.store.kv import MemoryLimiter
from seekport.store.kv.memory import SWEEP_EVERY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_units_come_back_at_the_rate() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock)
    assert all([(await lim.hit("k", limit=3, period_s=30)).allowed for _ in range(3)])
    refused = await lim.hit("k", limit=3, period_s=30)
    assert not refused.allowed and refused.retry_after_s == 10.0
    clock.now += 9.99
    assert not (await lim.hit("k", limit=3, period_s=30)).allowed
    clock.now += 0.01
    assert (await lim.hit("k", limit=3, period_s=30)).allowed
    clock.now += 30
    assert (await lim.hit("k", limit=3, period_s=30)).remaining == 2  # full again


async def test_a_lease_runs_out_by_itself() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock)
    assert await lim.acquire_slot("c", "a", limit=1, ttl_s=5)
    assert not await lim.acquire_slot("c", "b", limit=1, ttl_s=5)
    clock.now += 5
    assert await lim.acquire_slot("c", "b", limit=1, ttl_s=5)


async def test_idle_keys_are_forgotten() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock)
    for i in range(SWEEP_EVERY):
        await lim.hit(f"k{i}", limit=10, period_s=1)
    assert lim.keys_held() == SWEEP_EVERY
    clock.now += 1
    await lim.hit("new", limit=10, period_s=1)
    assert lim.keys_held() == 1  # the idle ones were swept before the new key went in
    await lim.hit("new", limit=10, period_s=1, cost=-1)
    assert lim.keys_held() == 0  # back to a full burst: nothing kept


async def test_a_rounding_error_never_refuses_a_full_burst() -> None:
    """(now + T) - T can come out a hair above now: a limit of 1 must still admit its one."""
    now = next(x / 7 for x in range(10_000, 10_000_000) if (x / 7 + 60.0) - 60.0 > x / 7)
    limiter = MemoryLimiter(lambda: now)
    assert (await limiter.hit("k", limit=1, period_s=60)).allowed
    assert not (await limiter.hit("k", limit=1, period_s=60)).allowed
