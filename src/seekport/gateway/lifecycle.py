"""Model lifecycle: the one way the CLI (and later the admin API) reaches the engine's model
tools. Quantise a registered model (or the bundled one) into a new version, measure a version
in a process of its own, and resolve a config's ``path`` (``bundled``, a file, or
``registry:NAME@VERSION``) to the file the engine loads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from seekport.engine.finetune.train import FinetuneUnavailable, Step, TrainConfig
from seekport.errors import SeekportError
from seekport.store.registry import (
    PREFIX,
    ModelVersion,
    Registry,
    RegistryError,
    check_name,
    sha256_of,
)

__all__ = ["FinetuneUnavailable", "ModelLifecycle", "Step", "TrainConfig"]

BUNDLED = "bundled"
BUNDLED_NAME = "smollm2-135m-instruct"
MEASURE_TIMEOUT_S = 900


def bundled_path() -> Path:
    from seekport.engine.runners.llamacpp import bundled_model_path

    return bundled_model_path()


def resolve_adapter(adapter: str | None, registry: Registry) -> str | None:
    """The file of a model entry's ``adapter`` (a path, or ``registry:NAME@VERSION``)."""
    if adapter is None or not adapter.startswith(PREFIX):
        return adapter
    entry = registry.get(adapter.removeprefix(PREFIX))
    if entry.kind != "adapter":
        raise RegistryError(f"{entry.ref} is a {entry.kind}, not an adapter")
    return str(registry.resolve(entry.ref))


def resolve_path(path: str, registry: Registry) -> tuple[str, str | None]:
    """(the file the engine loads, the registry version it is or None) for a config's
    ``path``: ``registry:NAME[@VERSION]`` becomes that version's file; ``bundled`` and file
    paths are left to the engine."""
    if not path.startswith(PREFIX):
        return path, None
    entry = registry.get(path.removeprefix(PREFIX))
    if entry.kind != "model":
        raise RegistryError(f"{entry.ref} is an {entry.kind}, not a model")
    return str(registry.resolve(entry.ref)), entry.ref


