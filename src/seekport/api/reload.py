"""Hot reload (SIGHUP, ``POST /admin/reload``): re-read the config and swap the routing table.

A config that fails validation is refused with its error and the running table stays. Otherwise
a deployment whose config is unchanged but for ``weight`` and ``tags`` keeps its backend, its
breaker and its counters (a canary split changes weights and reloads); a new or changed one gets
a new backend, started before the swap; one that is gone or replaced is closed once the calls
under way on it have ended, so answers in progress finish on the deployment they started on.
Settings read only at start (host, port, database, data directory) need a restart to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from seekport.config import ModelConfig, Settings
from seekport.errors import ConfigError, InvalidRequestError
from seekport.gateway.backends.base import ChatBackend
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.api.deps import Services

log = logging.getLogger("seekport.reload")

_RUNTIME = ("weight", "tags")  # changed in place, no new backend
_AT_START = ("host", "port", "data_dir", "database_url")
_RETIRE_WAIT_S = 0.2
_RETIRE_LIMIT_S = 24 * 3600.0


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
            return await self._apply(settings)

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
