"""How many sequences a local model decodes together when the settings leave it open.

Each slot has its own KV stream of ``context_length`` cells (llama.cpp ``kv_unified = false``,
which keeps seeded output independent of the batch), so a slot costs
``context_length × KV bytes per token`` of memory whether it is busy or not, and llama.cpp
allocates and zeroes all of it at start-up. The rule, as vLLM sizes its KV cache from the
memory it may use rather than from a fixed count:

    KV budget = min(MAX_KV_BYTES, (available memory − the model's weights) × KV_SHARE)
    max_num_seqs = budget ÷ one slot's stream, between 1 and MAX_SEQS

``MAX_KV_BYTES`` is vLLM's CPU default (``VLLM_CPU_KVCACHE_SPACE``, 4 GiB); ``MAX_SEQS`` the top
of the 8–32 range, past which more slots on CPU threads add memory, not tokens per second.
The bundled SmolLM2-135M (22.5 KiB per token) at the default 4096-token context needs 90 MiB
a slot: 16 slots from about 3 GiB of available memory, 32 from about 6 GiB.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("seekport.engine")

MAX_SEQS = 32
MAX_KV_BYTES = 4 << 30
KV_SHARE = 0.5
STREAM_PAD = 256  # llama.cpp rounds each stream up to a multiple of this (n_ctx_seq)


def stream_cells(context_length: int) -> int:
    """KV cells llama.cpp gives one slot for ``context_length`` tokens."""
    return -(-context_length // STREAM_PAD) * STREAM_PAD


def default_max_num_seqs(
    *, kv_bytes_per_token: int, context_length: int, available: int, weights: int
) -> int:
    """The rule of this module's docstring (all sizes in bytes)."""
    budget = min(MAX_KV_BYTES, int(max(0, available - weights) * KV_SHARE))
    per_slot = stream_cells(context_length) * max(1, kv_bytes_per_token)
    return max(1, min(MAX_SEQS, budget // per_slot))


def available_memory() -> int:
    """Bytes this process may still use: the kernel's MemAvailable, or less under a cgroup
    (container) memory limit. Without /proc: free physical pages."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge v1 value: no limit
            found.append(max(0, int(limit) - usage))
        break
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            found.append(0)
    return min(found)
