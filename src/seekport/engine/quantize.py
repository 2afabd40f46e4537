"""Quantisation of a GGUF in-process (llama.cpp's ``llama_model_quantize``) and the tensor mix
a file really holds.

Re-quantising is allowed (the bundled model is Q4_1): F16 from Q4_1 is exact, the other types
lose what the new format cannot hold. K-quants work on rows of 256 values; SmolLM2's tensors
mostly have 576 columns, so llama.cpp silently falls back to another type for them. The name
of the target is therefore not the answer: ``tensor_mix`` reads what each tensor became.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from seekport.errors import ConfigError, SeekportError

# the targets offered: those that need no importance matrix (the IQ types do)
TARGETS = (
    "f32",
    "f16",
    "bf16",
    "q8_0",
    "q6_k",
    "q5_k_m",
    "q5_k_s",
    "q5_1",
    "q5_0",
    "q4_k_m",
    "q4_k_s",
    "q4_1",
    "q4_0",
    "q3_k_l",
    "q3_k_m",
    "q3_k_s",
    "q2_k",
)


def ftype_of(target: str) -> int:
    """llama.cpp's file type for a target name (``q8_0``, ``f16``…)."""
    import llama_cpp

    key = target.lower()
    if key not in TARGETS:
        raise ConfigError(f"cannot quantise to {target!r}; choose one of: {', '.join(TARGETS)}")
    name = "LLAMA_FTYPE_ALL_F32" if key == "f32" else f"LLAMA_FTYPE_MOSTLY_{key.upper()}"
    return int(getattr(llama_cpp, name))


def quantize(src: Path, dst: Path, target: str, n_threads: int | None = None) -> None:
    """Write ``src`` quantised to ``target`` at ``dst`` (blocking: seconds for small models)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_of(target)
    params.allow_requantize = True
    params.nthread = n_threads or len(os.sched_getaffinity(0))
    with _native_stderr() as said:
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(dst).encode(), ctypes.byref(params)
        )
    if rc != 0 or not dst.is_file():
        dst.unlink(missing_ok=True)
        last = ("".join(said).strip().splitlines() or [""])[-1]
        raise SeekportError(
            f"llama.cpp could not quantise {src.name} to {target} (code {rc}): {last}"
        )


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """llama.cpp's quantiser writes a line per tensor that falls back to another type
    straight to the process's stderr, past Python's logging: fd 2 goes to a temporary file
    meanwhile; what it said is in the yielded list afterwards (for an error message)."""
    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.append(sink.read()[-4096:].decode("utf-8", "replace"))


def tensor_mix(path: Path) -> dict[str, int]:
    """How many tensors of each type the file holds, most common first."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    return dict(counts.most_common())


def mix_text(mix: dict[str, int]) -> str:
    """``Q8_0 ×211, F32 ×61``: the mix as one line."""
    return ", ".join(f"{kind} ×{n}" for kind, n in mix.items())
