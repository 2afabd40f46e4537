"""What a GGUF costs and how well it does, measured on this machine.

Run in a process of its own (``python -m seekport.engine.measure FILE``), so the resident
memory it reports is the model's and nothing else's; it prints one JSON object:

* ``file_mb``; ``load_rss_mb``: resident memory added by loading the model (and a 512-token
  context);
* ``prompt_tps`` and ``gen_tps`` per thread count: tokens per second evaluating a ~250-token
  prompt in one batch, and generating 64 tokens greedily one by one (best of 2);
* ``ppl_en``, ``ppl_zh``: perplexity over the bundled English and Chinese texts
  (``engine/data/``), in 512-token windows, each token predicted from those before it in its
  window.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"
N_CTX = 512
GEN_TOKENS = 64


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(path: Path, threads: int) -> Any:
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
    )


def perplexity(llm: Any, text: str) -> float:
    """exp of the mean negative log-likelihood of each token given those before it."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, N_CTX):
        window = tokens[start : start + N_CTX]
        if len(window) < 2:
            break
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        logz = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        picked = logits[np.arange(len(window) - 1), window[1:]]
        nll += float((logz - picked).sum())
        count += len(window) - 1
    return float(np.exp(nll / count))


def speed(llm: Any, prompt: str) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s), the best of two runs each."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)[: N_CTX - GEN_TOKENS - 1]
    best_prompt = best_gen = 0.0
    for _ in range(2):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        best_prompt = max(best_prompt, len(tokens) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(GEN_TOKENS):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([nxt])
        best_gen = max(best_gen, GEN_TOKENS / (time.perf_counter() - t0))
    return best_prompt, best_gen


def measure(path: Path, threads: list[int]) -> dict[str, Any]:
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    en = (DATA / "perplexity_en.txt").read_text(encoding="utf-8")
    zh = (DATA / "perplexity_zh.txt").read_text(encoding="utf-8")
    out: dict[str, Any] = {
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "prompt_tps": {},
        "gen_tps": {},
    }
    for i, n in enumerate(threads):
        before = _rss_mb()
        llm = _load(path, n)
        if i == 0:
            out["load_rss_mb"] = round(_rss_mb() - before, 1)
            out["ppl_en"] = round(perplexity(llm, en), 3)
            out["ppl_zh"] = round(perplexity(llm, zh), 3)
        prompt_tps, gen_tps = speed(llm, en)
        out["prompt_tps"][str(n)] = round(prompt_tps, 1)
        out["gen_tps"][str(n)] = round(gen_tps, 1)
        llm.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure a GGUF: size, memory, speed, perplexity")
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    print(json.dumps(measure(args.model, threads)))


if __name__ == "__main__":
    main()
