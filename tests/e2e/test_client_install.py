"""A client-only install: ``pip install .`` (no extras) into a fresh virtual environment gets
the SDK and the CLI's client commands, and none of the server's dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("fastapi", "uvicorn", "sqlalchemy", "pydantic-settings", "llama-cpp-python")


def test_client_only_install(server: Server, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py, exe = venv / "bin" / "python", venv / "bin" / "seekport"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"httpx", "pydantic", "typer"} <= names
    assert not names & set(SERVER_ONLY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKPORT_")}
    env |= {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key}
    code = "from seekport import Client\nwith Client() as c: print(len(c.models.list().data))"
    sdk = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert sdk.returncode == 0 and int(sdk.stdout) >= 1, sdk.stderr
    ask = subprocess.run(
        [str(exe), "ask", "hi", "-m", "deepseek-chat", "--max-tokens", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ask.returncode == 0 and ask.stdout == "tok0 tok1\n", ask.stderr
    serve = subprocess.run(
        [str(exe), "serve"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert serve.returncode == 2 and "pip install 'seekport[server]'" in serve.stderr
