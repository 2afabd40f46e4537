"""The agent CLIs of docs/sdk.md against the real server, offline: Claude Code (``claude -p``,
the Anthropic Messages API at ``/anthropic``) and Codex CLI (``codex exec``, the Responses
API at ``/v1``). Both are installed from ``tests/agents/package.json`` with ``npm ci`` (pinned
versions) on first use; they talk only to 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import Chaos, Server

AGENTS = Path(__file__).resolve().parents[1] / "agents"
MODEL = "deepseek-chat"
ANSWER = " ".join(f"tok{i}" for i in range(16))


@pytest.fixture(scope="module")
def agents() -> Path:
    bin_dir = AGENTS / "node_modules" / ".bin"
    if not (bin_dir / "claude").exists() or not (bin_dir / "codex").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=AGENTS,
            check=True,
            timeout=600,
        )
    return bin_dir


def _env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **extra}


def test_claude_code(agents: Path, server: Server, fresh_chaos: Chaos, tmp_path: Path) -> None:
    env = _env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=server.url + "/anthropic",
        ANTHROPIC_AUTH_TOKEN=server.key,
        ANTHROPIC_MODEL=MODEL,
        ANTHROPIC_DEFAULT_HAIKU_MODEL=MODEL,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
    )
    out = subprocess.run(
        [str(agents / "claude"), "-p", "hello", "--output-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["is_error"] is False and result["result"] == ANSWER
    assert result["usage"]["output_tokens"] == 16
    sent = fresh_chaos.requests(5)
    assert sent and {r["model"] for r in sent} == {MODEL}
    assert all(r["outcome"] == "ok" for r in sent)


def test_codex_cli(agents: Path, server: Server, fresh_chaos: Chaos, tmp_path: Path) -> None:
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        f'model = "{MODEL}"\n'
        'model_provider = "seekport"\n'
        "[model_providers.seekport]\n"
        'name = "seekport"\n'
        f'base_url = "{server.url}/v1"\n'
        'env_key = "SEEKPORT_API_KEY"\n'
        'wire_api = "responses"\n',
        encoding="utf-8",
    )
    env = _env(tmp_path / "home", CODEX_HOME=str(codex_home), SEEKPORT_API_KEY=server.key)
    out = subprocess.run(
        [str(agents / "codex"), "exec", "--skip-git-repo-check", "hello"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ANSWER
    sent = fresh_chaos.requests(5)
    assert sent and {r["model"] for r in sent} == {MODEL}
