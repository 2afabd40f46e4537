"""Settings tree (pydantic-settings) and its YAML loader: the only place reading os.environ."""

from seekport.config.loader import load_settings
from seekport.config.models import (
    LocalModelConfig,
    ManagedModelConfig,
    ModelConfig,
    ModelConfigBase,
    OpenAIModelConfig,
    UpstreamModelConfig,
)
from seekport.config.routing import BreakerConfig, RoutingConfig
from seekport.config.settings import AliasConfig, Settings

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
