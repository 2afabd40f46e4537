"""The local-engine settings reach llama.cpp itself: a real LocalBackend over the bundled
model, in-process, its llama.cpp context read back (the FakeRunner tests in
tests/unit/test_engine_settings.py cover the scheduler's side)."""

from __future__ import annotations

import pytest

from seekport.config import ModelConfig
from seekport.engine.runners.llamacpp import LlamaCppRunner
from seekport.gateway.backends.local import LocalBackend
from tests.harness import BUNDLED

pytestmark = pytest.mark.slow


async def test_settings_are_the_llama_cpp_context() -> None:
    cfg = ModelConfig(
        name=BUNDLED,
        backend="local",
        n_threads=2,
        context_length=768,
        max_num_seqs=3,
        max_step_tokens=128,
    )
    b = LocalBackend(cfg)
    await b.start()
    try:
        runner = b._runner
        assert isinstance(runner, LlamaCppRunner)
        assert runner.context_params() == {
            "n_ctx": 3 * 768,  # kv cells: one stream of context_length per slot
            "n_ctx_seq": 768,
            "n_seq_max": 3,
            "n_batch": 128,
            "n_threads": 2,
            "n_threads_batch": 2,
        }
        assert b._engine is not None
        assert b._engine.cfg.max_num_seqs == 3
        assert b._engine.cfg.max_seq_cells == 768
    finally:
        await b.aclose()
