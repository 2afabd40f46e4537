"""Knowledge-base persistence: the records (``records.py``) and the stores behind the same
calls: SQLite embedded (``sqlite.py``), PostgreSQL with pgvector to scale (``pg.py``).
``KnowledgeStore`` (for annotations) is either."""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # psycopg loads only when PostgreSQL is configured
    from typing import TypeAlias

    from seekport.store.knowledge.pg import PgKnowledgeStore

    KnowledgeStore: TypeAlias = SqliteKnowledgeStore | PgKnowledgeStore

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
