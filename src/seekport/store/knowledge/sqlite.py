"""The embedded knowledge store: one SQLite file (``data_dir/knowledge.db``, WAL).

Knowledge bases, their documents (with ingestion status) and chunks are plain tables; each
knowledge base has its own FTS5 table of the chunks' analysed terms (``kb_fts_<n>``), so a
search can only ever read the knowledge base it names: isolation by construction, not by a
filter applied afterwards. The terms are made by ``knowledge.lexical`` (jieba, stems) and
stored space-separated, so FTS5 only splits on spaces (``unicode61`` with ``-._`` as token
characters: codes stay whole) and ranks with its own BM25 over three fields (title, headings,
body; weights per query). Vectors are float32 blobs beside their chunk; the knowledge layer
searches them in memory and reloads a knowledge base's matrix when its ``version`` moved.

Calls are blocking (ingestion runs on worker threads, searches on a thread of the caller's);
one connection per thread.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from seekport.store.knowledge.records import (
    FTS_COLUMNS,
    SCHEMA_VERSION,
    ChunkRow,
    DocumentRecord,
    KnowledgeBaseRecord,
    MemberRecord,
)
from seekport.store.knowledge.sqlite_index import _VOCAB, _IndexCalls

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb (
    id TEXT PRIMARY KEY,
    n INTEGER NOT NULL UNIQUE,            -- names its FTS table
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_id TEXT,
    embedding_model TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',  -- chunking and ranking: JSON
    version INTEGER NOT NULL DEFAULT 0,   -- moves on every change of its chunks
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS kb_document (
    id TEXT PRIMARY KEY,
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    title TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,                 -- queued parsing embedding done failed
    error TEXT,
    progress REAL NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (kb_id, filename)
);
CREATE TABLE IF NOT EXISTS kb_chunk (
    id INTEGER PRIMARY KEY,
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    document_id TEXT NOT NULL REFERENCES kb_document(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    headings TEXT NOT NULL DEFAULT '[]',
    tokens INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kb_chunk_doc ON kb_chunk (document_id, position);
CREATE INDEX IF NOT EXISTS kb_chunk_kb ON kb_chunk (kb_id, id);
CREATE TABLE IF NOT EXISTS kb_member (
    kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
    principal_id TEXT NOT NULL,           -- a user id, or a key id for a key without a user
    role TEXT NOT NULL,                   -- owner editor viewer restricted guest
    groups TEXT NOT NULL DEFAULT '[]',    -- restricted: the document tags it may read
    created_at TEXT NOT NULL,
    PRIMARY KEY (kb_id, principal_id)
);
CREATE TABLE IF NOT EXISTS kb_blob (      -- uploaded bytes, until ingested (content-addressed)
    content_hash TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _kb(row: sqlite3.Row) -> KnowledgeBaseRecord:
    return KnowledgeBaseRecord(
        id=row["id"],
        n=row["n"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        description=row["description"],
        owner_id=row["owner_id"],
        embedding_model=row["embedding_model"],
        settings=json.loads(row["settings"]),
        version=row["version"],
        created_at=row["created_at"],
    )


def _member(row: sqlite3.Row) -> MemberRecord:
    return MemberRecord(
        kb_id=row["kb_id"],
        principal_id=row["principal_id"],
        role=row["role"],
        groups=json.loads(row["groups"]),
        created_at=row["created_at"],
    )


def _doc(row: sqlite3.Row) -> DocumentRecord:
    return DocumentRecord(
        id=row["id"],
        kb_id=row["kb_id"],
        filename=row["filename"],
        content_hash=row["content_hash"],
        size=row["size"],
        title=row["title"],
        tags=json.loads(row["tags"]),
        status=row["status"],
        error=row["error"],
        progress=row["progress"],
        chunks=row["chunks"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class SqliteKnowledgeStore(_IndexCalls):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        c = self._conn()
        c.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS); commits on its own
        c.execute(
            "INSERT OR IGNORE INTO kb_meta (key, value) VALUES ('schema', ?)",
            (str(SCHEMA_VERSION),),
        )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

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
        """Raises sqlite3.IntegrityError when the tenant has a knowledge base of that name."""
        kb_id = "kb_" + uuid.uuid4().hex[:24]
        with self._tx() as c:
            n = c.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM kb").fetchone()[0]
            c.execute(
                "INSERT INTO kb (id, n, tenant_id, name, description, owner_id, embedding_model,"
                " settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kb_id,
                    n,
                    tenant_id,
                    name,
                    description,
                    owner_id,
                    embedding_model,
                    json.dumps(settings or {}),
                    _now(),
                ),
            )
            c.execute(
                f"CREATE VIRTUAL TABLE kb_fts_{int(n)} USING fts5("
                f"{', '.join(FTS_COLUMNS)}, "
                "tokenize = \"unicode61 remove_diacritics 0 tokenchars '-._'\")"
            )
            c.execute(_VOCAB.format(n=int(n)))
        kb = self.get_kb(kb_id)
        assert kb is not None
        return kb

    def get_kb(self, kb_id: str) -> KnowledgeBaseRecord | None:
        row = self._conn().execute("SELECT * FROM kb WHERE id = ?", (kb_id,)).fetchone()
        return _kb(row) if row else None

    def find_kb(self, tenant_id: str, name: str) -> KnowledgeBaseRecord | None:
        row = (
            self._conn()
            .execute("SELECT * FROM kb WHERE tenant_id = ? AND name = ?", (tenant_id, name))
            .fetchone()
        )
        return _kb(row) if row else None

    def list_kbs(self, tenant_id: str | None) -> list[KnowledgeBaseRecord]:
        if tenant_id is None:
            rows = self._conn().execute("SELECT * FROM kb ORDER BY created_at").fetchall()
        else:
            rows = (
                self._conn()
                .execute("SELECT * FROM kb WHERE tenant_id = ? ORDER BY created_at", (tenant_id,))
                .fetchall()
            )
        return [_kb(r) for r in rows]

    def kb_version(self, kb_id: str) -> int | None:
        row = self._conn().execute("SELECT version FROM kb WHERE id = ?", (kb_id,)).fetchone()
        return None if row is None else int(row[0])

    def delete_kb(self, kb_id: str) -> bool:
        kb = self.get_kb(kb_id)
        if kb is None:
            return False
        with self._tx() as c:
            c.execute(f"DROP TABLE IF EXISTS {kb.fts}")
            c.execute("DELETE FROM kb WHERE id = ?", (kb_id,))
        return True

    # ---- members

    def set_member(
        self, kb_id: str, principal_id: str, role: str, groups: Sequence[str] = ()
    ) -> MemberRecord:
        with self._tx() as c:
            c.execute(
                "INSERT INTO kb_member (kb_id, principal_id, role, groups, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kb_id, principal_id) DO UPDATE SET "
                "role = excluded.role, groups = excluded.groups",
                (kb_id, principal_id, role, json.dumps(list(groups), ensure_ascii=False), _now()),
            )
        found = self.member(kb_id, principal_id)
        assert found is not None
        return found

    def member(self, kb_id: str, principal_id: str) -> MemberRecord | None:
        row = (
            self._conn()
            .execute(
                "SELECT * FROM kb_member WHERE kb_id = ? AND principal_id = ?",
                (kb_id, principal_id),
            )
            .fetchone()
        )
        return _member(row) if row else None

    def members(self, kb_id: str) -> list[MemberRecord]:
        rows = (
            self._conn()
            .execute("SELECT * FROM kb_member WHERE kb_id = ? ORDER BY created_at", (kb_id,))
            .fetchall()
        )
        return [_member(r) for r in rows]

    def memberships(self, principal_id: str) -> dict[str, MemberRecord]:
        rows = (
            self._conn()
            .execute("SELECT * FROM kb_member WHERE principal_id = ?", (principal_id,))
            .fetchall()
        )
        return {r["kb_id"]: _member(r) for r in rows}

    def remove_member(self, kb_id: str, principal_id: str) -> bool:
        with self._tx() as c:
            n = c.execute(
                "DELETE FROM kb_member WHERE kb_id = ? AND principal_id = ?",
                (kb_id, principal_id),
            ).rowcount
        return bool(n)

    # ---- uploaded bytes

    def put_blob(self, digest: str, data: bytes) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO kb_blob (content_hash, data) VALUES (?, ?)", (digest, data)
            )

    def blob(self, digest: str) -> bytes | None:
        row = (
            self._conn()
            .execute("SELECT data FROM kb_blob WHERE content_hash = ?", (digest,))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def drop_unused_blobs(self) -> int:
        """Bytes no document holds any more (kept while one does: a re-ingest reads them)."""
        with self._tx() as c:
            return c.execute(
                "DELETE FROM kb_blob WHERE content_hash NOT IN "
                "(SELECT content_hash FROM kb_document)"
            ).rowcount

    def unfinished(self) -> list[DocumentRecord]:
        """Documents whose ingestion has not ended (after a crash: to queue again)."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM kb_document WHERE status IN ('queued', 'parsing', 'embedding') "
                "ORDER BY updated_at"
            )
            .fetchall()
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
        with self._tx() as c:
            row = c.execute(
                "SELECT * FROM kb_document WHERE kb_id = ? AND filename = ?", (kb_id, filename)
            ).fetchone()
            if (
                row is not None
                and row["content_hash"] == content_hash
                and row["status"] != "failed"
            ):
                return _doc(row), False
            if row is None:
                doc_id = "doc_" + uuid.uuid4().hex[:24]
                c.execute(
                    "INSERT INTO kb_document (id, kb_id, filename, content_hash, size, tags, "
                    "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (doc_id, kb_id, filename, content_hash, size, json.dumps(list(tags)), now, now),
                )
            else:
                doc_id = row["id"]
                c.execute(
                    "UPDATE kb_document SET content_hash = ?, size = ?, tags = ?, "
                    "status = 'queued', error = NULL, progress = 0, updated_at = ? WHERE id = ?",
                    (content_hash, size, json.dumps(list(tags)), now, doc_id),
                )
            out = c.execute("SELECT * FROM kb_document WHERE id = ?", (doc_id,)).fetchone()
        return _doc(out), True

    def document_ids(
        self, kb_id: str, tags: Sequence[str] | None = None, filename: str | None = None
    ) -> list[str]:
        """The ids of a knowledge base's documents with any of ``tags`` (None: any tags) and,
        if given, that file name."""
        sql = "SELECT id FROM kb_document d WHERE kb_id = ?"
        args: list[Any] = [kb_id]
        if tags is not None:
            if not tags:
                return []
            marks = ",".join("?" * len(tags))  # placeholders only
            sql += f" AND EXISTS (SELECT 1 FROM json_each(d.tags) WHERE value IN ({marks}))"  # noqa: S608
            args += list(tags)
        if filename is not None:
            sql += " AND filename = ?"
            args.append(filename)
        return [r[0] for r in self._conn().execute(sql, args).fetchall()]

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        row = self._conn().execute("SELECT * FROM kb_document WHERE id = ?", (doc_id,)).fetchone()
        return _doc(row) if row else None

    def list_documents(self, kb_id: str) -> list[DocumentRecord]:
        rows = (
            self._conn()
            .execute("SELECT * FROM kb_document WHERE kb_id = ? ORDER BY created_at", (kb_id,))
            .fetchall()
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
                "UPDATE kb_document SET status = ?, error = ?, "
                "progress = COALESCE(?, progress), title = COALESCE(?, title), updated_at = ? "
                "WHERE id = ?",
                (status, error, progress, title, _now(), doc_id),
            )

    def replace_chunks(
        self,
        kb: KnowledgeBaseRecord,
        doc_id: str,
        rows: Sequence[ChunkRow],
        title: str | None = None,
    ) -> None:
        """The document's chunks, all at once: the old ones (and their index rows) go, the new
        ones come, in one transaction; the document is done and the knowledge base's version
        moves."""
        with self._tx() as c:
            self._drop_chunks(c, kb, doc_id)
            for r in rows:
                cur = c.execute(
                    "INSERT INTO kb_chunk (kb_id, document_id, position, text, headings, tokens,"
                    " content_hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        kb.id,
                        doc_id,
                        r.position,
                        r.text,
                        json.dumps(r.headings, ensure_ascii=False),
                        r.tokens,
                        r.content_hash,
                        np.ascontiguousarray(r.vector, dtype=np.float32).tobytes(),
                    ),
                )
                c.execute(
                    f"INSERT INTO {kb.fts} (rowid, title, headings, body) VALUES (?, ?, ?, ?)",  # noqa: S608
                    (cur.lastrowid, r.title_terms, r.heading_terms, r.body_terms),
                )
            c.execute(
                "UPDATE kb_document SET status = 'done', error = NULL, progress = 1, chunks = ?,"
                " title = COALESCE(?, title), updated_at = ? WHERE id = ?",
                (len(rows), title, _now(), doc_id),
            )
            c.execute("UPDATE kb SET version = version + 1 WHERE id = ?", (kb.id,))

    @staticmethod
    def _drop_chunks(c: sqlite3.Connection, kb: KnowledgeBaseRecord, doc_id: str) -> None:
        c.execute(
            f"DELETE FROM {kb.fts} WHERE rowid IN "  # noqa: S608 (kb_fts_<int>)
            "(SELECT id FROM kb_chunk WHERE document_id = ?)",
            (doc_id,),
        )
        c.execute("DELETE FROM kb_chunk WHERE document_id = ?", (doc_id,))

    def delete_document(self, kb: KnowledgeBaseRecord, doc_id: str) -> bool:
        with self._tx() as c:
            self._drop_chunks(c, kb, doc_id)
            gone = c.execute(
                "DELETE FROM kb_document WHERE id = ? AND kb_id = ?", (doc_id, kb.id)
            ).rowcount
            c.execute("UPDATE kb SET version = version + 1 WHERE id = ?", (kb.id,))
        return bool(gone)
