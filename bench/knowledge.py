"""Knowledge-base benchmark (issue 17): retrieval quality on labelled sets, ingestion speed and
where its time goes, and query latency and memory at 10k and 100k chunks.

Method
------
* Quality: for each ``--dataset`` folder (``corpus.jsonl``, ``<split>/queries.jsonl``,
  ``<split>/qrels.tsv``; BEIR's SciFact converted to it, say), the passages are ingested
  through the real pipeline (chunking, the bundled e5 embedder, the full-text index) into a
  store under ``--data-dir`` (kept: a second run only queries), then every query of the split
  is searched in three modes; nDCG@10, recall@10, recall@100 (as ``seekport kb eval``).
* Ingestion: ``--ingest N`` generated documents of mixed Chinese and English prose (about
  1,500 characters each, Markdown with headings) through parse → chunk → embed → index, each
  stage timed on its own; chunks/s end to end and each stage's share.
* Latency: a store of 10k (and 100k) chunks of generated text (words drawn with Zipf's
  frequencies from 40,000 made-up Chinese and English words, about 40 words a chunk) with
  random unit vectors (the index and the matrix are what is measured; the text goes through
  the real analyzer), then 300 queries of 2–6 words from the same distribution per mode,
  timed from the call to the hits (the query's embedding is made beforehand: excluded, as the
  target says); p50 and p99, and the process's RSS after.
* Embedder: ``bench/embedder.py`` measures the embedder alone (passages/s, queries/s).

Run: ``.venv/bin/python bench/knowledge.py [--dataset DIR ...] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gateway_overhead import command_line, machine, revision, write_section  # noqa: E402

from seekport.config import load_settings  # noqa: E402
from seekport.knowledge.chunking import chunk_document  # noqa: E402
from seekport.knowledge.evaluation import Dataset, evaluate, ingest_dataset  # noqa: E402
from seekport.knowledge.ingest import content_hash  # noqa: E402
from seekport.knowledge.lexical import Analyzer  # noqa: E402
from seekport.knowledge.parsing import parse_document  # noqa: E402
from seekport.knowledge.retrieval import Retriever  # noqa: E402
from seekport.knowledge.service import Actor  # noqa: E402
from seekport.store.knowledge import ChunkRow, SqliteKnowledgeStore  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- knowledge:start -->", "<!-- knowledge:end -->"
_ZH = """
模型 推理 部署 服务器 显存 批处理 吞吐 延迟 上海 北京 研究 大学 数据 安全 权限 知识库 检索
向量 文档 员工 手册 假期 报销 合同 客户 订单 价格 市场 产品 质量 训练 微调 量化 缓存 日志
审计 租户 网关 接口 错误
"""
_EN = """
model inference deploy server memory batch throughput latency research university data
security permission knowledge retrieval vector document employee handbook leave expense
contract customer order price market product quality training cache audit tenant gateway
error protein cell gene study patient effect
"""
ZH = _ZH.split()
EN = _EN.split()


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(ZH) for _ in range(rng.randint(6, 14))) + "。"
    words = [rng.choice(EN) for _ in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


class Zipf:
    """Words with Zipf's frequencies (s = 1.1) over a vocabulary of 20,000 made-up Chinese
    words (2–3 common characters) and 20,000 made-up English ones: text whose word counts
    look like a real corpus's, so the index does what it does on real text."""

    CHARS = (
        "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
        "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
        "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
        "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
        "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
        "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
        "几九区强放决西被干做必战先回则任取据处理府研"
    )

    def __init__(self, seed: int, size: int = 20_000) -> None:
        rng = random.Random(seed)
        zh = {
            "".join(rng.choice(self.CHARS) for _ in range(rng.randint(2, 3))) for _ in range(size)
        }
        letters = "abcdefghiklmnoprstuvwy"
        en = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(size)}
        self.zh, self.en = sorted(zh), sorted(en)
        rng.shuffle(self.zh)
        rng.shuffle(self.en)
        self.weights_zh = [1 / (r + 1) ** 1.1 for r in range(len(self.zh))]
        self.weights_en = [1 / (r + 1) ** 1.1 for r in range(len(self.en))]
        self.rng = rng

    def sentence(self) -> str:
        if self.rng.random() < 0.5:
            words = self.rng.choices(self.zh, self.weights_zh, k=self.rng.randint(5, 12))
            return "".join(words) + "。"
        words = self.rng.choices(self.en, self.weights_en, k=self.rng.randint(8, 16))
        return " ".join(words).capitalize() + "."

    def query(self) -> str:
        k = self.rng.randint(2, 6)
        if self.rng.random() < 0.5:
            return "".join(self.rng.choices(self.zh, self.weights_zh, k=k))
        return " ".join(self.rng.choices(self.en, self.weights_en, k=k))


