"""Semantic cache benchmark (issue 16): how often a rephrased question reuses the earlier
answer (true hits) and how often a question that means something else does (false hits), by
similarity threshold.

Method
------
* ``bench/data/paraphrases.jsonl``: 40 labelled pairs of questions written for this bench,
  half English, half Chinese. 20 say the same thing in other words; 20 are near misses that
  must not share an answer (another city, another error code, import against export, sick
  days against vacation days, 2023 against 2024).
* Both questions of a pair are embedded as the semantic cache embeds them (the bundled
  multilingual-e5-small in ONNX int8, ``query:`` prefix) and compared by cosine; a pair is a
  hit at threshold t when the similarity is at least t and, as the cache requires, their
  numbers and codes are the same (``semantic_cache.exact_parts``).
* True-hit rate: hits among the same-meaning pairs; false-hit rate: hits among the others.

Run: ``.venv/bin/python bench/semantic_cache.py [--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gateway_overhead import command_line, machine, revision, write_section  # noqa: E402

from seekport.config.cache import CacheConfig  # noqa: E402
from seekport.engine.embedding import E5Embedder  # noqa: E402
from seekport.gateway.semantic_cache import exact_parts  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
DATA = REPO / "bench" / "data" / "paraphrases.jsonl"
START, END = "<!-- semantic-cache:start -->", "<!-- semantic-cache:end -->"
THRESHOLDS = (0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "e5")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args()
    pairs = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    model = E5Embedder.load(args.models_dir)
    a, _ = model.embed([p["a"] for p in pairs], input_type="query")
    b, _ = model.embed([p["b"] for p in pairs], input_type="query")
    sims = np.sum(a * b, axis=1)
    # the cache's own rule: numbers and codes must match, whatever the similarity
    sims = np.where([exact_parts(p["a"]) == exact_parts(p["b"]) for p in pairs], sims, -1.0)
    same = np.array([bool(p["same"]) for p in pairs])
    default = CacheConfig().semantic_threshold
    rows = []
    for t in THRESHOLDS:
        hit = sims >= t
        mark = " (default)" if abs(t - default) < 1e-9 else ""
        rows.append(
            f"| {t:.2f}{mark} | {hit[same].mean():.2f} ({hit[same].sum()}/{same.sum()}) "
            f"| {hit[~same].mean():.2f} ({hit[~same].sum()}/{(~same).sum()}) |"
        )
    worst = max(
        (float(s), p["a"], p["b"]) for s, p in zip(sims, pairs, strict=True) if not p["same"]
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            START,
            "## Semantic cache: true and false hits by threshold",
            "",
            f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
            f"Command: `{command_line()}`. Method: the docstring of `bench/semantic_cache.py`.",
            "",
            "| threshold | true-hit rate (rephrased) | false-hit rate (other meaning) |",
            "|--:|--:|--:|",
            *rows,
            "",
            f"Most alike pair of different meaning: {worst[0]:.3f} ({worst[1]!r} / "
            f"{worst[2]!r}). Same-meaning pairs: similarity {sims[same].min():.3f} to "
            f"{sims[same].max():.3f}; other pairs: {sims[~same].min():.3f} to "
            f"{sims[~same].max():.3f} (-1: numbers or codes differ).",
            "",
            END,
        ]
    )
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
