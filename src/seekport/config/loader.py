"""Load Settings from YAML + env + CLI overrides, with errors that name the field and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from seekport.config.settings import Settings
from seekport.errors import ConfigError


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        hint = ""
        if e["type"] == "extra_forbidden":
            hint = " — unknown field; check its spelling against docs/configuration.md"
        lines.append(f"  {loc}: {e['msg']}{hint}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of fields (host:, port:, ...)")
    return data


def load_settings(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the Settings tree. Priority: overrides (CLI) > SEEKPORT_* env > YAML > defaults."""
    if config_file is None:
        config_file = os.environ.get("SEEKPORT_CONFIG") or None
    file_data: dict[str, Any] = {}
    source = "defaults and SEEKPORT_* environment"
    if config_file is not None:
        file_data = read_yaml(Path(config_file).expanduser())
        source = f"{config_file}"
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    # Init kwargs outrank env vars in pydantic-settings, so YAML keys that an env var also
    # sets are dropped here to keep env > YAML.
    env_set = {f for f in Settings.model_fields if f"SEEKPORT_{f.upper()}" in os.environ}
    merged = {k: v for k, v in file_data.items() if k not in env_set}
    merged.update(cli)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from exc
