"""Admission under limits over the in-process limiter: a refusal by one scope gives back what
the scopes before it took; tokens reserved are settled with the real count."""

from __future__ import annotations

import pytest

from seekport.errors import RateLimitError
from seekport.gateway.limits import Admission, Terms, estimate_tokens
from seekport.store.kv import MemoryLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_refusal_by_the_tenant_costs_the_key_nothing() -> None:
    limiter = MemoryLimiter(Clock())
    admission = Admission(limiter)
    scopes = [
        Terms("key:k", "this API key", rpm=10, max_concurrent=5),
        Terms("tenant:t", "your tenant", rpm=1),
    ]
    first = await admission.admit(scopes, "r1", lambda: 1)
    assert first.headers["x-ratelimit-remaining-requests"] == "0"  # the tightest scope's
    with pytest.raises(RateLimitError) as info:
        await admission.admit(scopes, "r2", lambda: 1)
    assert "your tenant" in info.value.message
    key = await limiter.hit("rpm:key:k", limit=10, period_s=60, cost=0)
    assert key.remaining == 9  # r1's request only: r2's was given back
    assert await limiter.acquire_slot("cc:key:k", "probe", limit=2, ttl_s=60)  # r1 + probe


async def test_tokens_reserved_are_settled_with_the_real_count() -> None:
    limiter = MemoryLimiter(Clock())
    admission = Admission(limiter)
    scopes = [Terms("key:k", "this API key", tpm=1000)]
    ticket = await admission.admit(scopes, "r1", lambda: 600)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "400"
    with pytest.raises(RateLimitError) as info:
        await admission.admit(scopes, "r2", lambda: 600)
    assert "tokens per minute" in info.value.message
    await ticket.settle(100)  # it used 100: 500 go back
    again = await admission.admit(scopes, "r3", lambda: 600)
    assert again.headers["x-ratelimit-remaining-tokens"] == "300"
    await again.settle(900)  # it used more than it reserved: charged all the same
    d = await limiter.hit("tpm:key:k", limit=1000, period_s=60, cost=0)
    assert d.remaining == 0


async def test_a_call_larger_than_a_minute_reserves_the_whole_minute_not_more() -> None:
    admission = Admission(MemoryLimiter(Clock()))
    ticket = await admission.admit([Terms("key:k", "k", tpm=100)], "r", lambda: 10_000)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_estimate_is_a_quarter_of_the_bytes_plus_the_output_limit() -> None:
    assert estimate_tokens(400, 50) == 150
    assert estimate_tokens(401, None) == 101 + 256
