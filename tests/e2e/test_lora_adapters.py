"""Several LoRA adapters over one base in memory: model entries that differ only in their
adapter share one llama.cpp engine (one copy of the weights, one KV cache), and each step's
sequences are decoded once per adapter, so a mixed batch gives every request exactly what it
gets alone. Real bundled model, in-process backends, synthetic adapters (tests/lora.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from seekport.config import LocalModelConfig
from seekport.engine.runners.llamacpp import LlamaCppRunner, bundled_model_path
from seekport.errors import ConfigError
from seekport.gateway.backends.local import LocalBackend
from seekport.gateway.backends.local_engines import LocalEngines
from tests.e2e.test_engine_real_model import call, content_of, text_of
from tests.encode import stream
from tests.lora import synthetic_adapter

pytestmark = pytest.mark.slow
SETTINGS: dict[str, Any] = {"backend": "local", "context_length": 512, "max_num_seqs": 4}


def entry(name: str, **extra: Any) -> LocalModelConfig:
    return LocalModelConfig(name=name, **SETTINGS, **extra)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("adapters")
    base = bundled_model_path()
    return synthetic_adapter(d / "one.gguf", base, seed=1), synthetic_adapter(
        d / "two.gguf", base, seed=2
    )


async def answer(b: LocalBackend, prompt: str) -> str:
    return await text_of(await stream(b, call(prompt, max_tokens=20, temperature=0, stream=True)))


async def test_entries_over_one_base_share_an_engine_and_a_mixed_batch_matches_alone(
    adapters: tuple[Path, Path],
) -> None:
    one, two = adapters
    engines = LocalEngines()
    backends = [
        LocalBackend(entry("base"), engines=engines),
        LocalBackend(entry("one", adapter=str(one)), engines=engines),
        LocalBackend(entry("two", adapter=str(two), adapter_scale=2.0), engines=engines),
        LocalBackend(entry("one-half", adapter=str(one), adapter_scale=0.5), engines=engines),
    ]
    for b in backends:
        await b.start()
    try:
        assert len(engines) == 1
        runner = backends[0]._runner
        assert isinstance(runner, LlamaCppRunner)
        assert all(b._runner is runner for b in backends)
        assert runner.adapters_loaded == 2  # one.gguf once, at two scales
        prompt = "Name three colours."
        alone = [await answer(b, prompt) for b in backends]
        assert all(alone) and len(set(alone)) == 4, alone  # each adapter and scale differs

        # all four in the same steps: the engine runs them together, one decode per adapter
        streams = [
            aiter(await stream(b, call(prompt, max_tokens=20, temperature=0, stream=True)))
            for b in backends
        ]
        firsts = [""] * 4
        for i, it in enumerate(streams):
            while not firsts[i]:
                firsts[i] += content_of(await asyncio.wait_for(anext(it), 60))
        engine = backends[0]._engine
        assert engine is not None and engine.num_running == 4
        rest = await asyncio.gather(*(text_of(it) for it in streams))
        assert [f + r for f, r in zip(firsts, rest, strict=True)] == alone

        # an entry letting go leaves the others serving; the last one closes the engine
        await backends[1].aclose()
        assert len(engines) == 1 and await answer(backends[2], prompt) == alone[2]
    finally:
        for b in backends:
            await b.aclose()
    assert len(engines) == 0


async def test_other_engine_settings_or_files_get_an_engine_of_their_own(
    tmp_path: Path,
) -> None:
    engines = LocalEngines()
    a = LocalBackend(entry("a"), engines=engines)
    b = LocalBackend(
        LocalModelConfig(name="b", **{**SETTINGS, "context_length": 256}), engines=engines
    )
    await a.start()
    await b.start()
    try:
        assert len(engines) == 2 and a._runner is not b._runner
    finally:
        await a.aclose()
        await b.aclose()

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    c = LocalBackend(entry("c", adapter=str(broken)), engines=engines)
    with pytest.raises(ConfigError, match="could not load the LoRA adapter"):
        await c.start()
    assert len(engines) == 0  # the engine built for it is closed again
