"""The SDK's import closure: ``from seekport import Client`` loads no server dependency (a
client-only install has only httpx and pydantic), and ``import seekport`` loads no SDK."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "aiosqlite",
    "orjson",
    "yaml",
    "prometheus_client",
    "redis",
    "huey",
    "typer",
    "llama_cpp",
    "numpy",
    "seekport.api",
    "seekport.gateway",
    "seekport.store",
    "seekport.config",
    "seekport.engine",
)


def _modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_client_imports_no_server_dependency() -> None:
    loaded = _modules("from seekport import Client, AsyncClient")
    assert "httpx" in loaded and "seekport.sdk" in loaded
    assert not {m for m in loaded if m.split(".")[0] in SERVER_ONLY or m in SERVER_ONLY}


def test_plain_import_is_lazy() -> None:
    assert "seekport.sdk" not in _modules("import seekport")
