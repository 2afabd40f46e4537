"""A managed external engine: the supervised child process plus an OpenAI-compatible client.

``backend: vllm | sglang | llama-server`` models are started by seekport (see
``engine/supervisor.py``) and then served exactly like a remote upstream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seekport.config import ModelConfig
from seekport.errors import ConfigError
from seekport.gateway.backends.openai_compat import OpenAICompatBackend
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.engine.supervisor import Supervisor

LOOPBACK = "127.0.0.1"


class ManagedBackend(OpenAICompatBackend):
    def __init__(self, cfg: ModelConfig, metrics: Metrics) -> None:
        from seekport.engine.supervisor import ChildSpec, free_loopback_port

        assert cfg.command
        port = cfg.port or free_loopback_port()
        try:
            argv = [arg.format(port=port, host=LOOPBACK) for arg in cfg.command]
        except (KeyError, IndexError) as exc:
            raise ConfigError(
                f"model '{cfg.name}': command may use only {{port}} and {{host}} placeholders"
            ) from exc
        upstream = cfg.model_copy(update={"base_url": f"http://{LOOPBACK}:{port}/v1"})
        super().__init__(upstream, metrics)
        self.kind = cfg.backend
        self._spec = ChildSpec(
            name=cfg.name,
            argv=argv,
            port=port,
            health_path=cfg.health_path,
            startup_timeout_s=cfg.startup_timeout_s,
        )
        self.supervisor: Supervisor | None = None

    async def start(self) -> None:
        from seekport.engine.supervisor import Supervisor

        self.supervisor = Supervisor(self._spec)
        await self.supervisor.start()
        await super().start()

    async def aclose(self) -> None:
        await super().aclose()
        if self.supervisor is not None:
            await self.supervisor.stop()

    def ready(self) -> bool:
        return self.supervisor is not None and self.supervisor.healthy
