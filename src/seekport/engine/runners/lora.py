"""LoRA adapters (GGUF) over one loaded llama.cpp model, switched per decode call.

An adapter is loaded once per (file) and given an id per (file, scale); id 0 is the base
alone. A sequence carries the id it runs with; the runner decodes each step's sequences in
one call per adapter, setting that adapter on the context first (``llama_set_adapters_lora``
only changes what the next decode applies: the weights stay shared). Adapters are freed with
the model.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from seekport.errors import ConfigError

BASE = 0  # the adapter id of the base model alone


class Adapters:
    """The adapters loaded over one model and which one a context has set. Not thread-safe:
    the runner calls it under its own lock."""

    def __init__(self, lc: Any, model: Any, ctx: Any) -> None:
        self._lc, self._model, self._ctx = lc, model, ctx
        self._loaded: dict[Path, Any] = {}  # file → llama_adapter_lora pointer
        self._ids: dict[tuple[Path, float], int] = {}
        self._table: list[tuple[Any, float]] = [(None, 0.0)]  # id → (adapter, scale)
        self._current = BASE

    def __len__(self) -> int:
        """Adapter files loaded."""
        return len(self._loaded)

    def add(self, path: Path, scale: float) -> int:
        """The id of ``path`` at ``scale``, loading the file the first time it is named."""
        path = path.resolve()
        known = self._ids.get((path, scale))
        if known is not None:
            return known
        adapter = self._loaded.get(path)
        if adapter is None:
            adapter = self._lc.llama_adapter_lora_init(self._model, str(path).encode())
            if not adapter:
                raise ConfigError(
                    f"llama.cpp could not load the LoRA adapter {path} (not a GGUF adapter, "
                    "or made for another base model)"
                )
            self._loaded[path] = adapter
        self._table.append((adapter, scale))
        self._ids[(path, scale)] = len(self._table) - 1
        return len(self._table) - 1

    @property
    def current(self) -> int:
        return self._current

    def select(self, adapter_id: int) -> None:
        """Make the context's next decode apply adapter ``adapter_id`` (BASE: none)."""
        if adapter_id == self._current:
            return
        lc = self._lc
        if adapter_id == BASE:
            rc = lc.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            adapter, scale = self._table[adapter_id]
            rc = lc.llama_set_adapters_lora(
                self._ctx,
                (lc.llama_adapter_lora_p_ctypes * 1)(adapter),
                1,
                (ctypes.c_float * 1)(scale),
            )
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not set LoRA adapter {adapter_id} ({rc})")
        self._current = adapter_id
