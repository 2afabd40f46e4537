"""Can llama.cpp's extra CPU buffer types run here? (AMX tiles on Sapphire Rapids and later.)

A llama.cpp built on a CPU that advertises AMX packs the weights for AMX tile instructions.
Some virtual machines advertise AMX (and even grant the kernel permission for it) but trap the
instructions: the first decode then dies of SIGILL, taking the server with it. Where the CPU
flags name AMX, one throwaway process loads a small GGUF with the extra buffer types and
decodes a few tokens; if it dies, the engine loads its models without them (plain CPU kernels,
correct everywhere). The verdict is kept in the user's cache directory, keyed by the CPU flags,
the kernel and the llama.cpp library, so only the first start on a machine pays the probe
(about a second). Where the flags do not name AMX nothing is probed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("seekport.engine")

PROBE_TIMEOUT_S = 120.0
_PROBE = """
import sys
import llama_cpp as lc
from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel
from llama_cpp._logger import set_verbose
set_verbose(False)
lc.llama_backend_init()
params = lc.llama_model_default_params()
params.use_extra_bufts = True
model = LlamaModel(path_model=sys.argv[1], params=params, verbose=False)
cparams = lc.llama_context_default_params()
cparams.n_ctx = 64
ctx = LlamaContext(model=model, params=cparams, verbose=False)
tokens = model.tokenize(b"Hello, how are you today?", True, False)
batch = LlamaBatch(n_tokens=64, embd=0, n_seq_max=1, verbose=False)
batch.set_batch(tokens, 0, True)
ctx.decode(batch)
"""


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _cache_file(flags: frozenset[str]) -> Path:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent
    key = "|".join(
        [
            getattr(llama_cpp, "__version__", "?"),
            str(lib.stat().st_mtime_ns),
            platform.release(),
            " ".join(sorted(flags)),
        ]
    )
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (
        base
        / "seekport"
        / f"cpu-extra-buffers-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    )


@functools.cache
def extra_buffers_work(probe_model: Path) -> bool:
    """True when models may use llama.cpp's extra buffer types on this machine."""
    flags = _cpu_flags()
    if not any(f.startswith("amx") for f in flags):
        return True
    cache = _cache_file(flags)
    try:
        return bool(json.loads(cache.read_text(encoding="utf-8"))["works"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        proc = subprocess.run(  # noqa: S603 - this interpreter, our own probe code
            [sys.executable, "-c", _PROBE, str(probe_model)],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
        works = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        log.warning(
            "this CPU advertises AMX but a llama.cpp process using it failed; local models "
            "run without llama.cpp's extra buffer types (AMX, weight repacking)"
        )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"works": works}), encoding="utf-8")
    except OSError:
        pass  # a read-only home: probe again next start
    return works
