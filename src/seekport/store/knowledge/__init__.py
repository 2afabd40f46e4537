"""Knowledge-base persistence: the records (``records.py``) and the stores behind the same
calls: SQLite embedded (``sqlite.py``), PostgreSQL with pgvector to scale."""

from seekport.store.knowledge.records import (
    FTS_COLUMNS,
    SCHEMA_VERSION,
    ChunkHit,
    ChunkRow,
    DocumentRecord,
    KnowledgeBaseRecord,
    MemberRecord,
)
from seekport.store.knowledge.sqlite import SqliteKnowledgeStore

__all__ = [
    "FTS_COLUMNS",
    "SCHEMA_VERSION",
    "ChunkHit",
    "ChunkRow",
    "DocumentRecord",
    "KnowledgeBaseRecord",
    "MemberRecord",
    "SqliteKnowledgeStore",
]
