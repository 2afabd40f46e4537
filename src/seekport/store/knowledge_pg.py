"""The scale-out knowledge store: PostgreSQL with pgvector, behind the same calls as
``store/knowledge.py`` (its record types too), so the knowledge layer runs unchanged over either.

Tables mirror the SQLite ones (``kb``, ``kb_document``, ``kb_chunk``, ``kb_member``,
``kb_blob``, ``kb_meta``); every query names its knowledge base inside itself (isolation is
the query's shape, never a filter applied afterwards).

Lexical leg: each chunk holds a weighted ``tsvector`` of its analysed terms (title ``A``,
headings ``B``, body ``C``), written as a tsvector literal, never through ``to_tsvector``:
the 'simple' parser would split ``gb-2312`` into ``gb`` and ``-2312``. One GIN index over
all of them; a query ANDs it with the knowledge base. Ranking is BM25-like: per query term,
its idf in that knowledge base (``ln(1 + (N - df + 0.5) / (df + 0.5))``) times
``ts_rank`` of the chunk against that term alone (a saturating count of its occurrences,
each weighted by its field, divided by ``1 + log(length)``), summed over the terms.

Dense leg: ``embedding vector`` has no fixed dimension (each knowledge base has its model);
the first chunk of a knowledge base fixes ``kb.dim`` and creates its own partial HNSW index
on ``(embedding::vector(dim)) vector_ip_ops WHERE kb_id = '…'``. Vectors are L2-normalised,
so the inner product is the cosine. ``nearest`` orders by that expression, with the
knowledge base's id and dimension written into the statement so the planner can use the
partial index (a generic plan with ``kb_id = $1`` could not).

Calls are blocking (ingestion runs on worker threads, searches on a thread of the caller's);
connections come from a pool, one per call, each call one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from seekport.store.knowledge import (
    SCHEMA_VERSION,
    ChunkHit,
    ChunkRow,
    DocumentRecord,
    KnowledgeBaseRecord,
    MemberRecord,
)

Row = dict[str, Any]
Conn = psycopg.Connection[tuple[Any, ...]]

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
_MAX_POSITION = 16383  # tsvector positions stop there
_MAX_LEXEME_BYTES = 2047  # a longer word is refused by tsvector and tsquery input
_EF_SEARCH_MAX = 1000
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_UNFINISHED = ("queued", "parsing", "embedding")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _lexeme(term: str) -> str:
    """A term as a quoted tsvector/tsquery lexeme (taken whole: no parser splits it)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _indexable(term: str) -> bool:
    return 0 < len(term.encode()) <= _MAX_LEXEME_BYTES


def tsvector_literal(title: str, headings: str, body: str) -> str:
    """Space-separated analysed terms of three fields as one weighted tsvector literal:
    each occurrence keeps a position (repeats count in the rank) and its field's weight."""
    positions: dict[str, list[str]] = {}
    pos = 0
    for weight, terms in (("A", title), ("B", headings), ("C", body)):
        for t in terms.split():
            if not _indexable(t):
                continue
            pos = min(pos + 1, _MAX_POSITION)
            positions.setdefault(t, []).append(f"{pos}{weight}")
    return " ".join(f"{_lexeme(t)}:{','.join(p)}" for t, p in positions.items())


def match_terms(match: str) -> list[str]:
    """The terms of an FTS5 query as ``Retriever.match_query`` makes it (``"a" OR "b"``)."""
    return [m.replace('""', '"') for m in _QUOTED.findall(match)]


def vector_literal(v: npt.NDArray[np.float32]) -> str:
    # float32 → Python float is exact, and its repr reads back as the same float32
    return "[" + ",".join(map(repr, np.asarray(v, dtype=np.float32).ravel().tolist())) + "]"


def _from_send(data: bytes) -> npt.NDArray[np.float32]:
    """pgvector's binary form (``vector_send``): dim u16, unused u16, big-endian float32s."""
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def _hnsw_name(kb_n: int) -> sql.Identifier:
    return sql.Identifier(f"kb_chunk_vec_{int(kb_n)}")


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