class ModelLifecycle:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _work_for(self, name: str, version: str) -> tempfile.TemporaryDirectory[str]:
        """A work directory in the registry for the new version ``name@version`` (a
        RegistryError if that version exists)."""
        if any(e.version == version for e in self.registry.entries(name)):
            raise RegistryError(
                f"{name}@{version} exists already; pass --version to name the new one"
            )
        self.registry.root.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=self.registry.root, prefix=".work-")

    def source(self, ref: str) -> tuple[Path, str, str]:
        """(file, parent reference, default name) of a model to derive from: ``bundled`` or
        a registry reference."""
        if ref == BUNDLED:
            return bundled_path(), BUNDLED, BUNDLED_NAME
        entry = self.registry.get(ref)
        return self.registry.resolve(entry.ref), entry.ref, entry.name

    def quantize(
        self,
        ref: str,
        target: str,
        *,
        name: str | None = None,
        version: str | None = None,
        n_threads: int | None = None,
    ) -> ModelVersion:
        """Quantise ``ref`` to ``target`` as ``name@version`` (default: the source's name,
        version = the target)."""
        from seekport.engine.quantize import ftype_of, quantize, tensor_mix

        ftype_of(target)  # a bad target fails before any work
        src, parent, default_name = self.source(ref)
        name = check_name(name or default_name)
        version = version or target.lower()
        with self._work_for(name, version) as work:
            out = Path(work) / f"{name}.{target.upper()}.gguf"
            quantize(src, out, target, n_threads)
            mix = tensor_mix(out)
            return self.registry.add(
                name,
                out,
                source=f"quantize {target.lower()}",
                version=version,
                parent=parent,
                quantization=target.upper(),
                move=True,
                figures={"tensor_mix": mix},
            )

    def merge(
        self,
        adapter_ref: str,
        target: str,
        *,
        scale: float = 1.0,
        name: str | None = None,
        version: str | None = None,
    ) -> ModelVersion:
        """Merge a registered adapter into its base (the adapter's parent) at ``scale`` as a
        new model version (F16, or Q8_0 quantised from it); below Q8_0 is refused (see
        ``engine.merge``). Default: ``<adapter name>-merged@<target>``."""
        from seekport.engine.merge import check_target, merge_to_f16
        from seekport.engine.quantize import quantize, tensor_mix

        target = check_target(target)
        adapter = self.registry.get(adapter_ref)
        if adapter.kind != "adapter":
            raise RegistryError(f"{adapter.ref} is a {adapter.kind}, not an adapter")
        if not adapter.parent:
            raise RegistryError(f"{adapter.ref} names no base model (parent) to merge into")
        base, _, _ = self.source(adapter.parent)
        name = check_name(name or f"{adapter.name}-merged")
        version = version or target
        with self._work_for(name, version) as work:
            f16 = Path(work) / f"{name}.F16.gguf"
            merged = merge_to_f16(base, self.registry.resolve(adapter.ref), f16, scale)
            out = f16
            if target != "f16":
                out = Path(work) / f"{name}.{target.upper()}.gguf"
                quantize(f16, out, target)
            return self.registry.add(
                name,
                out,
                source=f"merge {adapter.ref} into {adapter.parent} ×{scale:g}",
                version=version,
                parent=adapter.ref,
                quantization=target.upper(),
                move=True,
                figures={
                    "tensor_mix": tensor_mix(out),
                    "merged": {"adapter": adapter.ref, "scale": scale, "tensors": merged},
                },
            )

    def measure(self, ref: str, threads: Sequence[int] = (1, 2)) -> dict[str, Any]:
        """Measure a version (``bundled``: the bundled file, not stored) in a child process;
        a registry version keeps the figures."""
        from seekport.engine.quantize import tensor_mix

        path, _, _ = self.source(ref)
        cmd = [
            sys.executable,
            "-m",
            "seekport.engine.measure",
            str(path),
            "--threads",
            ",".join(str(t) for t in threads),
        ]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        try:
            done = subprocess.run(  # noqa: S603 - our own module, on a registered file
                cmd,
                check=False,
                capture_output=True,
                text=True,
                timeout=MEASURE_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise SeekportError(f"measuring {ref} took over {MEASURE_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SeekportError(f"measuring {ref} failed: {tail}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        figures["tensor_mix"] = tensor_mix(path)
        if ref != BUNDLED:
            entry = self.registry.get(ref)
            self.registry.set_figures(entry.ref, {**entry.figures, **figures})
        return figures

    def finetune(
        self,
        base_ref: str,
        data: Path,
        cfg: TrainConfig,
        *,
        name: str | None = None,
        scale: float = 1.0,
        device: str = "auto",
        progress: Callable[[Step], None] | None = None,
    ) -> ModelVersion:
        """Train a LoRA adapter for ``base_ref`` on the JSONL ``data`` and register it (kind
        ``adapter``, parent the base) with its training record. A run with the same base,
        data and settings resumes from its last checkpoint."""
        from seekport.engine.finetune.data import load_examples, split
        from seekport.engine.finetune.train import train

        examples = load_examples(data)
        train_rows, heldout = split(examples)
        src, parent, default_name = self.source(base_ref)
        name = check_name(name or f"{default_name}-lora")
        key = hashlib.sha256(
            json.dumps([parent, sha256_of(data), asdict(cfg)], sort_keys=True).encode()
        ).hexdigest()[:16]
        work = self.registry.root / f".finetune-{key}"
        work.mkdir(parents=True, exist_ok=True)
        adapter, record = train(
            src, train_rows, heldout, work, cfg, name=name, device=device, progress=progress
        )
        entry = self.registry.add(
            name,
            adapter,
            source=f"finetune {data.name}",
            kind="adapter",
            parent=parent,
            move=True,
            figures={
                "training": asdict(record),
                "rows": len(train_rows),
                "heldout_rows": len(heldout),
                "scale": scale,
            },
        )
        shutil.rmtree(work, ignore_errors=True)
        return entry
