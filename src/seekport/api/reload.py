"""Hot reload (SIGHUP, ``POST /admin/reload``): re-read the config and swap the routing table.

A config that fails validation is refused with its error and the running table stays. Otherwise
a deployment whose config is unchanged but for ``weight`` and ``tags`` keeps its backend, its
breaker and its counters (a canary split changes weights and reloads); a new or changed one gets
a new backend, started before the swap; one that is gone or replaced is closed once the calls
under way on it have ended, so answers in progress finish on the deployment they started on.
Settings read only at start (host, port, database, data directory) need a restart to change.

``use`` switches a local model to another registry version the same way (the new backend
warmed up before the swap, the old one drained), and ``rollback`` back; the switch holds
across reloads until a restart (the config file stays the source of truth at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from seekport.config import LocalModelConfig, ModelConfig, Settings
from seekport.errors import (
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    SeekportError,
)
from seekport.gateway.backends.base import ChatBackend
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.store.registry import PREFIX, Registry
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.api.deps import Services

log = logging.getLogger("seekport.reload")

_RUNTIME = ("weight", "tags")  # changed in place, no new backend
_AT_START = ("host", "port", "data_dir", "database_url")
_RETIRE_WAIT_S = 0.2
_RETIRE_LIMIT_S = 24 * 3600.0


def _local_paths(settings: Settings, model: str) -> list[str]:
    """The paths of ``model``'s local deployments; 404 when it has none."""
    paths = [m.path for m in settings.models if isinstance(m, LocalModelConfig) and m.name == model]
    if not paths:
        raise ModelNotFoundError(
            f"'{model}' is not a local chat model served here (only local models switch versions)",
            param="model",
        )
    return paths


def _with_path(settings: Settings, model: str, path: str) -> Settings:
    models = [
        m.model_copy(update={"path": path})
        if isinstance(m, LocalModelConfig) and m.name == model
        else m
        for m in settings.models
    ]
    return settings.model_copy(update={"models": models})


def _same_backend(a: ModelConfig, b: ModelConfig) -> bool:
    return type(a) is type(b) and a.model_dump(exclude=set(_RUNTIME)) == b.model_dump(
        exclude=set(_RUNTIME)
    )


