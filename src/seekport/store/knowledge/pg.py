"""The scale-out knowledge store: PostgreSQL with pgvector, behind the same calls as the
SQLite store (``sqlite.py``; its record types too, ``records.py``), so the knowledge layer
runs unchanged over either.

Tables mirror the SQLite ones (``kb``, ``kb_document``, ``kb_chunk``, ``kb_member``,
``kb_blob``, ``kb_meta``); every query names its knowledge base inside itself (isolation is
the query's shape, never a filter applied afterwards). The chunks' terms and vectors, their
searches and each knowledge base's HNSW index: ``pg_index.py``.

Calls are blocking (ingestion runs on worker threads, searches on a thread of the caller's);
connections come from a pool, one per call, each call one transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from seekport.store.knowledge.pg_index import (
    Conn,
    Row,
    _hnsw_name,
    _IndexCalls,
    _now,
    match_terms,
    tsvector_literal,
    vector_literal,
)
from seekport.store.knowledge.records import (
    SCHEMA_VERSION,
    DocumentRecord,
    KnowledgeBaseRecord,
    MemberRecord,
)

__all__ = ["PgKnowledgeStore", "match_terms", "tsvector_literal", "vector_literal"]

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS kb (
    id TEXT PRIMARY KEY,
    n BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- names its HNSW index
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_id TEXT,
    embedding_model TEXT NOT NULL,
    settings JSONB NOT NULL DEFAULT '{}',          -- chunking and ranking
    version BIGINT NOT NULL DEFAULT 0,             -- moves on every change of its chunks
    dim INTEGER,                                   -- its vectors' size, once a chunk came
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS kb_document (
    id TEXT PRIMARY KEY,
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    title TEXT,
    tags TEXT[] NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,                          -- queued parsing embedding done failed
    error TEXT,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (kb_id, filename)
);
CREATE INDEX IF NOT EXISTS kb_document_hash ON kb_document (content_hash);
CREATE TABLE IF NOT EXISTS kb_chunk (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    document_id TEXT NOT NULL REFERENCES kb_document(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    headings TEXT[] NOT NULL DEFAULT '{}',
    tokens INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    embedding vector NOT NULL,
    terms tsvector NOT NULL                        -- title A, headings B, body C
);
CREATE INDEX IF NOT EXISTS kb_chunk_doc ON kb_chunk (document_id, position);
CREATE INDEX IF NOT EXISTS kb_chunk_kb ON kb_chunk (kb_id, id);
CREATE INDEX IF NOT EXISTS kb_chunk_terms ON kb_chunk USING gin (terms);
CREATE TABLE IF NOT EXISTS kb_member (
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    principal_id TEXT NOT NULL,
    role TEXT NOT NULL,
    groups TEXT[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kb_id, principal_id)
);
CREATE INDEX IF NOT EXISTS kb_member_principal ON kb_member (principal_id);
CREATE TABLE IF NOT EXISTS kb_blob (content_hash TEXT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SCHEMA_LOCK = 0x5EE4_0001  # serialises schema creation by several processes
_UNFINISHED = ("queued", "parsing", "embedding")


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _kb(row: Row) -> KnowledgeBaseRecord:
    return KnowledgeBaseRecord(
        id=row["id"],
        n=int(row["n"]),
        tenant_id=row["tenant_id"],
        name=row["name"],
        description=row["description"],
        owner_id=row["owner_id"],
        embedding_model=row["embedding_model"],
        settings=dict(row["settings"]),
        version=int(row["version"]),
        created_at=_iso(row["created_at"]),
    )


def _member(row: Row) -> MemberRecord:
    return MemberRecord(
        kb_id=row["kb_id"],
        principal_id=row["principal_id"],
        role=row["role"],
        groups=list(row["groups"]),
        created_at=_iso(row["created_at"]),
    )


def _doc(row: Row) -> DocumentRecord:
    return DocumentRecord(
        id=row["id"],
        kb_id=row["kb_id"],
        filename=row["filename"],
        content_hash=row["content_hash"],
        size=int(row["size"]),
        title=row["title"],
        tags=list(row["tags"]),
        status=row["status"],
        error=row["error"],
        progress=float(row["progress"]),
        chunks=int(row["chunks"]),
        created_at=_iso(row["created_at"]),
        updated_at=_iso(row["updated_at"]),
    )


class PgKnowledgeStore(_IndexCalls):
    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 8) -> None:
        """``conninfo``: a libpq connection string or URL. Creates the schema if missing."""
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, open=True, name="seekport-kb"
        )
        self._dims: dict[str, int] = {}  # kb id → its vectors' size (fixed once known)
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            c.execute(_SCHEMA)
            c.execute(
                "INSERT INTO kb_meta (key, value) VALUES ('schema', %s) ON CONFLICT DO NOTHING",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One pooled connection, one transaction: committed on success, else rolled back."""
        with self._pool.connection() as c:
            yield c

    def _one(self, query: LiteralString | sql.Composed, args: Sequence[Any] = ()) -> Row | None:
        with self._tx() as c, c.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, args).fetchone()

    def _all(self, query: LiteralString | sql.Composed, args: Sequence[Any] = ()) -> list[Row]:
        with self._tx() as c, c.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, args).fetchall()

    def close(self) -> None:
        self._pool.close()

    # ---- knowledge bases

    def create_kb(
        self,
        tenant_id: str,
        name: str,
        embedding_model: str,
        *,
        description: str = "",
        owner_id: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> KnowledgeBaseRecord:
        """Raises psycopg.errors.UniqueViolation when the tenant has a knowledge base of that
        name."""
        row = self._one(
            "INSERT INTO kb (id, tenant_id, name, description, owner_id, embedding_model,"
            " settings, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (
                "kb_" + uuid.uuid4().hex[:24],
                tenant_id,
                name,
                description,
                owner_id,
                embedding_model,
                Jsonb(settings or {}),
                _now(),
            ),
        )
        assert row is not None
        return _kb(row)

    def get_kb(self, kb_id: str) -> KnowledgeBaseRecord | None:
        row = self._one("SELECT * FROM kb WHERE id = %s", (kb_id,))
        return _kb(row) if row else None

    def find_kb(self, tenant_id: str, name: str) -> KnowledgeBaseRecord | None:
        row = self._one("SELECT * FROM kb WHERE tenant_id = %s AND name = %s", (tenant_id, name))
        return _kb(row) if row else None

    def list_kbs(self, tenant_id: str | None) -> list[KnowledgeBaseRecord]:
        if tenant_id is None:
            rows = self._all("SELECT * FROM kb ORDER BY created_at, n")
        else:
            rows = self._all(
                "SELECT * FROM kb WHERE tenant_id = %s ORDER BY created_at, n", (tenant_id,)
            )
        return [_kb(r) for r in rows]

    def kb_version(self, kb_id: str) -> int | None:
        row = self._one("SELECT version FROM kb WHERE id = %s", (kb_id,))
        return None if row is None else int(row["version"])

    def delete_kb(self, kb_id: str) -> bool:
        row = self._one("DELETE FROM kb WHERE id = %s RETURNING n", (kb_id,))
        if row is None:
            return False
        with self._tx() as c:  # its own transaction: DROP INDEX locks the whole table
            c.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(_hnsw_name(row["n"])))
        self._dims.pop(kb_id, None)
        return True

    # ---- members

    def set_member(
        self, kb_id: str, principal_id: str, role: str, groups: Sequence[str] = ()
    ) -> MemberRecord:
        row = self._one(
            "INSERT INTO kb_member (kb_id, principal_id, role, groups, created_at) "
            "VALUES (%s, %s, %s, %s::text[], %s) ON CONFLICT (kb_id, principal_id) DO UPDATE "
            "SET role = excluded.role, groups = excluded.groups RETURNING *",
            (kb_id, principal_id, role, list(groups), _now()),
        )
        assert row is not None
        return _member(row)

    def member(self, kb_id: str, principal_id: str) -> MemberRecord | None:
        row = self._one(
            "SELECT * FROM kb_member WHERE kb_id = %s AND principal_id = %s",
            (kb_id, principal_id),
        )
        return _member(row) if row else None

    def members(self, kb_id: str) -> list[MemberRecord]:
        rows = self._all(
            "SELECT * FROM kb_member WHERE kb_id = %s ORDER BY created_at, principal_id", (kb_id,)
        )
        return [_member(r) for r in rows]

    def memberships(self, principal_id: str) -> dict[str, MemberRecord]:
        rows = self._all("SELECT * FROM kb_member WHERE principal_id = %s", (principal_id,))
        return {r["kb_id"]: _member(r) for r in rows}

    def remove_member(self, kb_id: str, principal_id: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM kb_member WHERE kb_id = %s AND principal_id = %s",
                (kb_id, principal_id),
            )
            return cur.rowcount > 0

    # ---- uploaded bytes

    def put_blob(self, digest: str, data: bytes) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO kb_blob (content_hash, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (digest, data),
            )

    def blob(self, digest: str) -> bytes | None:
        row = self._one("SELECT data FROM kb_blob WHERE content_hash = %s", (digest,))
        return None if row is None else bytes(row["data"])

    def drop_unused_blobs(self) -> int:
        """Bytes no document holds any more (kept while one does: a re-ingest reads them)."""
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM kb_blob b WHERE NOT EXISTS "
                "(SELECT 1 FROM kb_document d WHERE d.content_hash = b.content_hash)"
            )
            return cur.rowcount

    def unfinished(self) -> list[DocumentRecord]:
        """Documents whose ingestion has not ended (after a crash: to queue again)."""
        rows = self._all(
            "SELECT * FROM kb_document WHERE status = ANY(%s::text[]) ORDER BY updated_at, id",
            (list(_UNFINISHED),),
        )
        return [_doc(r) for r in rows]

    # ---- documents

    def put_document(
        self,
        kb_id: str,
        filename: str,
        content_hash: str,
        size: int,
        tags: Sequence[str] = (),
    ) -> tuple[DocumentRecord, bool]:
        """Register a document (queued), or find it unchanged: ``(record, changed)``. A file
        of the same name with other content is queued again (its chunks are replaced when
        the new version is ingested)."""
        now = _now()
        with self._tx() as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO kb_document (id, kb_id, filename, content_hash, size, tags, status,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s::text[], 'queued', %s,"
                " %s) ON CONFLICT (kb_id, filename) DO NOTHING RETURNING *",
                (
                    "doc_" + uuid.uuid4().hex[:24],
                    kb_id,
                    filename,
                    content_hash,
                    size,
                    list(tags),
                    now,
                    now,
                ),
            ).fetchone()
            if row is not None:
                return _doc(row), True
            row = cur.execute(
                "SELECT * FROM kb_document WHERE kb_id = %s AND filename = %s FOR UPDATE",
                (kb_id, filename),
            ).fetchone()
            assert row is not None  # the conflict's row: a document is never renamed
            if row["content_hash"] == content_hash and row["status"] != "failed":
                return _doc(row), False
            row = cur.execute(
                "UPDATE kb_document SET content_hash = %s, size = %s, tags = %s::text[], "
                "status = 'queued', error = NULL, progress = 0, updated_at = %s WHERE id = %s "
                "RETURNING *",
                (content_hash, size, list(tags), now, row["id"]),
            ).fetchone()
            assert row is not None
            return _doc(row), True

    def document_ids(
        self, kb_id: str, tags: Sequence[str] | None = None, filename: str | None = None
    ) -> list[str]:
        """The ids of a knowledge base's documents with any of ``tags`` (None: any tags) and,
        if given, that file name."""
        if tags is not None and not tags:
            return []
        rows = self._all(
            "SELECT id FROM kb_document WHERE kb_id = %s"
            " AND (%s::text[] IS NULL OR tags && %s::text[])"
            " AND (%s::text IS NULL OR filename = %s)",
            (kb_id, *(2 * [None if tags is None else list(tags)]), filename, filename),
        )
        return [r["id"] for r in rows]

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        row = self._one("SELECT * FROM kb_document WHERE id = %s", (doc_id,))
        return _doc(row) if row else None

    def list_documents(self, kb_id: str) -> list[DocumentRecord]:
        rows = self._all(
            "SELECT * FROM kb_document WHERE kb_id = %s ORDER BY created_at, id", (kb_id,)
        )
        return [_doc(r) for r in rows]

    def set_status(
        self,
        doc_id: str,
        status: str,
        *,
        error: str | None = None,
        progress: float | None = None,
        title: str | None = None,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE kb_document SET status = %s, error = %s, "
                "progress = COALESCE(%s, progress), title = COALESCE(%s, title), "
                "updated_at = %s WHERE id = %s",
                (status, error, progress, title, _now(), doc_id),
            )

    def delete_document(self, kb: KnowledgeBaseRecord, doc_id: str) -> bool:
        with self._tx() as c:
            c.execute("DELETE FROM kb_chunk WHERE document_id = %s AND kb_id = %s", (doc_id, kb.id))
            gone = c.execute(
                "DELETE FROM kb_document WHERE id = %s AND kb_id = %s", (doc_id, kb.id)
            ).rowcount
            c.execute("UPDATE kb SET version = version + 1 WHERE id = %s", (kb.id,))
        return gone > 0
