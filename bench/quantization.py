"""Quantisation table of the bundled model: what each GGUF type costs and keeps (issue 19).

Method
------
* The bundled SmolLM2-135M-Instruct (Q4_1) is quantised in-process by ``seekport models
  quantize`` (``gateway/lifecycle.py``: llama.cpp's ``llama_model_quantize`` with requantising
  allowed) to each target, into a temporary registry.
* Each file, the bundled one included, is measured by ``seekport.engine.measure`` in a process
  of its own: file size; resident memory added by loading it with a 512-token context;
  prompt tokens/s (one ~250-token batch) and generation tokens/s (64 greedy tokens, one at a
  time), best of two, at 1 and 2 threads; perplexity over the bundled English and Chinese
  texts (``src/seekport/engine/data``), 512-token windows.
* The tensor mix is read from each file (``gguf.GGUFReader``): K-quants need rows of 256
  values, and most SmolLM2 tensors have 576 columns, so llama.cpp falls back to other types.
* Figures from the same run sit side by side; these hosts are noisy, so compare within a
  column of one run rather than across runs.

Run: ``.venv/bin/python bench/quantization.py [--no-docs]`` (~4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from gateway_overhead import command_line, machine, revision  # noqa: E402

from seekport.gateway.lifecycle import BUNDLED, ModelLifecycle  # noqa: E402
from seekport.store.registry import Registry  # noqa: E402

DOCS = REPO / "docs" / "quantization.md"
TARGETS = ("f16", "q8_0", "q5_0", "q4_k_m", "q4_0")
THREADS = (1, 2)


def measure_all() -> list[tuple[str, int, dict[str, Any]]]:
    """(type, file bytes, figures) for the bundled file and each target."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        life = ModelLifecycle(Registry(Path(d)))
        figures = life.measure(BUNDLED, THREADS)
        rows.append(("Q4_1 (bundled)", int(figures["file_mb"] * 2**20), figures))
        for target in TARGETS:
            entry = life.quantize(BUNDLED, target)
            figures = life.measure(entry.ref, THREADS)
            rows.append((target.upper(), entry.size, figures))
            print(f"{target}: {figures}", file=sys.stderr)
    return rows


def render(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    base = rows[0][2]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Quantisation of the bundled model",
        "",
        "`seekport models quantize NAME --to TYPE` makes a new registered version in-process "
        "and measures it; `seekport models list --local` shows the figures of every version. "
        "This page is written by `bench/quantization.py` (method: its docstring).",
        "",
        f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
        f"Command: `{command_line()}`.",
        "",
        "| type | file MB | load RSS MB | prompt tok/s 1t | 2t | gen tok/s 1t | 2t "
        "| ppl en | ppl zh | ppl en vs bundled |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, size, f in rows:
        p, g = f["prompt_tps"], f["gen_tps"]
        lines.append(
            f"| {kind} | {size / 2**20:.1f} | {f['load_rss_mb']:.0f} | {p['1']:.0f} | "
            f"{p['2']:.0f} | {g['1']:.0f} | {g['2']:.0f} | {f['ppl_en']:.2f} | "
            f"{f['ppl_zh']:.2f} | {100 * (f['ppl_en'] / base['ppl_en'] - 1):+.1f} % |"
        )
    lines += ["", "Tensor mix of each file (what the tensors really are):", ""]
    lines += ["| type | tensors |", "|---|---|"]
    for kind, _, f in rows:
        mix = ", ".join(f"{k} ×{n}" for k, n in f["tensor_mix"].items())
        lines.append(f"| {kind} | {mix} |")
    lines += [
        "",
        "Reading:",
        "",
        "- F16 from the Q4_1 file is exact (the dequantised weights), so it keeps the bundled "
        "model's perplexity; the small differences are the kernels' arithmetic. It is the "
        "largest file and the slowest to generate: generation reads every weight per token.",
        "- Q8_0 keeps the perplexity too and is the one to merge a LoRA adapter into (a Q4 "
        "base erases an adapter's small deltas).",
        "- The K-quant name is not what you get on this model: the mix above shows which "
        "tensors fell back to Q5_0/Q8_0 because their rows are not multiples of 256.",
        "- Types below Q4_1 cannot recover precision the bundled file has already lost; "
        "requantising down costs perplexity (the last column).",
        "- Q4_0 takes more memory than its file: llama.cpp repacks Q4_0 weights for the "
        "CPU's vector units into a buffer of their own, which is also why it is fast here.",
        "",
        "What a GPU changes: the same files load into llama.cpp with layers offloaded (or, "
        "for vLLM/SGLang, the original safetensors with their own quantisations); prompt "
        "speed grows by orders of magnitude, and memory, not compute, sets the choice.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    page = render(measure_all())
    print(page)
    if not args.no_docs:
        DOCS.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
