"""Synthetic LoRA adapters (GGUF) for the bundled model: random low-rank deltas on every
layer's attention output, written as ``seekport finetune`` writes a trained one, so tests of
serving adapters need no training run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from seekport.engine.finetune.export import write_adapter


def synthetic_adapter(path: Path, base: Path, *, seed: int, rank: int = 4) -> Path:
    """An adapter for ``base`` with a delta big enough to change greedy output."""
    import gguf

    reader = gguf.GGUFReader(str(base))
    layers = sorted(
        {int(m[1]) for t in reader.tensors if (m := re.match(r"blk\.(\d+)\.attn_output", t.name))}
    )
    width = next(int(t.shape[0]) for t in reader.tensors if t.name == "blk.0.attn_output.weight")
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in layers:
        name = f"blk.{i}.attn_output.weight"
        tensors[f"{name}.lora_a"] = rng.normal(0, 1 / np.sqrt(width), (rank, width))
        tensors[f"{name}.lora_b"] = rng.normal(0, 0.5, (width, rank))
    write_adapter(
        path,
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
        alpha=rank,
        name=path.stem,
    )
    return path
