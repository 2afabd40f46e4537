"""Settings tree (pydantic-settings) and its YAML loader: the only place reading os.environ."""

from seekport.config.loader import load_settings
from seekport.config.routing import BreakerConfig, RoutingConfig
from seekport.config.settings import (
    AliasConfig,
    LocalModelConfig,
    ManagedModelConfig,
    ModelConfig,
    ModelConfigBase,
    OpenAIModelConfig,
    Settings,
    UpstreamModelConfig,
)

__all__ = [
    "AliasConfig",
    "BreakerConfig",
    "LocalModelConfig",
    "ManagedModelConfig",
    "ModelConfig",
    "ModelConfigBase",
    "OpenAIModelConfig",
    "RoutingConfig",
    "Settings",
    "UpstreamModelConfig",
    "load_settings",
]
