"""A managed external engine: the supervised child process plus an OpenAI-compatible client.

``backend: vllm | sglang | llama-server`` models are started by seekport (see
``supervisor.py`` beside this module) and then served exactly like a remote upstream.
Starting does not wait for the engine: until it answers its health check the model is not
ready (``/health/ready`` 503) and its requests get 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from seekport.config import ManagedModelConfig, OpenAIModelConfig, UpstreamModelConfig
from seekport.errors import OverloadedError
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.openai_compat import OpenAICompatBackend
from seekport.gateway.backends.supervisor import ChildSpec, Supervisor, free_loopback_port
from seekport.protocol.events import Event
from seekport.telemetry.metrics import Metrics

LOOPBACK = "127.0.0.1"
STARTING_RETRY_AFTER_S = 5.0


def upstream_config(cfg: ManagedModelConfig, base_url: str) -> OpenAIModelConfig:
    """The managed model as the OpenAI-compatible upstream it becomes once started."""
    shared = cfg.model_dump(include=set(UpstreamModelConfig.model_fields))
    return OpenAIModelConfig.model_validate({**shared, "backend": "openai", "base_url": base_url})


def log_file(log_dir: Path, model: str) -> Path:
    """``<log_dir>/<model>.log``; a ``/`` in the model id (``org/model``) becomes ``_``."""
    return log_dir / f"{model.replace('/', '_')}.log"


class ManagedBackend(OpenAICompatBackend):
    def __init__(
        self, cfg: ManagedModelConfig, metrics: Metrics, *, log_dir: Path | None = None
    ) -> None:
        """``log_dir``: where the engine's output goes (``<model>.log``); None discards it."""
        port = cfg.port or free_loopback_port()
        super().__init__(upstream_config(cfg, f"http://{LOOPBACK}:{port}/v1"), metrics)
        self.kind = cfg.backend
        self.supervisor = Supervisor(
            ChildSpec(
                name=cfg.name,
                argv=cfg.argv(port, LOOPBACK),
                port=port,
                health_path=cfg.health_path,
                startup_timeout_s=cfg.startup_timeout_s,
                log_path=log_file(log_dir, cfg.name) if log_dir is not None else None,
            )
        )

    async def start(self) -> None:
        """Returns at once: the engine starts (and is retried) in the background."""
        await super().start()
        self.supervisor.launch()

    async def aclose(self) -> None:
        await super().aclose()
        await self.supervisor.stop()

    def ready(self) -> bool:
        return self.supervisor.healthy

    async def generate(self, call: BackendCall) -> AsyncIterator[Event]:
        self._check_started()
        return await super().generate(call)

    def _check_started(self) -> None:
        if not self.supervisor.healthy:
            raise OverloadedError(
                f"model '{self.model}' is starting: its engine is not ready yet; retry later",
                retry_after=STARTING_RETRY_AFTER_S,
            )