def _document(rng: random.Random, i: int) -> str:
    parts = [f"# Report {i}"]
    for h in range(3):
        parts.append(f"## Section {h} {rng.choice(ZH)}")
        parts.append(" ".join(_sentence(rng) for _ in range(rng.randint(4, 8))))
    return "\n\n".join(parts) + "\n"


def _embedder(settings: Any) -> Any:
    from seekport.api.app import build_knowledge

    parts = build_knowledge(settings)
    assert parts is not None, "the config has no local embedding model"
    return parts


def quality(datasets: list[Path], split: str, settings: Any) -> list[str]:
    parts = _embedder(settings)
    rows = []
    for folder in datasets:
        ds = Dataset.load(folder, split)
        kb = ingest_dataset(ds, parts.bases, lambda line: print(line, file=sys.stderr))
        scores = evaluate(ds, parts.store, parts.retriever, kb)
        for mode, s in scores.items():
            rows.append(
                f"| {folder.name} | {split} | {len(ds.queries)} | {mode} | {s['ndcg@10']:.3f} "
                f"| {s['recall@10']:.3f} | {s['recall@100']:.3f} |"
            )
        print(folder.name, scores, file=sys.stderr)
    return rows


def ingestion(n: int, settings: Any) -> tuple[float, dict[str, float], int, float]:
    parts = _embedder(settings)
    kb = parts.bases.create(Actor("ten_bench", "bench", superadmin=True), f"ingest-{time.time()}")
    emb, analyzer = parts.embedder, parts.ingestor.analyzer
    rng = random.Random(7)
    texts = [_document(rng, i).encode() for i in range(n)]
    emb.embed_texts(["warm up"], "passage")
    spent = dict.fromkeys(("parse", "chunk", "embed", "index"), 0.0)
    chunks_total = tokens_total = 0
    for i, data in enumerate(texts):
        t0 = time.perf_counter()
        parsed = parse_document(f"doc{i}.md", data)
        t1 = time.perf_counter()
        chunks = chunk_document(parsed, emb.token_ids, size=500, overlap=0.2)
        t2 = time.perf_counter()
        title = (parsed.title or "") + "\n"
        vectors = emb.embed_texts([title + c.text for c in chunks], "passage")
        t3 = time.perf_counter()
        doc, _ = parts.store.put_document(kb.id, f"doc{i}.md", content_hash(data), len(data))
        title_terms = analyzer.document(parsed.title or "")
        rows = [
            ChunkRow(
                c.position,
                c.text,
                list(c.headings),
                c.tokens,
                content_hash(c.text),
                v,
                title_terms,
                analyzer.document(" ".join(c.headings)),
                analyzer.document(c.text),
            )
            for c, v in zip(chunks, vectors, strict=True)
        ]
        parts.store.replace_chunks(kb, doc.id, rows, parsed.title)
        t4 = time.perf_counter()
        for k, dt_ in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[k] += dt_
        chunks_total += len(chunks)
        tokens_total += sum(c.tokens for c in chunks)
    total = sum(spent.values())
    shares = {k: v / total for k, v in spent.items()}
    return chunks_total / total, shares, chunks_total, tokens_total / max(chunks_total, 1)


