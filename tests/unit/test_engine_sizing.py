"""The default number of slots of a local model: sized from available memory."""

from __future__ import annotations

import pytest

from seekport.config import LocalModelConfig
from seekport.engine.sizing import (
    MAX_KV_BYTES,
    available_memory,
    default_max_num_seqs,
    stream_cells,
)
from seekport.gateway.backends.local import LocalBackend
from tests.fakes import FakeRunner

GiB = 1 << 30
BUNDLED_KV = 23_040  # SmolLM2-135M: 30 layers × 3 KV heads × (64 + 64) × 2 bytes
BUNDLED_WEIGHTS = 100 << 20


def slots(available: float, context_length: int = 4096, kv: int = BUNDLED_KV) -> int:
    return default_max_num_seqs(
        kv_bytes_per_token=kv,
        context_length=context_length,
        available=int(available),
        weights=BUNDLED_WEIGHTS,
    )


@pytest.mark.parametrize(
    ("available_gib", "expected"),
    [(0.5, 2), (1.5, 7), (3.0, 16), (4.0, 22), (6.0, 32), (21.0, 32), (256.0, 32)],
)
def test_the_bundled_model_at_the_default_context(available_gib: float, expected: int) -> None:
    # one slot: 4096 cells × 22.5 KiB = 90 MiB; the KV cache may take half of what is left
    assert slots(available_gib * GiB) == expected


def test_a_short_context_or_a_big_model_changes_the_count_not_the_memory() -> None:
    assert slots(2 * GiB, context_length=1024) == 32
    llama_8b = 131_072  # 32 layers × 8 KV heads × (128 + 128) × 2 bytes
    assert slots(64 * GiB, kv=llama_8b) == MAX_KV_BYTES // (4096 * llama_8b)  # the cap: 8
    assert slots(4 * GiB, kv=llama_8b) == 3
    assert slots(0.2 * GiB, kv=llama_8b) == 1  # never below one slot


def test_streams_are_rounded_up_as_llama_cpp_does() -> None:
    assert [stream_cells(n) for n in (128, 256, 1000, 4096)] == [256, 256, 1024, 4096]


def test_available_memory_is_a_plausible_number() -> None:
    assert 0 < available_memory() < 1 << 50


async def test_without_max_num_seqs_the_backend_takes_the_runners_sizing() -> None:
    cfg = LocalModelConfig(name="m", backend="local")
    assert cfg.max_num_seqs is None  # the default is the memory rule, not a number
    b = LocalBackend(cfg, None, runner=FakeRunner(max_num_seqs=19))
    await b.start()
    assert b._engine is not None and b._engine.cfg.max_num_seqs == 19
    await b.aclose()
