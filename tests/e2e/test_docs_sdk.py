"""Every Python example in docs/sdk.md runs as it stands: each block in a fresh interpreter
with ``SEEKPORT_BASE_URL`` / ``SEEKPORT_API_KEY`` set, against a server whose
``deepseek-v4-pro`` and ``deepseek-v4-flash`` are the suite's upstream (thinking on, so the
stream example prints reasoning too)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def blocks() -> list[str]:
    found = [textwrap.dedent(m.group(2)) for m in BLOCK.finditer(DOC.read_text("utf-8"))]
    assert len(found) >= 5, "docs/sdk.md lost its examples"
    return found


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("docs-chaos")) as chaos:
        chaos.control(reasoning_tokens=2)
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docs")
    models = [
        {"name": name, "backend": "openai", "base_url": upstream.url, "upstream_model": name}
        for name in ("deepseek-v4-pro", "deepseek-v4-flash")
    ]
    with run_server(write_config(tmp, models, log_level="warning")) as s:
        yield s


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs(server: Server, index: int, tmp_path: Path) -> None:
    code = blocks()[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKPORT_")}
    env |= {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"example {index + 1} failed:\n{code}\n{out.stderr[-2000:]}"
    assert "tok0" in out.stdout or "deepseek-v4" in out.stdout, out.stdout
