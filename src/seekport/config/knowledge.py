"""The ``knowledge:`` section: knowledge bases (documents, chunks, hybrid search)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator


class KnowledgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL with the pgvector extension for knowledge bases (libpq URL, "
        "e.g. postgresql://127.0.0.1:5432/kb), shared by replicas; unset: SQLite in "
        "data_dir/knowledge.db.",
    )
    embedding_model: str | None = Field(
        default=None,
        description="The embedding model (a `models[]` entry of kind embedding) new knowledge "
        "bases use. Default: the first embedding model listed.",
    )
    chunk_tokens: Annotated[int, Field(ge=32, le=8192)] = Field(
        default=512,
        description="Tokens per chunk (the embedder's tokens; at most what it takes at once).",
    )
    chunk_overlap: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.2, description="Share of a chunk repeated at the start of the next."
    )
    max_upload_bytes: Annotated[int, Field(ge=1024, le=1 << 31)] = Field(
        default=50 << 20, description="Largest document accepted for a knowledge base."
    )
    words: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=100_000,
        description="Your own words (names, products, codes) the Chinese word splitter keeps "
        "whole, e.g. [星澜智算平台]. A change rewrites every knowledge base's full-text words "
        "at the next start (no re-embedding).",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("knowledge.database_url must be a postgresql:// URL")
        return v
