"""Settings tree (pydantic-settings) and its YAML loader: the only place reading os.environ."""

from seekport.config.loader import load_settings
from seekport.config.settings import ModelConfig, Settings

__all__ = ["ModelConfig", "Settings", "load_settings"]
