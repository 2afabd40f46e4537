"""Load Settings from YAML + env + CLI overrides, with errors that name the field and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource

from seekport.config.models import patch_entries
from seekport.config.settings import Settings
from seekport.errors import ConfigError


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        hint = ""
        if e["type"] == "extra_forbidden":
            hint = " — unknown field; check its spelling against docs/configuration.md"
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += "." + str(e.get("ctx", {}).get("discriminator", "")).strip("'")
        elif e["type"] == "missing":
            hint = " — this backend needs it; see docs/configuration.md"
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
    try:
        merged = _under_env(file_data, EnvSettingsSource(Settings)())
        merged.update(cli)
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from exc
    except ValueError as exc:  # an env patch for a models[] entry that does not exist
        raise ConfigError(f"invalid configuration ({source}): {exc}") from exc


def _under_env(file_data: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The YAML values, less what ``SEEKPORT_*`` env vars set.

    Init kwargs outrank env vars in pydantic-settings, so a YAML key that an env var also sets
    is dropped here to keep env > YAML; a nested env var (``SEEKPORT_MODELS__0__N_THREADS``)
    instead changes that one field of the YAML file's entry.
    """
    merged = dict(file_data)
    for key, value in env.items():
        if key not in merged:
            continue
        if key == "models" and isinstance(value, dict) and isinstance(merged[key], list):
            merged[key] = patch_entries(merged[key], value)
        else:
            del merged[key]
    return merged
