"""The ``cache:`` section: the exact response cache (off by default)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class CacheConfig(BaseModel):
    """An answer is reused for the same request (same tenant, model, messages and every
    parameter that shapes the output) within ``ttl_s``: from this process's memory, or from
    Redis when ``redis_url`` is set."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Cache answers at all.")
    models: list[str] = Field(
        default_factory=list, description="Only these served models (empty: every model)."
    )
    tenants: dict[str, bool] = Field(
        default_factory=dict,
        description="A tenant's own switch (by tenant id): true caches its calls to any model, "
        "false never; a key's own switch (`keys create --cache/--no-cache`) wins.",
    )
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = Field(
        default=3600.0, description="How long an answer is reused."
    )
    max_bytes: Annotated[int, Field(ge=1024, le=64 * 2**30)] = Field(
        default=64 * 2**20, description="Memory the in-process tier may hold (LRU beyond)."
    )
    max_entry_bytes: Annotated[int, Field(ge=256, le=64 * 2**20)] = Field(
        default=2**20, description="Larger answers are not cached."
    )
    deterministic_only: bool = Field(
        default=True,
        description="Only requests that ask for one answer: temperature 0, or a seed. Off: "
        "any request (a sampled answer is then replayed as it was).",
    )
    billing: Literal["cache_hit", "full"] = Field(
        default="cache_hit",
        description="What a cached answer's usage says: its prompt as cache-hit tokens (as "
        "DeepSeek bills its context cache), or as first served.",
    )
    semantic: bool = Field(
        default=False,
        description="Also reuse the answer to the nearest earlier question (same tenant, model, "
        "conversation and parameters; only the last user message differs) when their "
        "embeddings are at least `semantic_threshold` alike. Needs a local embedding model.",
    )
    semantic_models: list[str] = Field(
        default_factory=list,
        description="The semantic cache only for these models (empty: every cached model).",
    )
    semantic_threshold: Annotated[float, Field(ge=0.5, le=1.0)] = Field(
        default=0.97,
        description="Cosine similarity from which an earlier question counts as the same "
        "(docs/benchmarks.md: false hits against true hits on a labelled paraphrase set).",
    )
    semantic_max_entries: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=100_000, description="Questions the semantic index holds (oldest dropped)."
    )
