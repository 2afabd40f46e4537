"""A LoRA adapter (GGUF) over a loaded llama.cpp model: loaded once, set on the context, so
every sequence of that engine runs base + scale × adapter. The adapter is freed with the
model."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from seekport.errors import ConfigError


def attach(lc: Any, model: Any, ctx: Any, path: Path, scale: float) -> Any:
    """Load the adapter at ``path`` for ``model`` and set it on ``ctx`` at ``scale``."""
    adapter = lc.llama_adapter_lora_init(model, str(path).encode())
    if not adapter:
        raise ConfigError(
            f"llama.cpp could not load the LoRA adapter {path} (not a GGUF adapter, or made "
            "for another base model)"
        )
    adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(scale)
    if lc.llama_set_adapters_lora(ctx, adapters, 1, scales) != 0:
        raise ConfigError(f"llama.cpp could not apply the LoRA adapter {path}")
    return adapter
