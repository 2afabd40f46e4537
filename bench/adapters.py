"""LoRA adapters over one shared engine: what serving several fine-tunes of one base costs.

Method
------
* In-process ``LocalBackend``s over the bundled model (``context_length`` 512,
  ``max_num_seqs`` 8, ``n_threads`` 1), sharing one ``LocalEngines`` pool: a base entry and
  up to three entries with synthetic rank-8 adapters on every layer's attention output
  (``tests/lora.py``; a trained adapter of that rank costs the same to apply).
* Throughput: 8 concurrent streams, 64 tokens each (end-of-generation banned), greedy, spread
  round-robin over 1, 2 or 4 entries (base only; base + 1 adapter; base + 3 adapters). Every
  step then decodes once per adapter present, so the rows show what splitting a batch costs.
  Three interleaved rounds; the median of each row's aggregate output tok/s.
* Memory: the process's RSS growth when four entries start sharing one engine, against four
  entries with an engine each (separate pools), each measured in a fresh child process.

Run: ``.venv/bin/python bench/adapters.py [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gateway_overhead import (  # noqa: E402
    command_line,
    machine,
    proc_mem_mb,
    revision,
    write_section,
)
from tests.e2e.test_engine_real_model import call, text_of  # noqa: E402
from tests.encode import stream  # noqa: E402
from tests.lora import synthetic_adapter  # noqa: E402

from seekport.config import LocalModelConfig  # noqa: E402
from seekport.engine.runners.llamacpp import bundled_model_path  # noqa: E402
from seekport.gateway.backends.local import LocalBackend  # noqa: E402
from seekport.gateway.backends.local_engines import LocalEngines  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- adapters:start -->", "<!-- adapters:end -->"
SETTINGS: dict[str, Any] = {
    "backend": "local",
    "context_length": 512,
    "max_num_seqs": 8,
    "n_threads": 1,
}
STREAMS, TOKENS, ROUNDS = 8, 64, 3


def entries(adapters: list[Path]) -> list[LocalModelConfig]:
    return [
        LocalModelConfig(name="base", **SETTINGS),
        *(
            LocalModelConfig(name=f"tuned{i}", adapter=str(a), **SETTINGS)
            for i, a in enumerate(adapters)
        ),
    ]


async def start(cfgs: list[LocalModelConfig], shared: bool) -> list[LocalBackend]:
    pool = LocalEngines()
    backends = [LocalBackend(c, engines=pool if shared else LocalEngines()) for c in cfgs]
    for b in backends:
        await b.start()
    return backends


async def burst(backends: list[LocalBackend]) -> float:
    """Output tok/s of STREAMS streams spread round-robin over ``backends``."""
    calls = [
        call(
            f"Story {i} about the sea.",
            max_tokens=TOKENS,
            temperature=0,
            stream=True,
            logit_bias={"2": -100},
        )
        for i in range(STREAMS)
    ]
    began = time.perf_counter()
    opened = [await stream(backends[i % len(backends)], c) for i, c in enumerate(calls)]
    await asyncio.gather(*(text_of(s) for s in opened))
    return STREAMS * TOKENS / (time.perf_counter() - began)


async def throughput(adapters: list[Path]) -> dict[int, float]:
    backends = await start(entries(adapters), shared=True)
    try:
        await burst(backends[:1])  # warm
        runs: dict[int, list[float]] = {1: [], 2: [], 4: []}
        for _ in range(ROUNDS):
            for k, values in runs.items():
                values.append(await burst(backends[:k]))
        return {k: statistics.median(v) for k, v in runs.items()}
    finally:
        for b in backends:
            await b.aclose()


def memory_child(adapters: list[str], shared: bool) -> float:
    """(run in a child) RSS growth in MiB when the four entries start."""
    import os

    before = proc_mem_mb(os.getpid())

    async def go() -> float:
        backends = await start(entries([Path(a) for a in adapters]), shared)
        grown = proc_mem_mb(os.getpid()) - before
        for b in backends:
            await b.aclose()
        return grown

    return asyncio.run(go())


def memory(adapters: list[Path], shared: bool) -> float:
    code = (
        "import json,sys; sys.path.insert(0, sys.argv[1]); from bench.adapters import "
        "memory_child; print(memory_child(json.loads(sys.argv[2]), sys.argv[3] == '1'))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(REPO),
            json.dumps([str(a) for a in adapters]),
            "1" if shared else "0",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def render(tps: dict[int, float], mem_shared: float, mem_apart: float) -> str:
    rows = [
        f"| base only | 1 | {tps[1]:.0f} | 1.00 |",
        f"| base + 1 adapter | 2 | {tps[2]:.0f} | {tps[2] / tps[1]:.2f} |",
        f"| base + 3 adapters | 4 | {tps[4]:.0f} | {tps[4] / tps[1]:.2f} |",
    ]
    return "\n".join(
        [
            START,
            "## LoRA adapters over one shared engine",
            "",
            f"Machine: {machine()}. Date: {dt.date.today()}. Revision: {revision()}.",
            f"Command: `{command_line()}`. Method: the docstring of `bench/adapters.py`.",
            "",
            f"{STREAMS} greedy streams × {TOKENS} tokens, bundled model, one llama.cpp thread, "
            f"median of {ROUNDS} interleaved rounds:",
            "",
            "| entries the streams are spread over | decodes per step | output tok/s | vs base |",
            "|---|--:|--:|--:|",
            *rows,
            "",
            f"Four entries (base + 3 adapters) starting: RSS +{mem_shared:.0f} MiB sharing one "
            f"engine, +{mem_apart:.0f} MiB with an engine each "
            f"({mem_apart / max(mem_shared, 1):.1f}×).",
            END,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = bundled_model_path()
        adapters = [
            synthetic_adapter(Path(tmp) / f"a{i}.gguf", base, seed=i, rank=8) for i in range(3)
        ]
        tps = asyncio.run(throughput(adapters))
        shared, apart = memory(adapters, True), memory(adapters, False)
    section = render(tps, shared, apart)
    print(section)
    if not args.no_docs:
        write_section(DOCS, section, START, END)


if __name__ == "__main__":
    main()
