"""The SQLite knowledge store's index calls: its full-text rows (rewritten when the analyzer
changes; document frequencies for pruning common words) and the searches of both legs
(BM25 over a knowledge base's FTS5 table; its chunks' vectors as one matrix)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from seekport.store.knowledge.records import ChunkHit, KnowledgeBaseRecord

# each FTS table's vocabulary: a term's document frequency, read by equality on the term
_VOCAB = "CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts_{n}_vocab USING fts5vocab(kb_fts_{n}, 'row')"


class _IndexCalls:
    """Mixed into SqliteKnowledgeStore, which provides the connection and transactions."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def chunk_hashes(self, doc_id: str) -> dict[str, npt.NDArray[np.float32]]:
        """The document's current chunks' vectors by content hash (an unchanged chunk of a
        changed document is not embedded again)."""
        rows = (
            self._conn()
            .execute("SELECT content_hash, vector FROM kb_chunk WHERE document_id = ?", (doc_id,))
            .fetchall()
        )
        return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}

    def chunk_texts(self, kb: KnowledgeBaseRecord) -> list[tuple[int, str, list[str], str]]:
        """Every chunk's ``(id, text, headings, its document's title)``."""
        rows = (
            self._conn()
            .execute(
                "SELECT c.id, c.text, c.headings, COALESCE(d.title, '') FROM kb_chunk c "
                "JOIN kb_document d ON d.id = c.document_id WHERE c.kb_id = ?",
                (kb.id,),
            )
            .fetchall()
        )
        return [(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def rewrite_terms(
        self,
        kb: KnowledgeBaseRecord,
        terms: Sequence[tuple[int, str, str, str]],
        settings: dict[str, Any],
    ) -> None:
        """Replace the full-text rows ``(chunk id, title, headings, body)`` in one
        transaction, with the knowledge base's new settings (the analyzer's version)."""
        with self._tx() as c:
            c.execute(f"DELETE FROM {kb.fts}")  # noqa: S608 (kb_fts_<int>)
            c.executemany(
                f"INSERT INTO {kb.fts} (rowid, title, headings, body) VALUES (?, ?, ?, ?)",  # noqa: S608
                terms,
            )
            c.execute(
                "UPDATE kb SET settings = ?, version = version + 1 WHERE id = ?",
                (json.dumps(settings), kb.id),
            )

    def update_settings(self, kb_id: str, settings: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("UPDATE kb SET settings = ? WHERE id = ?", (json.dumps(settings), kb_id))

    # ---- search

    def lexical(
        self,
        kb: KnowledgeBaseRecord,
        match: str,
        weights: Sequence[float],
        limit: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """``(chunk id, BM25 score)`` best first (FTS5's bm25 is negative: lower is better;
        returned negated, higher is better). ``documents``: only chunks of these (inside the
        query: a reader restricted to some documents never gets the others' rows)."""
        w = ", ".join(f"{float(x):g}" for x in weights)
        if documents is not None:
            if not documents:
                return []
            marks = ",".join("?" * len(documents))
            rows = (
                self._conn()
                .execute(
                    f"SELECT rowid, bm25({kb.fts}, {w}) AS s FROM {kb.fts} "  # noqa: S608
                    f"WHERE {kb.fts} MATCH ? AND rowid IN (SELECT id FROM kb_chunk "
                    f"WHERE document_id IN ({marks})) ORDER BY s LIMIT ?",
                    (match, *documents, limit),
                )
                .fetchall()
            )
            return [(int(r[0]), -float(r[1])) for r in rows]
        rows = (
            self._conn()
            .execute(
                f"SELECT rowid, bm25({kb.fts}, {w}) AS s "  # noqa: S608 (kb_fts_<int>, floats)
                f"FROM {kb.fts} WHERE {kb.fts} MATCH ? "
                "ORDER BY s LIMIT ?",
                (match, limit),
            )
            .fetchall()
        )
        return [(int(r[0]), -float(r[1])) for r in rows]

    def document_frequencies(self, kb: KnowledgeBaseRecord, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each term (terms no chunk holds are left out)."""
        if not terms:
            return {}
        c = self._conn()
        c.execute(_VOCAB.format(n=kb.n))  # a base made before the vocabulary existed
        marks = ",".join("?" * len(terms))
        rows = c.execute(
            f"SELECT term, doc FROM {kb.fts}_vocab WHERE term IN ({marks})",  # noqa: S608
            list(terms),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def chunk_count(self, kb_id: str) -> int:
        row = (
            self._conn()
            .execute("SELECT COUNT(*) FROM kb_chunk WHERE kb_id = ?", (kb_id,))
            .fetchone()
        )
        return int(row[0])

    def vectors(
        self, kb_id: str
    ) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.float32]]:
        """Every chunk's id, document and vector, the vectors as one matrix (rows in id
        order)."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, document_id, vector FROM kb_chunk WHERE kb_id = ? ORDER BY id",
                (kb_id,),
            )
            .fetchall()
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), [], np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        return ids, [r[1] for r in rows], matrix.reshape(len(rows), -1)

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkHit]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = (
            self._conn()
            .execute(
                "SELECT c.id, c.document_id, c.position, c.text, c.headings, d.filename, "  # noqa: S608 (placeholders)
                "d.title, d.tags FROM kb_chunk c JOIN kb_document d ON d.id = c.document_id "
                f"WHERE c.id IN ({marks})",
                list(ids),
            )
            .fetchall()
        )
        return {
            r[0]: ChunkHit(
                id=r[0],
                document_id=r[1],
                position=r[2],
                text=r[3],
                headings=json.loads(r[4]),
                filename=r[5],
                title=r[6],
                tags=json.loads(r[7]),
            )
            for r in rows
        }
