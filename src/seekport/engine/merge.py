"""A LoRA adapter merged into its base: W + scale × alpha / rank × B·A, written as an F16 GGUF
(the caller quantises that to Q8_0 when asked).

Every base tensor is dequantised (``gguf.quants``), the adapted ones get their delta, and the
weight matrices are written as F16 (vectors stay F32), with the base's metadata. Only F16 and
Q8_0 keep what was learned: a fine-tune's delta is a few percent of one 4-bit quantisation
step (measured ~8 % on the bundled model), so rounding a merged model to Q4 gives the base
back. Below Q8_0, serve the base with the adapter instead (``adapter:``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seekport.errors import ConfigError

MERGE_TARGETS = ("f16", "q8_0")
_SKIP_FIELDS = ("GGUF.", "general.architecture", "general.file_type")
_MOSTLY_F16 = 1  # llama.cpp's LLAMA_FTYPE_MOSTLY_F16


def check_target(target: str) -> str:
    """``target`` lower-cased, or a ConfigError that says why a smaller type is refused."""
    key = target.lower()
    if key not in MERGE_TARGETS:
        raise ConfigError(
            f"cannot merge an adapter into {target}: rounding to a type below Q8_0 erases the "
            "adapter's delta (a few percent of one quantisation step); merge to f16 or q8_0, "
            "or serve the base with `adapter:`"
        )
    return key


def read_adapter(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """``{base tensor: (A, B)}`` and alpha of a GGUF LoRA adapter."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    kind = reader.fields.get("general.type")
    if kind is None or kind.contents() != "adapter":
        raise ConfigError(f"{path.name} is not a GGUF adapter (general.type is not 'adapter')")
    alpha_field = reader.fields.get("adapter.lora.alpha")
    alpha = float(alpha_field.contents()) if alpha_field is not None else 0.0
    parts: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        base, _, which = t.name.rpartition(".lora_")
        if which in ("a", "b"):
            parts.setdefault(base, {})[which] = dequantize(t.data, t.tensor_type)
    pairs = {}
    for base, ab in parts.items():
        if set(ab) != {"a", "b"}:
            raise ConfigError(f"{path.name}: {base} has only one of lora_a, lora_b")
        pairs[base] = (ab["a"], ab["b"])
    if not pairs:
        raise ConfigError(f"{path.name} holds no LoRA tensors")
    return pairs, alpha


def merge_to_f16(
    base: Path,
    adapter: Path,
    out: Path,
    scale: float,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``base`` + ``scale`` × ``adapter`` to ``out`` as F16; the count of tensors that
    got a delta. Every adapted tensor must exist in the base with the delta's shape."""
    import gguf
    from gguf.quants import dequantize

    pairs, alpha = read_adapter(adapter)
    reader = gguf.GGUFReader(base)
    names = {t.name for t in reader.tensors}
    missing = sorted(set(pairs) - names)
    if missing:
        raise ConfigError(
            f"the adapter {adapter.name} does not fit {base.name}: it adapts {missing[0]}, "
            "which the base does not have (made for another model?)"
        )
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(out), arch=arch)
    for field in reader.fields.values():
        if field.name.startswith(_SKIP_FIELDS):
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    writer.add_file_type(_MOSTLY_F16)
    merged = 0
    for i, t in enumerate(reader.tensors):
        w: Any = dequantize(t.data, t.tensor_type)
        if t.name in pairs:
            a, b = pairs[t.name]
            rank = a.shape[0]
            delta = (b.astype(np.float64) @ a.astype(np.float64)) * (scale * (alpha or rank) / rank)
            if delta.shape != w.shape:
                raise ConfigError(
                    f"the adapter {adapter.name} does not fit {base.name}: {t.name} is "
                    f"{w.shape}, its delta {delta.shape}"
                )
            w = w + delta
            merged += 1
        writer.add_tensor(t.name, w.astype(np.float16 if w.ndim > 1 else np.float32))
        if progress is not None:
            progress(i + 1, len(reader.tensors))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return merged
