"""Test harness: real processes on 127.0.0.1 — the chaos upstream (tests/upstream.py) and
seekport itself."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
SEEKPORT = [sys.executable, "-m", "seekport"]
BUNDLED = "smollm2-135m-instruct"


UPSTREAM_SCRIPT = REPO / "tests" / "upstream.py"
"""The suite's own fault-injecting OpenAI-compatible upstream, run as a child process."""


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    *,
    timeout_s: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
    ok: tuple[int, ...] = (200,),
) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code in ok:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s (last: {last})")


@dataclass
class Chaos:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, **changes: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/__chaos", json=changes, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/__stats", timeout=5).json())

    def requests(self, last: int = 10) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/__requests?last={last}", timeout=5).json()["requests"])


@contextlib.contextmanager
def run_chaos(tmp: Path, *args: str, name: str = "chaos") -> Iterator[Chaos]:
    port_file = tmp / f"{name}.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(UPSTREAM_SCRIPT),
            "--name",
            name,
            "--seed",
            "1",
            "--port-file",
            str(port_file),
            "--max-runtime-s",
            "1800",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        chaos = Chaos(proc, int(first["port"]))
        wait_http(f"{chaos.url}/healthz", proc=proc)
        yield chaos
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    key: str
    data_dir: Path
    config: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, env=self.env)


def write_config(tmp: Path, models: list[dict[str, Any]] | None = None, **fields: Any) -> Path:
    cfg: dict[str, Any] = {"data_dir": str(tmp / "data"), **fields}
    if models is not None:
        cfg["models"] = models
    path = tmp / "seekport.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@contextlib.contextmanager
def run_prometheus(
    tmp: Path, target_port: int, key: str, rules: Path | None = None
) -> Iterator[str]:
    """A real Prometheus (Debian's ``prometheus`` binary) scraping seekport on 127.0.0.1
    every second with ``key`` (a viewer's) and evaluating ``rules``; yields its base URL."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise RuntimeError("prometheus not found: apt-get install prometheus")
    (tmp / "seekport.key").write_text(key)
    rule_files = ""
    if rules is not None:
        shutil.copy(rules, tmp / "rules.yml")
        rule_files = "rule_files: [rules.yml]\n"
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        + rule_files
        + "scrape_configs:\n"
        "  - job_name: seekport\n"
        "    authorization: {type: Bearer, credentials_file: seekport.key}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", proc=proc, timeout_s=60)
        yield url
    finally:
        stop_process(proc)


def run_cli(
    config: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEEKPORT, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=timeout,
        check=check,
    )


@contextlib.contextmanager
def run_server(
    config: Path, *, extra_env: dict[str, str] | None = None, log_path: Path | None = None
) -> Iterator[Server]:
    """Start ``seekport serve`` on a free loopback port and wait until it is ready."""
    env = {**os.environ, **(extra_env or {})}
    data_dir = Path(yaml.safe_load(config.read_text())["data_dir"])
    created = run_cli(config, "keys", "create", "--name", "tests", "--role", "superadmin", env=env)
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(log_path or (config.parent / "server.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*SEEKPORT, "serve", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/ready", proc=proc, timeout_s=60)
        yield Server(proc, port, key, data_dir, config, env)
    finally:
        stop_process(proc)
        log.close()


_CLIENTS: dict[tuple[str, str, float], Any] = {}


def openai_client(base_url: str, key: str, *, timeout: float = 120) -> Any:
    """One official ``openai.OpenAI`` per (url, key), reused, closed at session end."""
    import openai

    k = (base_url, key, timeout)
    if k not in _CLIENTS:
        _CLIENTS[k] = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)
    return _CLIENTS[k]


def close_clients() -> None:
    for c in _CLIENTS.values():
        c.close()
    _CLIENTS.clear()


# ---- PostgreSQL (127.0.0.1:5432, trust auth): one throwaway database per fixture

PG = "postgresql://127.0.0.1:5432"


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def pg_rows(db: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/{db}")
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database (its name), dropped afterwards."""
    import asyncio
    import uuid

    name = "seekport_test_" + uuid.uuid4().hex[:10]
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def usage_row(server: Server, client_request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The usage record of a request, found by the X-Request-ID the client sent (polled)."""
    db = server.data_dir / "seekport.db"
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM usage_records WHERE client_request_id = ?", (client_request_id,)
            ).fetchall()
        if rows:
            assert len(rows) == 1, f"one request, one record; got {len(rows)}"
            return dict(rows[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no usage record for {client_request_id} after {timeout_s}s")
        time.sleep(0.05)


def upstream_record(chaos: Chaos, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The chaos upstream's record of the request seekport forwarded as ``request_id``.

    Chaos files a record when the exchange ends, so this polls (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for rec in chaos.requests(last=50):
            if rec.get("request_id") == request_id:
                return rec
        if time.monotonic() > deadline:
            raise AssertionError(f"chaos never recorded upstream request {request_id}")
        time.sleep(0.05)
