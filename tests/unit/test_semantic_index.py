"""The semantic index's rules without a model: a stand-in embedding (the e5 model is used
end to end in tests/e2e/test_semantic_cache.py)."""

from __future__ import annotations

import numpy as np

from seekport.gateway.semantic_cache import SemanticIndex, exact_parts, split_question


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


async def test_nearest_question_within_its_context_only() -> None:
    table = {"a": _unit(1, 0, 0), "a again": _unit(0.99, 0.1, 0), "b": _unit(0, 1, 0)}

    async def embed(text: str) -> np.ndarray:
        return table[text]

    index = SemanticIndex(embed, threshold=0.97, max_entries=10, ttl_s=60)
    body = {"messages": [{"role": "user", "content": "a"}], "temperature": 0}
    first = await index.lookup("t1", "m", "chat", body, None)
    assert first is not None and first.key is None
    index.add(first, "key-a")
    near = {"messages": [{"role": "user", "content": "a again"}], "temperature": 0}
    hit = await index.lookup("t1", "m", "chat", near, None)
    assert hit is not None and hit.key == "key-a" and hit.similarity is not None
    assert (await index.lookup("t2", "m", "chat", near, None)).key is None  # type: ignore[union-attr]
    assert (await index.lookup("t1", "m", "chat", {**near, "seed": 1}, None)).key is None  # type: ignore[union-attr]
    far = {"messages": [{"role": "user", "content": "b"}], "temperature": 0}
    assert (await index.lookup("t1", "m", "chat", far, None)).key is None  # type: ignore[union-attr]


async def test_oldest_entries_go_beyond_the_bound() -> None:
    async def embed(text: str) -> np.ndarray:
        return _unit(1, 0)

    index = SemanticIndex(embed, threshold=0.9, max_entries=2, ttl_s=60)
    for i in range(3):
        body = {
            "messages": [{"role": "system", "content": str(i)}, {"role": "user", "content": "q"}]
        }
        found = await index.lookup("t", "m", "chat", body, None)
        assert found is not None
        index.add(found, f"k{i}")
    assert len(index) == 2


def test_only_a_trailing_user_text_is_a_question() -> None:
    assert split_question({"messages": [{"role": "assistant", "content": "x"}]}) is None
    rest, q = split_question({"messages": [{"role": "user", "content": "hi"}]}) or ({}, "")
    assert q == "hi" and rest["messages"][-1]["content"] == ""
    assert split_question({"prompt": "p"}) == ({"prompt": ""}, "p")
    assert exact_parts("ERR-4021 in 2024, v2") == {"err-4021", "2024", "v2"}


def test_the_config_and_a_keys_switch_decide_who_uses_it() -> None:
    from seekport.config.cache import CacheConfig
    from seekport.gateway.cache import ResponseCacher
    from seekport.store.kv.cache import cache_for
    from seekport.telemetry.metrics import Metrics

    async def embed(text: str) -> np.ndarray:
        return _unit(1, 0)

    index = SemanticIndex(embed, threshold=0.9, max_entries=10, ttl_s=60)
    off = ResponseCacher(cache_for(None, 1 << 20), CacheConfig(enabled=True), Metrics())
    off.semantic = index
    assert off.semantic_for("m") is None
    assert off.semantic_for("m", True) is index  # a key opts in
    on = ResponseCacher(
        cache_for(None, 1 << 20),
        CacheConfig(enabled=True, semantic=True, semantic_models=["m"]),
        Metrics(),
    )
    on.semantic = index
    assert on.semantic_for("m") is index
    assert on.semantic_for("other") is None
    assert on.semantic_for("m", False) is None  # a key opts out
