"""The in-process engines of the local model entries: one per base model file and engine
settings, shared by the entries that differ only in what a request sees (name, adapter,
sampling defaults, parsers).

Several fine-tunes of one base are served from one copy of its weights and one KV cache:
each entry loads its adapter over the shared model and its sequences carry the adapter's id;
the runner decodes each step once per adapter present (``engine.runners.lora``). An engine
is built, warmed up and metered by the first entry that needs it and closed when the last
one lets go; its metrics are labelled with that first entry's name.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seekport.config import LocalModelConfig
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.engine.async_engine import AsyncEngine
    from seekport.engine.scheduler import StepPlan

log = logging.getLogger("seekport.engine")


def engine_key(cfg: LocalModelConfig, path: Path) -> tuple[object, ...]:
    """What two entries must agree on to share an engine."""
    return (
        str(path.resolve()),
        cfg.context_length,
        cfg.n_threads,
        cfg.max_num_seqs,
        cfg.max_step_tokens,
        cfg.max_prefill_while_decoding,
        cfg.max_waiting,
    )


@dataclass(eq=False)
class SharedEngine:
    """One runner and its engine loop, and the entries using them."""

    name: str  # the entry that built it: its metrics label
    runner: Any
    engine: AsyncEngine
    users: int = 0
    warm: asyncio.Event = field(default_factory=asyncio.Event)


class LocalEngines:
    """The shared engines of one server (``LocalBackend`` builds a private one without)."""

    def __init__(self) -> None:
        self._engines: dict[tuple[object, ...], SharedEngine] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._engines)

    async def acquire(
        self, cfg: LocalModelConfig, metrics: Metrics | None, runner: Any = None
    ) -> tuple[SharedEngine, bool]:
        """The engine for ``cfg`` (a resolved ``path``), built unless an entry with the same
        base and settings holds one; True when it is new (the caller warms it up and sets
        ``warm``). An injected ``runner`` (a test's) gets an engine of its own."""
        from seekport.engine.runners.llamacpp import resolve_model_path

        async with self._lock:
            if runner is not None:
                shared = self._build(cfg, metrics, runner)
                shared.users = 1
                return shared, True
            path = resolve_model_path(cfg.path)
            key = engine_key(cfg, path)
            shared_or_none = self._engines.get(key)
            built = shared_or_none is None
            if shared_or_none is None:
                from seekport.engine.runners.llamacpp import LlamaCppRunner

                made = await asyncio.to_thread(
                    LlamaCppRunner,
                    path,
                    n_ctx=cfg.context_length,
                    n_threads=cfg.n_threads,
                    max_num_seqs=cfg.max_num_seqs,  # None: the runner sizes it from memory
                    n_batch=cfg.max_step_tokens,
                )
                shared_or_none = self._engines[key] = self._build(cfg, metrics, made)
            else:
                log.info(
                    "local model shares an engine",
                    extra={"fields": {"model": cfg.name, "engine": shared_or_none.name}},
                )
            shared_or_none.users += 1
            return shared_or_none, built

    def _build(self, cfg: LocalModelConfig, metrics: Metrics | None, runner: Any) -> SharedEngine:
        from seekport.engine.async_engine import AsyncEngine
        from seekport.engine.scheduler import SchedulerConfig

        name = cfg.name
        on_step = _step_observer(metrics, name) if metrics is not None else None
        sched = SchedulerConfig(
            max_num_seqs=cfg.max_num_seqs or runner.max_num_seqs,
            max_seq_cells=cfg.context_length,
            max_step_tokens=cfg.max_step_tokens,
            max_prefill_while_decoding=cfg.max_prefill_while_decoding,
            max_waiting=cfg.max_waiting,
        )
        engine = AsyncEngine(runner, sched, name=name, on_step=on_step)
        if metrics is not None:
            m = metrics
            m.engine_waiting.labels(name).set_function(lambda: engine.num_waiting)
            m.engine_running.labels(name).set_function(lambda: engine.num_running)
            m.engine_kv_cells.labels(name).set_function(lambda: engine.kv_cells_used)
            m.engine_waiting_limit.labels(name).set(sched.max_waiting)
            m.engine_slots.labels(name).set(sched.max_num_seqs)
            m.engine_kv_cells_total.labels(name).set(sched.kv_cells)
        return SharedEngine(name, runner, engine)

    async def release(self, shared: SharedEngine) -> None:
        """One entry lets go; the last one closes the engine (open calls end with 503)."""
        async with self._lock:
            shared.users -= 1
            if shared.users > 0:
                return
            for key, held in list(self._engines.items()):
                if held is shared:
                    del self._engines[key]
        await shared.engine.aclose()
        if hasattr(shared.runner, "close"):
            shared.runner.close()


def _step_observer(metrics: Metrics, name: str) -> Any:
    def observe(plan: StepPlan) -> None:
        """Engine thread, after each step: token and batch metrics (thread-safe)."""
        if not plan.work:
            return
        decode = plan.num_decode
        metrics.engine_tokens.labels(name, "decode").inc(decode)
        metrics.engine_tokens.labels(name, "prefill").inc(plan.num_tokens - decode)
        metrics.engine_batch.labels(name).observe(len(plan.work))
        for w in plan.work:
            if w.pos == w.seq.cached_tokens and w.seq.cached_tokens:  # first chunk after a hit
                metrics.engine_prefix_hits.labels(name).inc(w.seq.cached_tokens)

    return observe
