"""Hybrid search over one knowledge base: a lexical leg (FTS5's BM25 over jieba/stemmed terms,
per field), a dense leg (the embedder's query vector against every chunk's vector, exact), and
their fusion by reciprocal rank (RRF, weights per knowledge base). Every hit says why it ranked
where it did: its rank and score in each leg.

The dense matrix of a knowledge base is held in memory and reloaded when the store's version of
it moved (another worker ingested): an exact scan of 100k chunks × 384 floats is one matrix
product, a few milliseconds, and no approximate index can miss what it finds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from seekport.knowledge.lexical import Analyzer
from seekport.knowledge.protocols import Embedder
from seekport.store.knowledge import ChunkHit, KnowledgeBaseRecord, SqliteKnowledgeStore

Mode = Literal["hybrid", "bm25", "dense"]
RRF_K = 60
DEFAULT_FIELD_WEIGHTS = (2.0, 1.0, 1.0)  # title, headings, body


@dataclass(frozen=True, slots=True)
class Ranking:
    """Search settings of a knowledge base (its ``settings`` JSON, with these defaults)."""

    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    field_weights: tuple[float, float, float] = DEFAULT_FIELD_WEIGHTS
    depth: int = 100  # candidates each leg gives the fusion

    @classmethod
    def of(cls, kb: KnowledgeBaseRecord) -> Ranking:
        s = kb.settings
        return cls(
            lexical_weight=float(s.get("lexical_weight", 1.0)),
            dense_weight=float(s.get("dense_weight", 1.0)),
            field_weights=tuple(s.get("field_weights", DEFAULT_FIELD_WEIGHTS))[:3],
            depth=int(s.get("depth", 100)),
        )


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: ChunkHit
    score: float
    lexical_rank: int | None  # 1-based; None: this leg did not find it
    lexical_score: float | None
    dense_rank: int | None
    dense_score: float | None


@dataclass(slots=True)
class _Matrix:
    version: int
    ids: npt.NDArray[np.int64]
    documents: npt.NDArray[np.str_]
    vectors: npt.NDArray[np.float32]


class Retriever:
    def __init__(
        self, store: SqliteKnowledgeStore, embedder: Embedder | None, analyzer: Analyzer
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._analyzer = analyzer
        self._matrices: dict[str, _Matrix] = {}
        self._lock = threading.Lock()

    def match_query(self, query: str) -> str:
        """The FTS5 query of a text: any of its terms (each quoted, so codes stay whole)."""
        terms = dict.fromkeys(self._analyzer.terms(query))
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)

    def lexical(
        self,
        kb: KnowledgeBaseRecord,
        query: str,
        limit: int,
        ranking: Ranking | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        match = self.match_query(query)
        if not match:
            return []
        r = ranking or Ranking.of(kb)
        return self._store.lexical(kb, match, r.field_weights, limit, documents)

    def _matrix(self, kb: KnowledgeBaseRecord) -> _Matrix:
        version = self._store.kb_version(kb.id)
        with self._lock:
            m = self._matrices.get(kb.id)
            if m is None or m.version != version:
                ids, docs, vectors = self._store.vectors(kb.id)
                m = _Matrix(version or 0, ids, np.asarray(docs, dtype=np.str_), vectors)
                self._matrices[kb.id] = m
            return m

    def query_vectors(self, queries: Sequence[str]) -> npt.NDArray[np.float32]:
        if self._embedder is None:
            raise RuntimeError("no embedder: dense search is not available")
        return self._embedder.embed_texts(list(queries), "query")

    def dense(
        self,
        kb: KnowledgeBaseRecord,
        vector: npt.NDArray[np.float32],
        limit: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        m = self._matrix(kb)
        if not len(m.ids) or (documents is not None and not documents):
            return []
        scores = m.vectors @ vector.astype(np.float32, copy=False)
        if documents is not None:  # the others' rows never rank
            scores = np.where(np.isin(m.documents, list(documents)), scores, -np.inf)
            limit = min(limit, int(np.isfinite(scores).sum()))
            if not limit:
                return []
        k = min(limit, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(m.ids[i]), float(scores[i])) for i in top]

    def search(
        self,
        kb: KnowledgeBaseRecord,
        query: str,
        *,
        k: int = 10,
        mode: Mode = "hybrid",
        vector: npt.NDArray[np.float32] | None = None,
        ranking: Ranking | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; ``vector``: its embedding, if already made;
        ``documents``: only chunks of these documents (None: all)."""
        r = ranking or Ranking.of(kb)
        depth = max(r.depth, k)
        lex = self.lexical(kb, query, depth, r, documents) if mode != "dense" else []
        den: list[tuple[int, float]] = []
        if mode != "bm25":
            if vector is None:
                vector = self.query_vectors([query])[0]
            den = self.dense(kb, vector, depth, documents)
        fused: dict[int, float] = {}
        lex_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(lex)}
        den_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(den)}
        if mode == "bm25":
            fused = {cid: s for cid, s in lex}
        elif mode == "dense":
            fused = {cid: s for cid, s in den}
        else:
            for cid, (rank, _) in lex_rank.items():
                fused[cid] = fused.get(cid, 0.0) + r.lexical_weight / (RRF_K + rank)
            for cid, (rank, _) in den_rank.items():
                fused[cid] = fused.get(cid, 0.0) + r.dense_weight / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        chunks = self._store.chunks([cid for cid, _ in best])
        hits = []
        for cid, score in best:
            chunk = chunks.get(cid)
            if chunk is None:  # deleted since the leg found it
                continue
            lr, dr = lex_rank.get(cid), den_rank.get(cid)
            hits.append(
                Hit(
                    chunk=chunk,
                    score=score,
                    lexical_rank=lr[0] if lr else None,
                    lexical_score=lr[1] if lr else None,
                    dense_rank=dr[0] if dr else None,
                    dense_score=dr[1] if dr else None,
                )
            )
        return hits
