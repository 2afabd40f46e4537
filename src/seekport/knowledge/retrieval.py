"""Hybrid search over one knowledge base: a lexical leg (FTS5's BM25 over jieba/stemmed terms,
per field), a dense leg (the embedder's query vector against every chunk's vector, exact), and
their fusion: by reciprocal rank (RRF), or a convex sum of each leg's min-max scaled scores,
with weights per knowledge base. Every hit says why it ranked where it did: its rank and score
in each leg.

The dense matrix of a knowledge base is held in memory and reloaded when the store's version of
it moved (another worker ingested): an exact scan of 100k chunks × 384 floats is one matrix
product, a few milliseconds, and no approximate index can miss what it finds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from seekport.knowledge.lexical import Analyzer
from seekport.knowledge.protocols import Embedder
from seekport.store.knowledge import ChunkHit, KnowledgeBaseRecord

Mode = Literal["hybrid", "bm25", "dense"]
Fusion = Literal["rrf", "convex"]
RRF_K = 60
# A query word in more than this share of a base's chunks is left out of the lexical query
# (when the base has PRUNE_MIN_CHUNKS or more and a rarer word is left): its BM25 weight is
# small, yet FTS5 scores every row holding it. Measured on the dev splits: nDCG@10 within
# ±0.002, queries about twice as fast.
COMMON_SHARE = 0.2
PRUNE_MIN_CHUNKS = 1000
DEFAULT_FIELD_WEIGHTS = (3.0, 1.0, 1.0)  # title, headings, body
# Measured on the dev splits (docs/benchmarks.md): the convex sum of min-max scaled scores
# beat RRF (k = 60) on both sets (SciFact 0.734 vs 0.713, CMRC chunks 0.931 vs 0.916), at
# equal weights; RRF stays a knowledge base's choice (it needs no score scale at all).
DEFAULT_FUSION: Fusion = "convex"

if TYPE_CHECKING:
    from seekport.store.knowledge import KnowledgeStore


@dataclass(frozen=True, slots=True)
class Ranking:
    """Search settings of a knowledge base (its ``settings`` JSON, with these defaults)."""

    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    field_weights: tuple[float, float, float] = DEFAULT_FIELD_WEIGHTS
    depth: int = 100  # candidates each leg gives the fusion
    fusion: Fusion = DEFAULT_FUSION

    @classmethod
    def of(cls, kb: KnowledgeBaseRecord) -> Ranking:
        s = kb.settings
        fw = tuple(float(x) for x in s.get("field_weights", DEFAULT_FIELD_WEIGHTS))[:3]
        fusion = s.get("fusion", DEFAULT_FUSION)
        return cls(
            lexical_weight=float(s.get("lexical_weight", 1.0)),
            dense_weight=float(s.get("dense_weight", 1.0)),
            field_weights=(fw[0], fw[1], fw[2]),
            depth=int(s.get("depth", 100)),
            fusion="convex" if fusion == "convex" else "rrf",
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
        self, store: KnowledgeStore, embedder: Embedder | None, analyzer: Analyzer
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._analyzer = analyzer
        self._matrices: dict[str, _Matrix] = {}
        self._counts: dict[str, tuple[int, int]] = {}  # kb id → (version, chunks)
        self._lock = threading.Lock()

    def match_query(self, query: str, kb: KnowledgeBaseRecord | None = None) -> str:
        """The FTS5 query of a text: any of its terms (each quoted, so codes stay whole),
        without the words most of ``kb``'s chunks hold."""
        terms = list(dict.fromkeys(self._analyzer.terms(query)))
        if kb is not None and len(terms) > 1:
            terms = self._uncommon(kb, terms)
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)

    def _uncommon(self, kb: KnowledgeBaseRecord, terms: list[str]) -> list[str]:
        n = self._chunk_count(kb)
        if n < PRUNE_MIN_CHUNKS:
            return terms
        df = self._store.document_frequencies(kb, terms)
        kept = [t for t in terms if df.get(t, 0) <= COMMON_SHARE * n]
        return kept or sorted(terms, key=lambda t: df.get(t, 0))[:2]

    def _chunk_count(self, kb: KnowledgeBaseRecord) -> int:
        version = self._store.kb_version(kb.id) or 0
        with self._lock:
            known = self._counts.get(kb.id)
        if known is not None and known[0] == version:
            return known[1]
        n = self._store.chunk_count(kb.id)
        with self._lock:
            self._counts[kb.id] = (version, n)
        return n

    def lexical(
        self,
        kb: KnowledgeBaseRecord,
        query: str,
        limit: int,
        ranking: Ranking | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        match = self.match_query(query, kb)
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
        if documents is not None and not documents:
            return []
        nearest = getattr(self._store, "nearest", None)
        if nearest is not None:  # a store with its own vector index (pgvector's HNSW)
            found: list[tuple[int, float]] = nearest(kb, vector, limit, documents)
            return found
        m = self._matrix(kb)
        if not len(m.ids):
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
        elif r.fusion == "convex":
            for weight, leg in ((r.lexical_weight, lex), (r.dense_weight, den)):
                for cid, x in _min_max(leg).items():
                    fused[cid] = fused.get(cid, 0.0) + weight * x
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


def _min_max(leg: list[tuple[int, float]]) -> dict[int, float]:
    """A leg's scores scaled to 0..1 over its candidates (BM25 and cosine are not on one
    scale; their spread within one query is what the convex fusion weighs)."""
    if not leg:
        return {}
    lo = min(x for _, x in leg)
    hi = max(x for _, x in leg)
    span = hi - lo
    return {cid: (x - lo) / span if span > 0 else 1.0 for cid, x in leg}