def latency(n: int, queries: int = 300) -> dict[str, Any]:
    words = Zipf(n)
    tmp = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    store = SqliteKnowledgeStore(tmp / "knowledge.db")
    analyzer = Analyzer()
    kb = store.create_kb("ten_bench", f"latency-{n}", "random")
    per_doc = 20
    nrng = np.random.default_rng(n)
    built = time.perf_counter()
    for d in range(n // per_doc):
        doc, _ = store.put_document(kb.id, f"d{d}.txt", f"h{d}", 1)
        vecs = nrng.standard_normal((per_doc, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        rows = []
        for j in range(per_doc):
            text = " ".join(words.sentence() for _ in range(4))
            rows.append(
                ChunkRow(j, text, [], 100, f"{d}-{j}", vecs[j], "", "", analyzer.document(text))
            )
        store.replace_chunks(kb, doc.id, rows)
    built = time.perf_counter() - built
    found = store.get_kb(kb.id)
    assert found is not None
    retriever = Retriever(store, None, analyzer)
    retriever.dense(found, nrng.standard_normal(384).astype(np.float32), 10)  # loads the matrix
    out: dict[str, Any] = {"build_s": built}
    for mode in ("bm25", "dense", "hybrid"):
        times = []
        for _ in range(queries):
            q = words.query()
            v = nrng.standard_normal(384).astype(np.float32)
            v /= np.linalg.norm(v)
            t = time.perf_counter()
            retriever.search(found, q, k=10, mode=mode, vector=v)
            times.append((time.perf_counter() - t) * 1000)
        out[mode] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["db_mb"] = sum(p.stat().st_size for p in tmp.iterdir()) / 2**20
    return out


def render(
    quality_rows: list[str],
    ingest: tuple[float, dict[str, float], int, float] | None,
    lat: dict[int, dict[str, Any]],
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "## Knowledge bases: retrieval quality, ingestion, query latency",
        "",
        f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
        f"Command: `{command_line()}`. Method: the docstring of `bench/knowledge.py`.",
        "",
    ]
    if quality_rows:
        lines += [
            "Quality (the bundled multilingual-e5-small in ONNX int8; default ranking):",
            "",
            "| set | split | queries | mode | nDCG@10 | recall@10 | recall@100 |",
            "|---|---|--:|---|--:|--:|--:|",
            *quality_rows,
            "",
        ]
    if ingest is not None:
        rate, share, n, mean = ingest
        lines += [
            f"Ingestion: {rate:.1f} chunks/s end to end ({n} chunks, {mean:.0f} tokens on "
            "average: each document's sections are its own chunks); time spent: "
            + ", ".join(f"{k} {v * 100:.1f} %" for k, v in share.items())
            + ".",
            "",
        ]
    if lat:
        lines += [
            "Query latency (query embedding excluded), ms, p50 / p99:",
            "",
            "| chunks | bm25 | dense | hybrid | RSS after, MB | store on disk, MB |",
            "|--:|--:|--:|--:|--:|--:|",
        ]
        for n, r in lat.items():
            cells = " | ".join(
                f"{r[m][0]:.1f} / {r[m][1]:.1f}" for m in ("bm25", "dense", "hybrid")
            )
            lines.append(f"| {n:,} | {cells} | {r['rss_mb']:.0f} | {r['db_mb']:.0f} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", type=Path, action="append", default=[])
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "kb-bench")
    parser.add_argument("--ingest", type=int, default=40, help="generated documents (0: skip)")
    parser.add_argument("--sizes", default="10000,100000", help="latency store sizes")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args()
    settings = load_settings(overrides={"data_dir": args.data_dir})
    rows = quality(args.dataset, args.split, settings) if args.dataset else []
    ingest = ingestion(args.ingest, settings) if args.ingest else None
    lat = {int(n): latency(int(n)) for n in args.sizes.split(",") if n}
    section = render(rows, ingest, lat)
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
