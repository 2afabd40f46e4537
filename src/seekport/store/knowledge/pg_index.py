"""The PostgreSQL knowledge store's index calls: its chunks' rows (written with their terms
and vectors; the terms rewritten when the analyzer changes), the searches of both legs, and
each knowledge base's vector index.

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
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from seekport.store.knowledge.records import ChunkHit, ChunkRow, KnowledgeBaseRecord

Row = dict[str, Any]
Conn = psycopg.Connection[tuple[Any, ...]]

_MAX_POSITION = 16383  # tsvector positions stop there
_MAX_LEXEME_BYTES = 2047  # a longer word is refused by tsvector and tsquery input
_EF_SEARCH_MAX = 1000
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


class _IndexCalls:
    """Mixed into PgKnowledgeStore, which provides the pooled transactions and the cache of
    each knowledge base's vector size."""

    _dims: dict[str, int]  # kb id → its vectors' size (fixed once known)

    def _tx(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _one(self, query: LiteralString | sql.Composed, args: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    def _all(self, query: LiteralString | sql.Composed, args: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

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