class Reloader:
    def __init__(
        self,
        services: Services,
        load: Callable[[], Settings],
        build: Callable[[str, ModelConfig, Settings], ChatBackend],
        deploy: Callable[[str, ModelConfig, ChatBackend, Settings], Deployment],
        live: list[ChatBackend],
        metrics: Metrics,
    ) -> None:
        self._svc = services
        self._load = load  # the same sources as at start: file, SEEKPORT_* env, CLI flags
        self._build = build
        self._deploy = deploy
        self._live = live  # every started backend; the lifespan closes what is left
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        # `models use`: the path each switched model serves now, over what the config says
        # (kept across reloads until a restart), and the paths it served before (rollback)
        self._pins: dict[str, str] = {}
        self._history: dict[str, list[str]] = {}

    async def reload(self) -> dict[str, Any]:
        """Swap in the config as it reads now; raises InvalidRequestError (400) with the
        validation error when it is refused."""
        async with self._lock:
            try:
                settings = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                raise InvalidRequestError(
                    f"config refused, the running one stays: {exc.message}", code="invalid_config"
                ) from exc
            for model, path in self._pins.items():
                if _local_paths(settings, model):
                    settings = _with_path(settings, model, path)
            return await self._apply(settings)

    # ---- switching a local model's version (`seekport models use`, POST /admin/models/…)

    async def use(self, model: str, ref: str) -> dict[str, Any]:
        """Serve ``model`` from the registry version ``ref``: its local deployments get new
        backends, loaded and warmed up before the swap; the old ones finish the calls under
        way on them (streams included), then close. A version that fails to load leaves the
        running one in place."""
        async with self._lock:
            settings = self._svc.settings
            current = _local_paths(settings, model)
            entry = await asyncio.to_thread(self._registry(settings).verify, ref)
            target = f"{PREFIX}{entry.ref}"
            summary = await self._switch(settings, model, target)
            if current != [target]:
                self._history.setdefault(model, []).append(current[0])
            self._pins[model] = target
            return {**summary, "model": model, "serving": target, "previous": current[0]}

    async def rollback(self, model: str) -> dict[str, Any]:
        """Serve ``model`` from the path it served before its last ``use``."""
        async with self._lock:
            settings = self._svc.settings
            current = _local_paths(settings, model)
            history = self._history.get(model)
            if not history:
                raise InvalidRequestError(
                    f"no earlier version of '{model}' to roll back to", param="model"
                )
            summary = await self._switch(settings, model, history[-1])
            previous = history.pop()
            self._pins[model] = previous
            return {**summary, "model": model, "serving": previous, "previous": current[0]}

    def versions(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "serving": _local_paths(self._svc.settings, model)[0],
            "earlier": list(reversed(self._history.get(model, []))),
        }

    async def _switch(self, settings: Settings, model: str, path: str) -> dict[str, Any]:
        try:
            return await self._apply(_with_path(settings, model, path))
        except (SeekportError, OSError, ValueError) as exc:
            message = exc.message if isinstance(exc, SeekportError) else str(exc)
            raise InvalidRequestError(
                f"could not start '{model}' from {path}; it keeps serving what it did: {message}",
                code="model_not_started",
            ) from exc

    @staticmethod
    def _registry(settings: Settings) -> Registry:
        return Registry(settings.resolved_models_dir)

    async def _apply(self, settings: Settings) -> dict[str, Any]:
        old = self._svc.chat.router.table
        by_id = {d.id: d for d in old}
        deployments: list[Deployment] = []
        started: list[ChatBackend] = []
        kept, added = [], []
        try:
            for dep_id, cfg in zip(settings.deployment_ids(), settings.models, strict=True):
                if cfg.kind != "chat":
                    continue  # embedding models are read at start (a change needs a restart)
                prev = by_id.get(dep_id)
                if prev is not None and prev.config is not None and _same_backend(prev.config, cfg):
                    prev.weight, prev.tags, prev.config = cfg.weight, dict(cfg.tags), cfg
                    deployments.append(prev)
                    kept.append(dep_id)
                    continue
                backend = self._build(dep_id, cfg, settings)
                await backend.start()
                started.append(backend)
                deployments.append(self._deploy(dep_id, cfg, backend, settings))
                added.append(dep_id)
        except BaseException:
            for backend in started:
                await backend.aclose()
            raise
        self._live.extend(started)
        self._svc.chat.swap(
            RoutingTable.of(deployments, settings.routing),
            settings.aliases,
            settings.pricing,
            settings.model_limits,
            settings.cache,
            settings.guard,
            settings.content_log,
        )
        restart = [f for f in _AT_START if getattr(settings, f) != getattr(self._svc.settings, f)]
        self._svc.settings = settings
        keep = {id(d) for d in deployments}
        retired = [d for d in old if id(d) not in keep]
        for d in retired:
            task = asyncio.create_task(self._retire(d), name=f"retire {d.id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        summary = {
            "models": settings.model_names(),
            "kept": kept,
            "added": added,
            "retired": [d.id for d in retired],
            "needs_restart": restart,
        }
        log.info("config reloaded", extra={"fields": summary})
        return summary

    async def _retire(self, dep: Deployment) -> None:
        """Close a deployment the new table dropped once its calls have ended."""
        waited = 0.0
        while dep.in_flight > 0 and waited < _RETIRE_LIMIT_S:
            await asyncio.sleep(_RETIRE_WAIT_S)
            waited += _RETIRE_WAIT_S
        if dep.backend in self._live:
            self._live.remove(dep.backend)
            await dep.backend.aclose()
        with contextlib.suppress(KeyError):  # a gauge never set has no series to remove
            self._metrics.breaker_state.remove(dep.model, dep.id)

    def on_signal(self) -> None:
        """SIGHUP: reload in the background; a refused config is logged, the old one stays."""
        task = asyncio.get_running_loop().create_task(self._reload_logged(), name="reload")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except InvalidRequestError as exc:
            log.error("SIGHUP reload refused", extra={"fields": {"error": exc.message}})
