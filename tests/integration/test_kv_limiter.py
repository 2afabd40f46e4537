"""The limiter Protocol on both backends — in-process and the real Redis on 127.0.0.1:6379 —
with the same expectations; then what only Redis has: replicas sharing one exact limit, keys
that expire, and fail-open / fail-closed when Redis does not answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from seekport.config import Settings
from seekport.store.kv import Limiter, MemoryLimiter, limiter_for
from seekport.store.kv.redis_limiter import RedisLimiter
from tests.harness import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted after it."""
    name = f"seekport-test-{uuid.uuid4().hex[:12]}:"
    yield name
    raw = aioredis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=name + "*")]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


def shared(prefix: str) -> RedisLimiter:
    """A Redis limiter with a timeout no busy CI machine reaches: a timed-out decision is
    decided by fail-open, which would make the exact counts below flaky (fail-open and
    fail-closed have their own tests, against a port where nothing listens)."""
    return RedisLimiter(REDIS_URL, prefix=prefix, timeout_s=10.0)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Limiter]:
    lim: Limiter = MemoryLimiter() if request.param == "memory" else shared(prefix)
    yield lim
    await lim.aclose()


async def test_a_limit_admits_its_burst_then_refuses_with_the_wait(limiter: Limiter) -> None:
    decisions = [await limiter.hit("k", limit=5, period_s=60) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert 11.0 < refused.retry_after_s <= 12.0  # one unit every 60/5 s
    assert 59.0 < refused.reset_s <= 60.0


async def test_keys_are_separate(limiter: Limiter) -> None:
    assert (await limiter.hit("a", limit=1, period_s=60)).allowed
    assert not (await limiter.hit("a", limit=1, period_s=60)).allowed
    assert (await limiter.hit("b", limit=1, period_s=60)).allowed


async def test_a_cost_counts_several_units_and_a_negative_cost_gives_them_back(
    limiter: Limiter,
) -> None:
    assert (await limiter.hit("t", limit=100, period_s=60, cost=80)).allowed
    over = await limiter.hit("t", limit=100, period_s=60, cost=30)
    assert not over.allowed and over.remaining == 20
    assert (await limiter.hit("t", limit=100, period_s=60, cost=-50)).allowed  # settled lower
    assert (await limiter.hit("t", limit=100, period_s=60, cost=30)).allowed


async def test_force_charges_past_the_limit(limiter: Limiter) -> None:
    assert (await limiter.hit("f", limit=10, period_s=60, cost=10)).allowed
    forced = await limiter.hit("f", limit=10, period_s=60, cost=5, force=True)
    assert forced.allowed and forced.remaining == 0
    after = await limiter.hit("f", limit=10, period_s=60)
    assert not after.allowed and 35.0 < after.retry_after_s <= 36.0  # 5 units owed, then one


async def test_burst_one_spaces_calls_evenly(limiter: Limiter) -> None:
    assert (await limiter.hit("s", limit=600, period_s=60, burst=1)).allowed
    second = await limiter.hit("s", limit=600, period_s=60, burst=1)
    assert not second.allowed and 0.0 < second.retry_after_s <= 0.1
    await asyncio.sleep(second.retry_after_s + 0.02)
    assert (await limiter.hit("s", limit=600, period_s=60, burst=1)).allowed


async def test_concurrency_slots_are_leases(limiter: Limiter) -> None:
    assert await limiter.acquire_slot("c", "t1", limit=2, ttl_s=60)
    assert await limiter.acquire_slot("c", "t2", limit=2, ttl_s=0.2)
    assert not await limiter.acquire_slot("c", "t3", limit=2, ttl_s=60)
    assert await limiter.acquire_slot("c", "t1", limit=2, ttl_s=60)  # a holder renews its own
    await limiter.release_slot("c", "t1")
    assert await limiter.acquire_slot("c", "t3", limit=2, ttl_s=60)
    assert not await limiter.acquire_slot("c", "t4", limit=2, ttl_s=60)
    await asyncio.sleep(0.3)  # t2's lease ran out: its holder never released it
    assert await limiter.acquire_slot("c", "t4", limit=2, ttl_s=60)


async def test_concurrent_callers_get_exactly_the_limit(limiter: Limiter) -> None:
    results = await asyncio.gather(
        *(limiter.hit("x", limit=50, period_s=60) for _ in range(64 * 4))
    )
    assert not any(d.degraded for d in results)
    assert sum(d.allowed for d in results) == 50


async def test_two_replicas_sharing_redis_admit_the_limit_once(prefix: str) -> None:
    """Two clients of one Redis stand for two replicas: a limit of 50 a minute admits exactly
    50 in total across 64 concurrent callers on each, not 100."""
    replicas = [shared(prefix) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(r.hit("shared", limit=50, period_s=60) for r in replicas for _ in range(64))
        )
        slots = await asyncio.gather(
            *(
                r.acquire_slot("cc", f"{i}-{j}", limit=7, ttl_s=60)
                for i, r in enumerate(replicas)
                for j in range(20)
            )
        )
    finally:
        for r in replicas:
            await r.aclose()
    assert sum(d.allowed for d in results) == 50
    assert sum(slots) == 7


async def test_redis_keys_expire_with_their_window(prefix: str) -> None:
    lim = shared(prefix)
    raw = aioredis.from_url(REDIS_URL)
    try:
        await lim.hit("e", limit=10, period_s=60, cost=3)
        ttl_ms = await raw.pttl(f"{prefix}rl:e")
        assert 17_000 < ttl_ms <= 18_000  # 3 units of 6 s: gone once they are paid back
        await lim.hit("e", limit=10, period_s=60, cost=-3)
        assert await raw.exists(f"{prefix}rl:e") == 0  # back to a full burst: nothing kept
    finally:
        await lim.aclose()
        await raw.aclose()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_fails_open_or_closed_as_configured(fail_open: bool) -> None:
    lim = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", fail_open=fail_open, timeout_s=0.2)
    try:
        d = await lim.hit("k", limit=10, period_s=60)
        slot = await lim.acquire_slot("c", "t", limit=1, ttl_s=60)
        await lim.release_slot("c", "t")  # does not raise either
        money = await lim.reserve("b", "t", amount=1, limit=10, lease_s=60, ttl_s=60, seed=0)
        await lim.settle("b", "t", 1)  # nor does this
        assert await lim.used("b") is None
    finally:
        await lim.aclose()
    assert d.degraded and d.allowed is fail_open and slot is fail_open
    assert money.degraded and money.status == "refused"  # budgets fail closed either way
    if not fail_open:
        assert d.retry_after_s >= 1.0


def test_the_settings_pick_the_backend() -> None:
    assert isinstance(limiter_for(Settings()), MemoryLimiter)
    assert isinstance(limiter_for(Settings(redis_url=REDIS_URL)), RedisLimiter)
    with pytest.raises(ValueError, match="redis_url"):
        Settings(redis_url="http://127.0.0.1:6379")


async def test_a_zero_cost_asks_without_charging(limiter: Limiter) -> None:
    assert (await limiter.hit("p", limit=2, period_s=60, cost=0)).allowed
    assert (await limiter.hit("p", limit=2, period_s=60, force=True, cost=2)).allowed
    peek = await limiter.hit("p", limit=2, period_s=60, cost=0)
    assert not peek.allowed and 29.0 < peek.retry_after_s <= 30.0
    assert not (await limiter.hit("p", limit=2, period_s=60, cost=0)).allowed  # unchanged


async def test_a_ledger_starts_from_its_seed_and_admits_what_fits(limiter: Limiter) -> None:
    args = {"limit": 100, "lease_s": 60, "ttl_s": 3600}
    first = await limiter.reserve("led", "a", amount=30, **args)
    assert first.status == "unseeded"
    assert await limiter.used("led") is None
    seeded = await limiter.reserve("led", "a", amount=30, seed=50, **args)
    assert (seeded.status, seeded.used) == ("admitted", 80)
    refused = await limiter.reserve("led", "b", amount=30, seed=0, **args)  # the seed is ignored
    assert (refused.status, refused.used) == ("refused", 80)
    await limiter.settle("led", "a", 10)  # it cost 10 of the 30 it reserved
    assert await limiter.used("led") == 60
    again = await limiter.reserve("led", "b", amount=30, **args)
    assert (again.status, again.used) == ("admitted", 90)


async def test_two_replicas_sharing_redis_never_overspend_a_ledger(prefix: str) -> None:
    a, b = shared(prefix), shared(prefix)
    try:
        args = {"amount": 7, "limit": 100, "lease_s": 60, "ttl_s": 3600, "seed": 0}
        results = await asyncio.gather(
            *(
                (a, b)[i % 2].reserve("shared", f"t{i}", **args)  # type: ignore[arg-type]
                for i in range(40)
            )
        )
        assert sum(r.status == "admitted" for r in results) == 14  # 14 x 7 = 98 <= 100
        assert await a.used("shared") == 98
    finally:
        await a.aclose()
        await b.aclose()


async def test_replicas_share_cached_answers_through_redis(prefix: str) -> None:
    from seekport.store.kv.cache import MemoryCache, TieredCache

    a = TieredCache(MemoryCache(1024), REDIS_URL, prefix=prefix)
    b = TieredCache(MemoryCache(1024), REDIS_URL, prefix=prefix)
    try:
        await a.set("k", b"answer", 60)
        assert await b.get("k") == b"answer"  # from Redis, then held in b's memory
        assert b.bytes_held() == len(b"answer")
        assert await b.get("other") is None
    finally:
        await a.aclose()
        await b.aclose()
    down = TieredCache(MemoryCache(1024), f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        await down.set("k", b"v", 60)  # Redis down: kept in memory, no error
        assert await down.get("k") == b"v"
        assert await down.get("nothing") is None  # a miss, not an error
    finally:
        await down.aclose()
