"""The audit stream to a SIEM, end to end: a server with ``audit_stream`` sends each committed
audit row, as JSON, to a local syslog receiver (UDP) and a JSON Lines file as it happens, the
same rows the database holds; the console (``seekport tenants create``) streams its changes
over TCP."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.harness import Server, run_cli, run_server, write_config


class Receiver:
    """A syslog receiver on 127.0.0.1: UDP datagrams, or newline-framed TCP."""

    def __init__(self, kind: str) -> None:
        self.messages: list[bytes] = []
        self._sock = socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        )
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._kind = kind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if kind == "tcp":
            self._sock.listen()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._kind == "udp":
                    self.messages.append(self._sock.recv(65536))
                    continue
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                buf = b""
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    buf += chunk
                self.messages += [m for m in buf.split(b"\n") if m]

    def rows(self, action: str, timeout_s: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [
                orjson.loads(m.split(b"seekport: ", 1)[1])
                for m in list(self.messages)
                if b"seekport: " in m
            ]
            found = [r for r in found if r["action"] == action]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture(scope="module")
def udp() -> Iterator[Receiver]:
    r = Receiver("udp")
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, udp: Receiver) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("audit-stream")
    stream = {"jsonl": str(tmp / "siem" / "audit.jsonl"), "syslog": f"udp://127.0.0.1:{udp.port}"}
    with run_server(write_config(tmp, None, log_level="warning", audit_stream=stream)) as s:
        yield s


def audit_rows(server: Server, action: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(server.data_dir / "seekport.db")) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM audit_log WHERE action = ?", (action,)).fetchall()
    return [dict(r) for r in rows]


def test_admin_actions_reach_the_siem_as_they_are_committed(server: Server, udp: Receiver) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    t = httpx.post(server.url + "/admin/tenants", json={"name": "streamed"}, headers=auth).json()
    k = httpx.post(
        server.url + "/admin/keys", json={"name": "k", "tenant_id": t["id"]}, headers=auth
    ).json()
    revoked = httpx.post(server.url + f"/admin/keys/{k['id']}/revoke", headers=auth)
    assert revoked.status_code == 200, revoked.text
    for action, target in (("tenant.create", t["id"]), ("key.revoke", k["id"])):
        sent = [r for r in udp.rows(action) if r["target_id"] == target]
        stored = [r for r in audit_rows(server, action) if r["target_id"] == target]
        assert len(sent) == len(stored) == 1, (action, sent, stored)
        assert sent[0]["id"] == stored[0]["id"] and sent[0]["actor_role"] == "superadmin"
        assert sent[0]["at"].startswith(stored[0]["at"][:19].replace(" ", "T"))
    # the same rows, one JSON object a line, in the file a shipper tails
    lines = (server.config.parent / "siem" / "audit.jsonl").read_text().splitlines()
    in_file = [orjson.loads(line) for line in lines]
    assert {r["action"] for r in in_file} >= {"tenant.create", "key.create", "key.revoke"}
    assert [r["id"] for r in in_file if r["target_id"] == k["id"]] == [
        r["id"]
        for r in udp.rows("key.create") + udp.rows("key.revoke")
        if r["target_id"] == k["id"]
    ]


def test_the_console_streams_its_changes_over_tcp(tmp_path: Path) -> None:
    tcp = Receiver("tcp")
    try:
        config = write_config(
            tmp_path, None, audit_stream={"syslog": f"tcp://127.0.0.1:{tcp.port}"}
        )
        made = run_cli(config, "tenants", "create", "--name", "console-made")
        assert made.returncode == 0, made.stderr
        rows = tcp.rows("tenant.create")
        assert [r["detail"]["name"] for r in rows] == ["console-made"], rows
    finally:
        tcp.close()


def test_a_bad_syslog_address_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, None, audit_stream={"syslog": "127.0.0.1:514"})
    bad = run_cli(config, "tenants", "list", check=False)
    assert bad.returncode != 0 and "udp://HOST:PORT" in bad.stderr, bad.stderr
    assert yaml.safe_load(config.read_text())["audit_stream"]["syslog"] == "127.0.0.1:514"
