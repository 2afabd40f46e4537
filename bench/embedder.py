"""Local embedder benchmark: multilingual-e5-small on ONNX Runtime, int8 against float32.

Method
------
* Conversion: a fresh child process runs ``E5Embedder.load`` into an empty cache directory
  (packed 4-bit file -> float32 graph -> int8 graph); wall time and the child's peak RSS.
* Passages: ``--passages`` texts embedded with ``input_type="passage"`` in one ``embed`` call
  (it sorts and batches internally). With ``--corpus`` (a BEIR ``corpus.jsonl``) they are the
  first records as "title. text"; otherwise generated English/Chinese text of ~250 tokens.
* Queries: ``--queries`` short questions, once batched in one call, once one call per query.
* Each figure is the best of ``--repeat`` runs after one warm-up; ``--threads`` intra-op threads.

Run: ``.venv/bin/python bench/embedder.py [--corpus data/retrieval/scifact/corpus.jsonl]
[--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import onnx  # noqa: E402
import onnxruntime as ort  # type: ignore[import-untyped]  # noqa: E402
from gateway_overhead import command_line, machine, revision, write_section  # noqa: E402

from seekport.engine.embedding.e5 import E5Embedder, _session_options  # noqa: E402
from seekport.engine.embedding.graph import build_fp32  # noqa: E402
from seekport.engine.embedding.packed import PackedModel, find_packed  # noqa: E402
from seekport.engine.embedding.tokenizer import E5Tokenizer  # noqa: E402

_EN_TEXT = (
    "the protein binds to a receptor on the cell surface and the signal travels through "
    "a cascade of kinases that change which genes are expressed in the nucleus while "
    "patients in the trial received either the drug or a placebo for twelve weeks"
)
_ZH = "研究人员发现这种蛋白质与细胞表面的受体结合随后信号通过一系列激酶传递改变细胞核中基因的表达"


def generated_passages(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = _EN_TEXT.split()
    out = []
    for i in range(n):
        if i % 4 == 3:  # one in four Chinese, ~1 token per 1.5 characters
            out.append("".join(rng.choice(_ZH) for _ in range(330)) + "。")
        else:
            out.append(" ".join(rng.choice(words) for _ in range(190)) + ".")
    return out


def corpus_passages(path: Path, n: int) -> list[str]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            out.append(f"{record.get('title', '')}. {record['text']}".strip(". "))
            if len(out) == n:
                break
    return out


QUERIES = [
    "how much protein should a woman eat per day",
    "上海交通大学在哪里",
    "does vitamin D reduce the risk of fractures",
    "深度学习和机器学习有什么区别",
    "what causes antibiotic resistance in bacteria",
    "北京今天的天气怎么样",
]


def convert_in_child(cache: Path, threads: int) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of a first load in a fresh process."""
    code = (
        "import sys; from pathlib import Path; "
        "from seekport.engine.embedding import E5Embedder; "
        f"E5Embedder.load(Path({str(cache)!r}), threads={threads})"
    )
    env = {"PYTHONPATH": str(REPO / "src")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    seconds = time.perf_counter() - started
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def best_rate(n: int, run: Callable[[], object], repeat: int) -> float:
    run()
    return max(n / timed(run) for _ in range(repeat))


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def rates(
    model: E5Embedder, passages: list[str], queries: list[str], repeat: int
) -> tuple[float, float, float]:
    """Passages/s, queries/s batched, queries/s one call each (on the first 30)."""
    few = queries[:30]

    def one_by_one() -> None:
        for q in few:
            model.embed([q], input_type="query")

    return (
        best_rate(len(passages), lambda: model.embed(passages, input_type="passage"), repeat),
        best_rate(len(queries), lambda: model.embed(queries, input_type="query"), repeat),
        best_rate(len(few), one_by_one, repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a BEIR corpus.jsonl (else generated text)")
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    out: list[str] = []

    def say(line: str = "") -> None:
        print(line)
        out.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        convert_s, convert_rss = convert_in_child(cache, args.threads)
        int8 = E5Embedder.load(cache, threads=args.threads)
        packed = PackedModel.open(find_packed())
        fp32_path = cache / "fp32.onnx"
        onnx.save(build_fp32(packed), fp32_path)
        session = ort.InferenceSession(
            str(fp32_path), _session_options(args.threads), providers=["CPUExecutionProvider"]
        )
        fp32 = E5Embedder(session, E5Tokenizer(packed.vocab))

        passages = (
            corpus_passages(args.corpus, args.passages)
            if args.corpus
            else generated_passages(args.passages)
        )
        queries = [QUERIES[i % len(QUERIES)] + f" ({i})" for i in range(args.queries)]
        tokens = int8.count_tokens(passages, input_type="passage")
        say(
            f"{len(passages)} passages ({'corpus' if args.corpus else 'generated'}), "
            f"mean {sum(tokens) / len(tokens):.0f} tokens; {len(queries)} queries; "
            f"{args.threads} threads; onnxruntime {ort.__version__}."
        )
        say(f"First-use conversion: {convert_s:.1f} s, peak RSS {convert_rss:.0f} MiB.")
        say()
        say("| model | passages/s | queries/s (batched) | queries/s (one per call) |")
        say("|---|---:|---:|---:|")
        for name, model in (("int8", int8), ("fp32", fp32)):
            p, qb, q1 = rates(model, passages, queries, args.repeat)
            say(f"| {name} | {p:.1f} | {qb:.0f} | {q1:.0f} |")

    if not args.no_docs:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = [
            "<!-- embedder:start -->",
            "## Local embedder: multilingual-e5-small, ONNX Runtime int8 and float32",
            "",
            f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
            f"Command: `{command_line()}`. Method: the docstring of `bench/embedder.py`.",
            "",
        ]
        write_section(
            args.docs,
            "\n".join([*head, *out, "", "<!-- embedder:end -->"]),
            "<!-- embedder:start -->",
            "<!-- embedder:end -->",
        )


if __name__ == "__main__":
    main()