class PgKnowledgeStore:
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

    def chunk_hashes(self, doc_id: str) -> dict[str, npt.NDArray[np.float32]]:
        """The document's current chunks' vectors by content hash (an unchanged chunk of a
        changed document is not embedded again)."""
        rows = self._all(
            "SELECT content_hash, vector_send(embedding) AS v FROM kb_chunk WHERE document_id = %s",
            (doc_id,),
        )
        return {r["content_hash"]: _from_send(r["v"]) for r in rows}

    def replace_chunks(
        self,
        kb: KnowledgeBaseRecord,
        doc_id: str,
        rows: Sequence[ChunkRow],
        title: str | None = None,
    ) -> None:
        """The document's chunks, all at once: the old ones go, the new ones come, in one
        transaction; the document is done and the knowledge base's version moves."""
        if rows:
            dims = {int(np.asarray(r.vector).size) for r in rows}
            if len(dims) != 1:
                raise ValueError(f"chunks of one document with vectors of sizes {sorted(dims)}")
            self._ensure_index(kb, dims.pop())
        with self._tx() as c:
            c.execute("DELETE FROM kb_chunk WHERE document_id = %s AND kb_id = %s", (doc_id, kb.id))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO kb_chunk (kb_id, document_id, position, text, headings, tokens,"
                    " content_hash, embedding, terms) VALUES (%s, %s, %s, %s, %s::text[], %s,"
                    " %s, %s::vector, %s::tsvector)",
                    [
                        (
                            kb.id,
                            doc_id,
                            r.position,
                            r.text,
                            list(r.headings),
                            r.tokens,
                            r.content_hash,
                            vector_literal(r.vector),
                            tsvector_literal(r.title_terms, r.heading_terms, r.body_terms),
                        )
                        for r in rows
                    ],
                )
            c.execute(
                "UPDATE kb_document SET status = 'done', error = NULL, progress = 1, "
                "chunks = %s, title = COALESCE(%s, title), updated_at = %s WHERE id = %s",
                (len(rows), title, _now(), doc_id),
            )
            c.execute("UPDATE kb SET version = version + 1 WHERE id = %s", (kb.id,))

    def _ensure_index(self, kb: KnowledgeBaseRecord, dim: int) -> None:
        """Fix the knowledge base's vector size and build its HNSW index, once. In a short
        transaction of its own, before any row is written: CREATE INDEX holds a SHARE lock on
        kb_chunk, which must not meet this transaction's own row locks."""
        if self._dims.get(kb.id) == dim:
            return
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (kb.id,))
            found = c.execute("SELECT dim FROM kb WHERE id = %s", (kb.id,)).fetchone()
            if found is None:
                raise ValueError(f"no knowledge base '{kb.id}'")
            if found[0] is not None and found[0] != dim:
                raise ValueError(
                    f"knowledge base '{kb.name}' holds vectors of {found[0]} dimensions, not {dim}"
                )
            if found[0] is None:
                c.execute("UPDATE kb SET dim = %s WHERE id = %s", (dim, kb.id))
                c.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON kb_chunk USING hnsw "
                        "((embedding::vector({})) vector_ip_ops) WHERE kb_id = {}"
                    ).format(_hnsw_name(kb.n), sql.Literal(dim), sql.Literal(kb.id))
                )
        self._dims[kb.id] = dim

    def delete_document(self, kb: KnowledgeBaseRecord, doc_id: str) -> bool:
        with self._tx() as c:
            c.execute("DELETE FROM kb_chunk WHERE document_id = %s AND kb_id = %s", (doc_id, kb.id))
            gone = c.execute(
                "DELETE FROM kb_document WHERE id = %s AND kb_id = %s", (doc_id, kb.id)
            ).rowcount
            c.execute("UPDATE kb SET version = version + 1 WHERE id = %s", (kb.id,))
        return gone > 0

    def chunk_texts(self, kb: KnowledgeBaseRecord) -> list[tuple[int, str, list[str], str]]:
        """Every chunk's ``(id, text, headings, its document's title)``."""
        rows = self._all(
            "SELECT c.id, c.text, c.headings, COALESCE(d.title, '') AS title FROM kb_chunk c "
            "JOIN kb_document d ON d.id = c.document_id WHERE c.kb_id = %s ORDER BY c.id",
            (kb.id,),
        )
        return [(int(r["id"]), r["text"], list(r["headings"]), r["title"]) for r in rows]

    def rewrite_terms(
        self,
        kb: KnowledgeBaseRecord,
        terms: Sequence[tuple[int, str, str, str]],
        settings: dict[str, Any],
    ) -> None:
        """Replace the full-text terms ``(chunk id, title, headings, body)`` in one
        transaction (chunks left out have none), with the knowledge base's new settings."""
        with self._tx() as c:
            c.execute("UPDATE kb_chunk SET terms = ''::tsvector WHERE kb_id = %s", (kb.id,))
            with c.cursor() as cur:
                cur.executemany(
                    "UPDATE kb_chunk SET terms = %s::tsvector WHERE id = %s AND kb_id = %s",
                    [(tsvector_literal(t, h, b), cid, kb.id) for cid, t, h, b in terms],
                )
            c.execute(
                "UPDATE kb SET settings = %s, version = version + 1 WHERE id = %s",
                (Jsonb(settings), kb.id),
            )

    def update_settings(self, kb_id: str, settings: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("UPDATE kb SET settings = %s WHERE id = %s", (Jsonb(settings), kb_id))

    # ---- search

    def lexical(
        self,
        kb: KnowledgeBaseRecord,
        match: str,
        weights: Sequence[float],
        limit: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """As the SQLite store's: ``match`` is an FTS5 query of quoted terms joined by OR."""
        return self.lexical_terms(kb, match_terms(match), weights, limit, documents)

    def lexical_terms(
        self,
        kb: KnowledgeBaseRecord,
        terms: Sequence[str],
        weights: Sequence[float],
        limit: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """``(chunk id, score)`` best first for chunks holding any of ``terms``; ``weights``:
        title, headings, body (only their ratios count). ``documents``: only chunks of these
        (inside the query)."""
        lexemes = list(dict.fromkeys(_lexeme(t) for t in terms if _indexable(t)))
        if not lexemes or (documents is not None and not documents) or limit <= 0:
            return []
        title, headings, body = (max(0.0, float(x)) for x in weights[:3])
        top = max(title, headings, body) or 1.0
        rank_weights = [body / top, body / top, headings / top, title / top]  # D C B A
        rows = self._all(
            "WITH q AS ("
            " SELECT tq, ln(1 + (n.n - d.df + 0.5) / (d.df + 0.5)) AS idf"
            " FROM unnest(%s::tsquery[]) AS tq,"
            " (SELECT count(*) AS n FROM kb_chunk WHERE kb_id = %s) AS n,"
            " LATERAL (SELECT count(*) AS df FROM kb_chunk"
            "  WHERE kb_id = %s AND terms @@ tq) AS d)"
            " SELECT c.id,"
            " (SELECT sum(q.idf * ts_rank(%s::real[], c.terms, q.tq, 1)) FROM q) AS s"
            " FROM kb_chunk c WHERE c.kb_id = %s AND c.terms @@ %s::tsquery"
            " AND (%s::text[] IS NULL OR c.document_id = ANY(%s::text[]))"
            " ORDER BY s DESC, c.id LIMIT %s",
            (
                lexemes,
                kb.id,
                kb.id,
                rank_weights,
                kb.id,
                " | ".join(lexemes),
                *(2 * [None if documents is None else list(documents)]),
                limit,
            ),
        )
        return [(int(r["id"]), float(r["s"])) for r in rows]

    def document_frequencies(self, kb: KnowledgeBaseRecord, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each term (terms no chunk holds are left out)."""
        wanted = [t for t in dict.fromkeys(terms) if _indexable(t)]
        if not wanted:
            return {}
        rows = self._all(
            "SELECT t.term, (SELECT count(*) FROM kb_chunk WHERE kb_id = %s AND terms @@ t.tq)"
            " AS df FROM unnest(%s::text[], %s::tsquery[]) AS t (term, tq)",
            (kb.id, wanted, [_lexeme(t) for t in wanted]),
        )
        return {r["term"]: int(r["df"]) for r in rows if r["df"]}

    def chunk_count(self, kb_id: str) -> int:
        row = self._one("SELECT count(*) AS n FROM kb_chunk WHERE kb_id = %s", (kb_id,))
        assert row is not None
        return int(row["n"])

    def nearest(
        self,
        kb: KnowledgeBaseRecord,
        vector: npt.NDArray[np.float32],
        limit: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """``(chunk id, inner product)`` best first, through the knowledge base's HNSW index
        (approximate); ``documents``: only chunks of these (inside the query)."""
        if limit <= 0 or (documents is not None and not documents):
            return []
        dim = self._dim(kb.id)
        if dim is None:
            return []  # no chunk yet
        if vector.size != dim:
            raise ValueError(f"a query vector of {vector.size} dimensions, the base has {dim}")
        expr = sql.SQL("embedding::vector({}) <#> %s::vector({})").format(
            sql.Literal(dim), sql.Literal(dim)
        )
        query = sql.SQL(
            "SELECT id, {} AS d FROM kb_chunk WHERE kb_id = {}"
            " AND (%s::text[] IS NULL OR document_id = ANY(%s::text[]))"
            " ORDER BY d LIMIT %s"
        ).format(expr, sql.Literal(kb.id))
        literal = vector_literal(vector)
        docs = None if documents is None else list(documents)
        with self._tx() as c:
            # a filter drops rows after the graph found them: scan on until enough are found
            c.execute(
                "SELECT set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.iterative_scan', 'strict_order', true)",
                (str(min(max(40, limit), _EF_SEARCH_MAX)),),
            )
            rows = c.execute(query, (literal, docs, docs, limit)).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def _dim(self, kb_id: str) -> int | None:
        dim = self._dims.get(kb_id)
        if dim is None:
            row = self._one("SELECT dim FROM kb WHERE id = %s", (kb_id,))
            if row is None or row["dim"] is None:
                return None
            dim = self._dims[kb_id] = int(row["dim"])
        return dim

    def vectors(
        self, kb_id: str
    ) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.float32]]:
        """Every chunk's id, document and vector, the vectors as one matrix (rows in id
        order)."""
        rows = self._all(
            "SELECT id, document_id, vector_send(embedding) AS v FROM kb_chunk "
            "WHERE kb_id = %s ORDER BY id",
            (kb_id,),
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), [], np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
        # each row: a 4-byte header, then its floats; the header takes one float's place
        flat = np.frombuffer(b"".join(r["v"] for r in rows), dtype=">f4")
        matrix = flat.reshape(len(rows), -1)[:, 1:].astype(np.float32)
        return ids, [r["document_id"] for r in rows], matrix

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkHit]:
        if not ids:
            return {}
        rows = self._all(
            "SELECT c.id, c.document_id, c.position, c.text, c.headings, d.filename, d.title,"
            " d.tags FROM kb_chunk c JOIN kb_document d ON d.id = c.document_id"
            " WHERE c.id = ANY(%s::bigint[])",
            ([int(i) for i in ids],),
        )
        return {
            int(r["id"]): ChunkHit(
                id=int(r["id"]),
                document_id=r["document_id"],
                position=r["position"],
                text=r["text"],
                headings=list(r["headings"]),
                filename=r["filename"],
                title=r["title"],
                tags=list(r["tags"]),
            )
            for r in rows
        }
