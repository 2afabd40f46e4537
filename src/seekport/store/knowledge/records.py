"""What the knowledge stores hold and return, whichever database holds it: knowledge bases,
members, documents (with their ingestion status), chunks as written and as found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = 1
FTS_COLUMNS = ("title", "headings", "body")


@dataclass(frozen=True, slots=True)
class KnowledgeBaseRecord:
    id: str
    n: int
    tenant_id: str
    name: str
    description: str
    owner_id: str | None
    embedding_model: str
    settings: dict[str, Any]
    version: int
    created_at: str

    @property
    def fts(self) -> str:
        return f"kb_fts_{self.n}"


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    kb_id: str
    filename: str
    content_hash: str
    size: int
    title: str | None
    tags: list[str]
    status: str
    error: str | None
    progress: float
    chunks: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class MemberRecord:
    kb_id: str
    principal_id: str
    role: str
    groups: list[str]
    created_at: str


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """A chunk as ingestion writes it."""

    position: int
    text: str
    headings: list[str]
    tokens: int
    content_hash: str
    vector: npt.NDArray[np.float32]
    title_terms: str  # analysed terms, space-separated
    heading_terms: str
    body_terms: str


@dataclass(frozen=True, slots=True)
class ChunkHit:
    id: int
    document_id: str
    filename: str
    title: str | None
    position: int
    text: str
    headings: list[str]
    tags: list[str] = field(default_factory=list)
