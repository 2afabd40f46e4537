"""The knowledge-base API's bodies (``/v1/knowledge``), so OpenAPI documents them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.\- ]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=64)]


class KnowledgeBaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique in the tenant; letters, digits, `_ . -` and spaces.")
    description: Annotated[str, Field(max_length=2000)] = ""
    chunk_tokens: Annotated[int, Field(ge=32, le=8192)] | None = Field(
        default=None, description="Tokens per chunk (default: knowledge.chunk_tokens)."
    )
    chunk_overlap: Annotated[float, Field(ge=0, le=0.5)] | None = Field(
        default=None, description="Share of a chunk repeated in the next (default 0.2)."
    )
    lexical_weight: Annotated[float, Field(ge=0, le=100)] = Field(
        default=1.0, description="Weight of the lexical (BM25) ranking in the fusion."
    )
    dense_weight: Annotated[float, Field(ge=0, le=100)] = Field(
        default=1.0, description="Weight of the dense (embedding) ranking in the fusion."
    )
    fusion: Literal["convex", "rrf"] = Field(
        default="convex",
        description="convex: the weighted sum of each leg's scores scaled to 0..1 (the "
        "default: best on the labelled sets measured); rrf: reciprocal rank fusion (k = 60).",
    )


class KnowledgeBase(BaseModel):
    id: str
    object: Literal["knowledge_base"] = "knowledge_base"
    name: str
    description: str
    embedding_model: str
    role: str = Field(description="The caller's role on it.")
    settings: dict[str, Any]
    created_at: str


class KnowledgeBaseList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KnowledgeBase]


class Document(BaseModel):
    id: str
    object: Literal["document"] = "document"
    knowledge_base: str
    filename: str
    size: int
    title: str | None
    tags: list[str]
    status: Literal["queued", "parsing", "embedding", "done", "failed"]
    error: str | None
    progress: float
    chunks: int
    created_at: str
    updated_at: str
    changed: bool | None = Field(
        default=None, description="Uploads only: false when the same bytes were there already."
    )


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]


class SearchFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[Tag] | None = Field(default=None, description="Documents with any of these tags.")
    filename: StrictStr | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    top_k: Annotated[int, Field(ge=1, le=100)] = 10
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    filter: SearchFilter = Field(default_factory=SearchFilter)


class SearchHit(BaseModel):
    id: int
    score: float = Field(description="The fused score (hybrid), or the leg's own score.")
    text: str
    document_id: str
    filename: str
    title: str | None
    position: int = Field(description="The chunk's place in its document, from 0.")
    headings: list[str]
    lexical_rank: int | None = Field(description="Rank in the BM25 leg; null: not found.")
    lexical_score: float | None
    dense_rank: int | None = Field(description="Rank in the embedding leg; null: not found.")
    dense_score: float | None = Field(description="Cosine similarity to the query.")


class SearchResult(BaseModel):
    object: Literal["list"] = "list"
    knowledge_base: str
    mode: str
    data: list[SearchHit]


class MemberSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] = Field(
        description="A user id (usr_…), or a key id for a key without a user."
    )
    role: Literal["owner", "editor", "viewer", "restricted", "guest"]
    groups: list[Tag] = Field(
        default_factory=list, description="restricted: the document tags it may read."
    )


class Member(BaseModel):
    principal_id: str
    role: str
    groups: list[str]
    created_at: str


class MemberList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Member]
