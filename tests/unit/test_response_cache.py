"""The response cache's key and its in-process tier: the tenant comes first, the canonical
request ignores key order and what does not shape the answer; the LRU is bounded by bytes and
entries expire."""

from __future__ import annotations

from seekport.gateway.cache import cache_key, deterministic
from seekport.store.kv.cache import MemoryCache

BODY = {"messages": [{"role": "user", "content": "你好"}], "temperature": 0, "max_tokens": 9}


def test_the_key_names_the_tenant_model_endpoint_and_output_limit() -> None:
    k = cache_key("ten_a", "m", "chat", BODY, 9)
    assert k.startswith("ten_a:m:chat:") and k.endswith(":9")
    assert cache_key("ten_b", "m", "chat", BODY, 9) != k  # never across tenants
    assert cache_key("ten_a", "m", "completion", BODY, 9) != k
    assert cache_key("ten_a", "m", "chat", BODY, 10) != k


def test_the_canonical_request_ignores_order_and_what_does_not_shape_the_answer() -> None:
    k = cache_key("t", "m", "chat", BODY, 9)
    reordered = {"max_tokens": 9, "temperature": 0, "messages": BODY["messages"]}
    assert cache_key("t", "m", "chat", reordered, 9) == k
    extra = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u"}
    assert cache_key("t", "m", "chat", extra, 9) == k
    for changed in ({"temperature": 0.5}, {"tools": []}, {"seed": 1}, {"stop": ["x"]}):
        assert cache_key("t", "m", "chat", {**BODY, **changed}, 9) != k


def test_only_requests_for_one_answer_are_deterministic() -> None:
    assert deterministic(BODY)
    assert deterministic({**BODY, "temperature": 1, "seed": 3})
    assert not deterministic({**BODY, "temperature": 1})
    assert not deterministic({"messages": []})  # the default temperature samples
    assert not deterministic({**BODY, "n": 2})


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_memory_tier_is_an_lru_bounded_by_bytes_with_expiry() -> None:
    clock = Clock()
    cache = MemoryCache(max_bytes=10, clock=clock)
    await cache.set("a", b"1234", 60)
    await cache.set("b", b"5678", 60)
    assert await cache.get("a") == b"1234"  # a is now the most recently used
    await cache.set("c", b"90ab", 60)  # 12 bytes > 10: the least recently used (b) goes
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1234" and await cache.get("c") == b"90ab"
    assert cache.bytes_held() == 8
    await cache.set("huge", b"x" * 11, 60)  # larger than the whole tier: not kept
    assert await cache.get("huge") is None
    clock.now = 61
    assert await cache.get("a") is None and cache.bytes_held() == 4
