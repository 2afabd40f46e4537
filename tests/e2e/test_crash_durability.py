"""Crash durability (reliability plan T1, CI budget): ``kill -9`` seekport under load, restart
it on the same database (SQLite file, or PostgreSQL), and check that every request the client
saw complete has exactly one usage record, that nothing is recorded twice and that the
database is intact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    Chaos,
    Server,
    pg_database,
    pg_rows,
    run_chaos,
    run_server,
    write_config,
)

CLIENTS = 16
CYCLES = 2


@pytest.fixture(scope="module")
def slow_chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """An upstream 50 ms from its first byte, so requests are in flight when the kill lands."""
    with run_chaos(tmp_path_factory.mktemp("chaos-t1"), "--latency-ms", "50", name="t1") as c:
        yield c


class Load:
    """``CLIENTS`` threads in a closed loop: 80 % non-stream, 20 % stream, each request with
    its own ``X-Request-ID``; records the ids of requests that completed (a whole JSON body,
    or a stream through ``data: [DONE]``)."""

    def __init__(self, server: Server, seed: int) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _one(self, client: httpx.Client, streamed: bool) -> None:
        rid = "t1-" + uuid.uuid4().hex
        with self.lock:
            self.sent.append(rid)
        body = {
            "model": "deepseek-chat",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": streamed,
        }
        headers = {"Authorization": f"Bearer {self.server.key}", "X-Request-ID": rid}
        url = self.server.url + "/v1/chat/completions"
        if streamed:
            with client.stream("POST", url, json=body, headers=headers) as r:
                lines = list(r.iter_lines())
            complete = r.status_code == 200 and lines and lines[-1] == "data: [DONE]"
        else:
            r = client.post(url, json=body, headers=headers)
            complete = r.status_code == 200 and r.json()["choices"][0]["message"] is not None
        if complete:
            with self.lock:
                self.acked.append(rid)

    def _worker(self, streamed_share: list[bool]) -> None:
        with httpx.Client(timeout=10) as client:
            for streamed in streamed_share:
                if self.stop.is_set():
                    return
                try:
                    self._one(client, streamed)
                except (httpx.HTTPError, ValueError):
                    if self.stop.is_set():
                        return  # the server is gone: this request is indeterminate

    def run_until_killed(self, kill: threading.Event) -> None:
        plans = [[self.rng.random() < 0.2 for _ in range(400)] for _ in range(CLIENTS)]
        threads = [threading.Thread(target=self._worker, args=(p,)) for p in plans]
        for t in threads:
            t.start()
        kill.wait(60)
        self.stop.set()
        for t in threads:
            t.join(30)


def kill_after(pid: int, delay_s: float, done: threading.Event) -> None:
    time.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)
    done.set()


COUNT_SQL = (
    "SELECT client_request_id, count(*) FROM usage_records "
    "WHERE client_request_id LIKE 't1-%' GROUP BY client_request_id"
)


def sqlite_counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        counts = dict(conn.execute(COUNT_SQL).fetchall())
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return counts


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database_url to use: None for the default SQLite file, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        yield None
        return
    with pg_database() as name:
        yield name


def test_kill_9_under_load_loses_no_acknowledged_usage_record(
    slow_chaos: Chaos, tmp_path: Path, database: str | None
) -> None:
    models = [
        {
            "name": "deepseek-chat",
            "backend": "openai",
            "base_url": slow_chaos.url,
            "read_timeout_s": 5,
            "max_connections": 64,
        }
    ]
    url = {"database_url": f"postgresql+asyncpg://127.0.0.1:5432/{database}"} if database else {}
    config = write_config(tmp_path, models, **url)
    rng = random.Random(1)
    acked: list[str] = []
    sent: list[str] = []
    for cycle in range(CYCLES):
        with run_server(config) as server:
            load = Load(server, seed=cycle)
            kill = threading.Event()
            delay = rng.uniform(1.0, 3.0)
            threading.Thread(
                target=kill_after, args=(server.proc.pid, delay, kill), daemon=True
            ).start()
            load.run_until_killed(kill)
            server.proc.wait(10)
            assert server.proc.returncode == -signal.SIGKILL
            acked += load.acked
            sent += load.sent
            assert len(load.acked) >= 10, "the load never got going before the kill"
    # one more start on the same database: it must open cleanly and keep every record
    with run_server(config) as server:
        if database:
            counts = {r[0]: r[1] for r in asyncio.run(pg_rows(database, COUNT_SQL))}
        else:
            counts = sqlite_counts(server.data_dir / "seekport.db")
    lost = [rid for rid in acked if counts.get(rid, 0) != 1]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged requests lack their record"
    assert all(n == 1 for n in counts.values())  # nothing recorded twice
    assert set(counts) <= set(sent)
