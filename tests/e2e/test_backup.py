"""Backup and restore of the embedded store, end to end: a backup while requests are answered
(``POST /admin/backup``: the scheduled job, now), ``seekport restore`` into a fresh data
directory, and every usage record whose
answer had arrived before the backup began is there; a server on the restored directory takes
the old keys. A backup whose file changed, or a restore over a live store, is refused. The
scheduled job (``backup.dir``) runs on demand through ``POST /admin/backup``."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.harness import Chaos, Server, run_chaos, run_cli, run_server, write_config


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("backup-chaos")) as chaos:
        yield chaos


def models(upstream: Chaos) -> list[dict[str, str]]:
    return [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("backup")
    backup = {"dir": str(tmp / "scheduled"), "keep": 2}
    with run_server(write_config(tmp, models(upstream), log_level="warning", backup=backup)) as s:
        yield s


class Load:
    """Four clients calling in a loop; the ids of the answers that arrived, with when."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.done: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(4)]

    def _run(self, worker: int) -> None:
        body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stop.is_set() and n < 2000:
                rid = f"load-{worker}-{n}"
                r = client.post(
                    self.server.url + "/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {self.server.key}", "X-Request-ID": rid},
                )
                if r.status_code == 200:
                    self.done.append((time.time(), rid))
                n += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def ids_in(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT client_request_id FROM usage_records").fetchall()
    return {r[0] for r in rows if r[0]}


def test_a_backup_under_load_restores_every_committed_record(
    server: Server, upstream: Chaos, tmp_path: Path
) -> None:
    with Load(server) as load:
        deadline = time.monotonic() + 30
        while len(load.done) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        made = httpx.post(
            server.url + "/admin/backup",
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=60,
        )
        time.sleep(0.5)  # the load goes on after the copy
    assert made.status_code == 200, made.text
    path = Path(made.json()["backup"])
    # its name is the time the copy began: every answer that had arrived by then was committed
    began = dt.datetime.strptime(path.name, "seekport-backup-%Y%m%dT%H%M%S%fZ")
    before = {rid for at, rid in load.done if at < began.replace(tzinfo=dt.UTC).timestamp()}
    assert len(before) >= 200, len(before)
    # a fresh data directory, and a server on it
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config = write_config(fresh, models(upstream), log_level="warning")
    restored = run_cli(config, "restore", str(path))
    assert "restored" in restored.stdout, restored.stdout + restored.stderr
    ids = ids_in(fresh / "data" / "seekport.db")
    assert before <= ids, f"{len(before - ids)} committed records missing"
    assert len(ids) < len({rid for _, rid in load.done}) + 1  # a snapshot, not the end state
    with run_server(config) as again:
        r = httpx.post(
            again.url + "/v1/chat/completions",
            json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {server.key}"},  # the old server's key
            timeout=30,
        )
        assert r.status_code == 200, r.text


def test_a_changed_backup_or_a_live_store_is_refused(server: Server, tmp_path: Path) -> None:
    made = server.cli("backup", "--to", str(tmp_path))
    path = Path(made.stdout.splitlines()[0])
    assert path.parent == tmp_path and "seekport.db:" in made.stdout
    live = run_cli(server.config, "restore", str(path), check=False)
    assert live.returncode == 1 and "already holds seekport.db" in live.stderr, live.stderr
    copy = path / "seekport.db"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    (tmp_path / "fresh").mkdir()
    fresh = write_config(tmp_path / "fresh", None)
    changed = run_cli(fresh, "restore", str(path), check=False)
    assert changed.returncode == 1 and "does not match its SHA-256" in changed.stderr
    assert not (tmp_path / "fresh" / "data" / "seekport.db").exists()


def test_the_scheduled_backup_runs_on_demand_and_keeps_the_newest(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    made = [httpx.post(server.url + "/admin/backup", headers=auth, timeout=60) for _ in range(3)]
    assert [r.status_code for r in made] == [200] * 3, made[-1].text
    paths = [Path(r.json()["backup"]) for r in made]
    kept = sorted(p.name for p in paths[0].parent.iterdir())
    assert kept == sorted(p.name for p in paths[1:])  # keep: 2
    metrics = httpx.get(server.url + "/metrics", headers=auth).text
    stamp = next(
        line.split()[-1]
        for line in metrics.splitlines()
        if line.startswith("seekport_backup_last_success_timestamp_seconds ")
    )
    assert abs(float(stamp) - time.time()) < 120
