"""Crash benchmark: ``kill -9`` under load, many times; count lost and duplicated usage and
audit records (issue 15).

Method
------
* One chaos upstream answering 50 ms after the request, so calls are in flight when the kill
  lands. Per cycle: start ``seekport serve`` on the same database (SQLite file by default;
  ``--postgres`` a fresh PostgreSQL database), run the suite's crash load
  (``tests/e2e/test_crash_durability.Load``: 16 clients, 80 % non-stream, 20 % stream, each
  request with its own ``X-Request-ID``) plus one admin client creating keys through
  ``POST /admin/keys``, and ``kill -9`` the server after a random 1-3 s.
* A usage record is *acknowledged* when the client saw the whole answer (a JSON body, or a
  stream through ``[DONE]``); an audit row is acknowledged when the client got the 201 of
  the key it asked for.
* After the last cycle, one more start on the same database (it must open cleanly; SQLite's
  integrity check passes), then: lost = acknowledged requests without exactly one usage
  record, and acknowledged keys without exactly one ``key.create`` audit row; duplicated =
  request ids or keys with more than one.

Run: ``.venv/bin/python bench/crash.py [--cycles 20] [--postgres] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402
from gateway_overhead import command_line, machine, revision, write_section  # noqa: E402
from tests.e2e.test_crash_durability import COUNT_SQL, Load  # noqa: E402
from tests.harness import (  # noqa: E402
    Server,
    pg_database,
    pg_rows,
    run_chaos,
    run_server,
    write_config,
)

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- crash:start -->", "<!-- crash:end -->"
AUDIT_SQL = (
    "SELECT target_id, count(*) FROM audit_log WHERE action = 'key.create' "
    "AND target_id IS NOT NULL GROUP BY target_id"
)


class Admin:
    """One client creating keys in a loop; remembers the ids of the 201s it got."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(
                        self.server.url + "/admin/keys",
                        json={"name": "crash"},
                        headers={"Authorization": f"Bearer {self.server.key}"},
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    self.acked.append(r.json()["id"])


def kill_after(pid: int, delay_s: float, done: threading.Event) -> None:
    time.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)
    done.set()


def counts(server: Server, database: str | None) -> tuple[dict[str, int], dict[str, int]]:
    if database:
        usage = {r[0]: r[1] for r in asyncio.run(pg_rows(database, COUNT_SQL))}
        audit = {r[0]: r[1] for r in asyncio.run(pg_rows(database, AUDIT_SQL))}
        return usage, audit
    with contextlib.closing(sqlite3.connect(server.data_dir / "seekport.db", timeout=10)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(db.execute(COUNT_SQL).fetchall()), dict(db.execute(AUDIT_SQL).fetchall())


def run(cycles: int, database: str | None, tmp: Path) -> dict[str, int]:
    with run_chaos(tmp, "--latency-ms", "50", name="crash") as upstream:
        models = [
            {
                "name": "deepseek-chat",
                "backend": "openai",
                "base_url": upstream.url,
                "read_timeout_s": 5,
                "max_connections": 64,
            }
        ]
        url = (
            {"database_url": f"postgresql+asyncpg://127.0.0.1:5432/{database}"} if database else {}
        )
        config = write_config(tmp, models, log_level="warning", **url)
        rng = random.Random(15)
        acked: list[str] = []
        keys: list[str] = []
        for cycle in range(cycles):
            with run_server(config) as server:
                load, admin = Load(server, seed=cycle), Admin(server)
                kill = threading.Event()
                threading.Thread(
                    target=kill_after,
                    args=(server.proc.pid, rng.uniform(1.0, 3.0), kill),
                    daemon=True,
                ).start()
                admin_thread = threading.Thread(target=admin.run)
                admin_thread.start()
                load.run_until_killed(kill)
                admin.stop.set()
                admin_thread.join(30)
                server.proc.wait(10)
                assert server.proc.returncode == -signal.SIGKILL
                acked += load.acked
                keys += admin.acked
            print(f"cycle {cycle + 1}/{cycles}: {len(acked)} calls, {len(keys)} keys acknowledged")
        with run_server(config) as server:
            usage, audit = counts(server, database)
    return {
        "cycles": cycles,
        "calls acknowledged": len(acked),
        "usage records lost": sum(1 for rid in acked if usage.get(rid, 0) < 1),
        "usage records duplicated": sum(1 for n in usage.values() if n > 1),
        "keys acknowledged": len(keys),
        "audit rows lost": sum(1 for k in keys if audit.get(k, 0) < 1),
        "audit rows duplicated": sum(1 for n in audit.values() if n > 1),
    }


def render(results: dict[str, dict[str, int]]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = list(next(iter(results.values())))
    out = [
        START,
        "## Crash durability: kill -9 under load (issue 15)",
        "",
        f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
        f"Command: `{command_line()}`. Method: the docstring of `bench/crash.py`.",
        "",
        "| database | " + " | ".join(names) + " |",
        "|---|" + "--:|" * len(names),
    ]
    for db, row in results.items():
        out.append(f"| {db} | " + " | ".join(str(row[n]) for n in names) + " |")
    out += ["", END]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    args = parser.parse_args()
    results: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as d:
        results["SQLite"] = run(args.cycles, None, Path(d))
    if args.postgres:
        with tempfile.TemporaryDirectory() as d, pg_database() as name:
            results["PostgreSQL"] = run(args.cycles, name, Path(d))
    section = render(results)
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
