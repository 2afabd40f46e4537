"""Managed engines start without blocking the server: it listens at once, answers 503 (with
Retry-After) for the model and for /health/ready until the engine is healthy, retries a start
that fails with backoff, and writes the engine's output to data_dir/logs/<model>.log."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from tests.harness import (
    SEEKPORT,
    UPSTREAM_SCRIPT,
    Server,
    free_port,
    run_cli,
    stop_process,
    wait_http,
    write_config,
)

BODY = {"model": "slow-engine", "messages": [{"role": "user", "content": "hi"}]}


@contextlib.contextmanager
def listening_server(config: Path) -> Iterator[Server]:
    """``seekport serve``, yielded once it listens (``run_server`` waits for ready instead)."""
    data_dir = Path(yaml.safe_load(config.read_text())["data_dir"])
    created = run_cli(config, "keys", "create", "--name", "tests", "--role", "superadmin")
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    out = (config.parent / "server.log").open("wb")
    proc = subprocess.Popen(
        [*SEEKPORT, "serve", "--config", str(config), "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/live", proc=proc, timeout_s=60)
        yield Server(proc, port, key, data_dir, config, {})
    finally:
        stop_process(proc)
        out.close()


def slow_engine(delay_s: float) -> list[str]:
    """A child that says "loading-weights" on stderr (a text its command line does not hold,
    as the server logs that), takes ``delay_s`` to load, then serves."""
    chaos = f"{shlex.quote(sys.executable)} {shlex.quote(str(UPSTREAM_SCRIPT))}"
    return [
        "sh",
        "-c",
        f"printf 'load%s\\n' ing-weights >&2; sleep {delay_s}; "
        f"exec {chaos} --port {{port}} --name child",
    ]


def chat(server: Server) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.key}"}
    return httpx.post(server.url + "/v1/chat/completions", json=BODY, headers=headers, timeout=30)


def test_server_listens_and_answers_503_while_the_engine_starts(tmp_path: Path) -> None:
    model = {
        "name": "slow-engine",
        "backend": "vllm",
        "command": slow_engine(5),
        "health_path": "/healthz",
        "upstream_model": "deepseek-chat",
    }
    # tried once: with retries, the router would wait out the engine's Retry-After instead
    config = write_config(tmp_path, [model], routing={"max_retries": 0})
    with listening_server(config) as server:
        ready = httpx.get(server.url + "/health/ready")
        assert ready.status_code == 503, "the engine cannot be healthy yet"
        early = chat(server)
        assert early.status_code == 503, early.text
        assert early.headers["retry-after"] == "5"
        assert early.json()["error"]["code"] == "server_overloaded"
        assert "starting" in early.json()["error"]["message"]

        wait_http(server.url + "/health/ready", proc=server.proc, timeout_s=60)
        late = chat(server)
        assert late.status_code == 200, late.text
        assert late.json()["system_fingerprint"] == "fp_child"

        log = (server.data_dir / "logs" / "slow-engine.log").read_text()
    assert "loading-weights" in log  # the child's stderr
    assert '"port"' in log  # the child's stdout (the chaos upstream's first line)
    assert "starting (attempt 1)" in log and "healthy" in log
    server_out = (tmp_path / "server.log").read_text()
    assert "loading-weights" not in server_out, "engine output belongs in its own log"
    usage = sqlite_statuses(server.data_dir)
    assert 503 in usage and 200 in usage, "both requests left their usage record"


def test_a_start_that_fails_is_retried_with_backoff(tmp_path: Path) -> None:
    model = {
        "name": "slow-engine",
        "backend": "sglang",
        "command": [str(tmp_path / "no-such-engine"), "--port", "{port}"],
    }
    with listening_server(write_config(tmp_path, [model])) as server:
        log_path = server.data_dir / "logs" / "slow-engine.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log_path.exists() and log_path.read_text().count("cannot start") >= 3:
                break
            time.sleep(0.2)
        assert server.proc.poll() is None, "a failing engine does not take the server down"
        assert httpx.get(server.url + "/health/ready").status_code == 503
        assert chat(server).status_code == 503
        log = log_path.read_text()
    assert log.count("starting (attempt") >= 3
    assert "No such file or directory" in log
    waits = [float(w) for w in re.findall(r"starting again in ([\d.]+) s", log)]
    assert waits[:3] == [1, 2, 4], f"exponential backoff from 1 s: {waits}"


async def test_requests_before_the_services_exist_get_503_not_500(tmp_path: Path) -> None:
    """The app outside its lifespan (starting or stopping): 503 with Retry-After."""
    from seekport.api import create_app
    from seekport.config import load_settings

    app = create_app(load_settings(overrides={"data_dir": tmp_path}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/v1/models", headers={"Authorization": "Bearer sk-x"})
        chat = await client.post("/v1/chat/completions", json={}, headers={"x-request-id": "c-1"})
        metrics = await client.get("/metrics")
    for resp in (r, chat, metrics):
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "server_overloaded"
        assert resp.headers["x-request-id"]  # every 5xx names the request
    assert chat.headers["x-request-id"] == "c-1"


def sqlite_statuses(data_dir: Path) -> list[int]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(data_dir / "seekport.db")) as db:
        return [int(s) for (s,) in db.execute("select status from usage_records")]
