"""``seekport kb eval``: a labelled retrieval set through the real pipeline, scored per leg.

A set is a folder: ``corpus.jsonl`` (``{"id", "title", "text"}``), and per split
``queries.jsonl`` (``{"id", "text"}``) and ``qrels.tsv`` (``query-id doc-id score``, with a
header). Each passage becomes a document of a knowledge base (its title as the document's
title), chunked, embedded and indexed as any upload is; the knowledge base is kept (named by the
corpus' hash) so a second run only queries. Scores: nDCG@10 (linear gains, as BEIR's
pytrec_eval), recall@10 and recall@100, for the lexical leg alone, the dense leg alone and the
hybrid fusion; a chunk stands for its document (the best-ranked chunk of a document counts).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seekport.errors import InvalidRequestError
from seekport.knowledge.ingest import content_hash
from seekport.knowledge.parsing import ParsedDocument, Section
from seekport.knowledge.retrieval import Mode, Retriever
from seekport.knowledge.service import Actor, KnowledgeBases
from seekport.store.knowledge import KnowledgeBaseRecord

EVAL_TENANT = "ten_eval"
EVAL_ACTOR = Actor(EVAL_TENANT, "eval", superadmin=True)
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
INGEST_BATCH = 256

Log = Callable[[str], None]

if TYPE_CHECKING:
    from seekport.store.knowledge import KnowledgeStore


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    corpus: list[dict[str, str]]
    queries: list[dict[str, str]]
    qrels: dict[str, dict[str, int]]

    @classmethod
    def load(cls, folder: Path, split: str) -> Dataset:
        corpus_path = folder / "corpus.jsonl"
        split_dir = folder / split
        for p in (corpus_path, split_dir / "queries.jsonl", split_dir / "qrels.tsv"):
            if not p.is_file():
                raise InvalidRequestError(
                    f"{p}: missing (a set needs corpus.jsonl and "
                    f"{split}/queries.jsonl, {split}/qrels.tsv)"
                )
        corpus = _jsonl(corpus_path)
        queries = _jsonl(split_dir / "queries.jsonl")
        qrels: dict[str, dict[str, int]] = {}
        with (split_dir / "qrels.tsv").open(newline="", encoding="utf-8") as f:
            rows = csv.reader(f, delimiter="\t")
            next(rows, None)
            for row in rows:
                if len(row) >= 3 and int(row[2]) > 0:
                    qrels.setdefault(row[0], {})[row[1]] = int(row[2])
        queries = [q for q in queries if q["id"] in qrels]
        return cls(folder.name, corpus, queries, qrels)

    def corpus_hash(self) -> str:
        h = hashlib.sha256()
        for d in self.corpus:
            h.update(json.dumps(d, sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()[:16]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(rels)) / len(rels) if rels else 0.0


def ingest_dataset(ds: Dataset, bases: KnowledgeBases, log: Log) -> KnowledgeBaseRecord:
    """The set's knowledge base: made and filled once, found again by the corpus hash (its
    words made again if the analyzer changed since)."""
    store, ingestor = bases.store, bases.ingestor
    name = f"eval-{ds.name}-{ds.corpus_hash()}"
    kb = store.find_kb(EVAL_TENANT, name) or bases.create(EVAL_ACTOR, name)
    done = {d.filename for d in store.list_documents(kb.id) if d.status == "done"}
    todo = [d for d in ds.corpus if d["id"] not in done]
    if not todo:
        log(f"{name}: {len(done)} documents already ingested")
        if bases.refresh_terms(kb):
            log(f"{name}: full-text terms made again by the current analyzer")
        found = store.get_kb(kb.id)
        assert found is not None
        return found
    started = time.perf_counter()
    chunks = 0
    for start in range(0, len(todo), INGEST_BATCH):
        batch = todo[start : start + INGEST_BATCH]
        docs = []
        for d in batch:
            text = d.get("text", "")
            record, _ = store.put_document(kb.id, d["id"], content_hash(text), len(text.encode()))
            parsed = ParsedDocument(
                kind="text", title=d.get("title") or None, sections=(Section((), text),)
            )
            docs.append((record.id, parsed))
        chunks += ingestor.ingest(kb, docs)
        n = start + len(batch)
        rate = chunks / (time.perf_counter() - started)
        log(f"{name}: {n}/{len(todo)} documents, {chunks} chunks, {rate:.1f} chunks/s")
    return kb


def evaluate(
    ds: Dataset, store: KnowledgeStore, retriever: Retriever, kb: KnowledgeBaseRecord
) -> dict[str, dict[str, float]]:
    vectors = retriever.query_vectors([q["text"] for q in ds.queries])
    sums = {m: {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0} for m in MODES}
    for q, v in zip(ds.queries, vectors, strict=True):
        rels = ds.qrels[q["id"]]
        for mode in MODES:
            hits = retriever.search(kb, q["text"], k=100, mode=mode, vector=v)
            ranked = list(dict.fromkeys(h.chunk.filename for h in hits))
            s = sums[mode]
            s["ndcg@10"] += ndcg_at(ranked, rels, 10)
            s["recall@10"] += recall_at(ranked, rels, 10)
            s["recall@100"] += recall_at(ranked, rels, 100)
    n = max(len(ds.queries), 1)
    return {m: {k: round(v / n, 4) for k, v in s.items()} for m, s in sums.items()}
