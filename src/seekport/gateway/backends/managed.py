"""A managed external engine: the supervised child process plus an OpenAI-compatible client.

``backend: vllm | sglang | llama-server`` models are started by seekport (see
``supervisor.py`` beside this module) and then served exactly like a remote upstream.
"""

from __future__ import annotations

from seekport.config import ManagedModelConfig, OpenAIModelConfig, UpstreamModelConfig
from seekport.gateway.backends.openai_compat import OpenAICompatBackend
from seekport.gateway.backends.supervisor import ChildSpec, Supervisor, free_loopback_port
from seekport.telemetry.metrics import Metrics

LOOPBACK = "127.0.0.1"


def upstream_config(cfg: ManagedModelConfig, base_url: str) -> OpenAIModelConfig:
    """The managed model as the OpenAI-compatible upstream it becomes once started."""
    shared = cfg.model_dump(include=set(UpstreamModelConfig.model_fields))
    return OpenAIModelConfig.model_validate({**shared, "backend": "openai", "base_url": base_url})


class ManagedBackend(OpenAICompatBackend):
    def __init__(self, cfg: ManagedModelConfig, metrics: Metrics) -> None:
        port = cfg.port or free_loopback_port()
        super().__init__(upstream_config(cfg, f"http://{LOOPBACK}:{port}/v1"), metrics)
        self.kind = cfg.backend
        self._spec = ChildSpec(
            name=cfg.name,
            argv=cfg.argv(port, LOOPBACK),
            port=port,
            health_path=cfg.health_path,
            startup_timeout_s=cfg.startup_timeout_s,
        )
        self.supervisor: Supervisor | None = None

    async def start(self) -> None:
        self.supervisor = Supervisor(self._spec)
        await self.supervisor.start()
        await super().start()

    async def aclose(self) -> None:
        await super().aclose()
        if self.supervisor is not None:
            await self.supervisor.stop()

    def ready(self) -> bool:
        return self.supervisor is not None and self.supervisor.healthy
