"""The command line a newcomer meets: first start prints an admin key, config errors are clear."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import remote_models
from tests.harness import SEEKPORT, Chaos, Server, free_port, run_server, wait_http, write_config


def test_first_start_creates_and_prints_one_admin_key(tmp_path: Path, chaos: Chaos) -> None:
    config = write_config(tmp_path, remote_models(chaos))
    port = free_port()
    out = tmp_path / "out.txt"
    for attempt in range(2):
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                [*SEEKPORT, "serve", "--config", str(config), "--port", str(port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/health/ready", proc=proc)
                text = out.read_text()
                keys = [w for w in text.split() if w.startswith("sk-sp-")]
                if attempt == 0:
                    assert len(keys) == 1, text
                    assert f"http://127.0.0.1:{port}/v1" in text
                    r = httpx.get(
                        f"http://127.0.0.1:{port}/v1/models",
                        headers={"Authorization": f"Bearer {keys[0]}"},
                    )
                    assert r.status_code == 200
                else:
                    assert keys == [], "the admin key is printed only on the first start"
            finally:
                proc.terminate()
                proc.wait(timeout=20)


def test_invalid_config_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("port: 99999\nmodels:\n  - name: x\n    backend: openai\n")
    r = subprocess.run(
        [*SEEKPORT, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        check=False,
    )
    assert r.returncode == 2
    assert "port" in r.stderr and "base_url" in r.stderr
    assert "Traceback" not in r.stderr


SEEKPORT_MODULE = (sys.executable, "-m", "seekport")


def keys_create(data_dir: Path, role: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *SEEKPORT_MODULE,
            "keys",
            "create",
            "--name",
            "n",
            "--role",
            role,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_create_prints_the_secret_alone_on_the_last_line(tmp_path: Path) -> None:
    r = keys_create(tmp_path / "d", "user")
    assert r.returncode == 0, r.stderr
    last = r.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("sk-sp-") and " " not in last and len(last) > 40
    bad = keys_create(tmp_path / "d", "root")
    assert bad.returncode == 1 and "role" in bad.stderr


def test_a_taken_port_fails_at_start_before_any_key_is_made(tmp_path: Path, chaos: Chaos) -> None:
    config = write_config(tmp_path, remote_models(chaos))
    with socket.socket() as other:  # another server already listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run(
            [*SEEKPORT, "serve", "--config", str(config), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
    assert "sk-sp-" not in r.stdout  # the one-time admin key is not spent on a failed start
    assert "Traceback" not in r.stderr


AUTH_TTL_S = 4.0  # small, yet far above the ~1 s a `seekport keys revoke` run takes


def test_a_key_revoked_by_the_cli_is_refused_by_every_server_within_the_auth_cache_ttl(
    tmp_path: Path,
) -> None:
    """Two server processes on one database, a key revoked by the CLI (a third process): the
    server that had the key cached accepts it until its cache entry ends and refuses it
    afterwards; the server that had not seen it refuses it at once."""
    models = [{"name": "m", "backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}"}]
    # polling a revoked key fails on purpose: no failed-authentication throttle here
    config = write_config(
        tmp_path, models, auth_cache_ttl_s=AUTH_TTL_S, auth_failures_per_minute=100_000
    )
    with (
        run_server(config, log_path=tmp_path / "a.log") as a,
        run_server(config, log_path=tmp_path / "b.log") as b,
    ):
        created = a.cli("keys", "create", "--name", "doomed", "--role", "user").stdout
        key_id, secret = created.split()[2], created.strip().splitlines()[-1]

        def status(server: Server) -> int:
            r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
            return r.status_code

        t0 = time.monotonic()
        assert status(a) == 200  # a caches the key: its entry ends in [t0 + TTL, t0r + TTL]
        t0r = time.monotonic()
        assert "revoked " + key_id in a.cli("keys", "revoke", key_id).stdout
        t1 = time.monotonic()
        assert t1 < t0 + AUTH_TTL_S - 0.5, f"revoking took {t1 - t0:.1f}s: no cache window left"
        assert status(b) == 401  # b never saw the key: the revocation reached it at once

        polls: list[tuple[float, float, int]] = []  # (sent, received, status) on server a
        while time.monotonic() < t0r + AUTH_TTL_S + 1.5:
            sent = time.monotonic()
            code = status(a)
            polls.append((sent, time.monotonic(), code))
            time.sleep(0.05)
        within = [code for _, received, code in polls if received < t0 + AUTH_TTL_S]
        after = [code for sent, _, code in polls if sent > t0r + AUTH_TTL_S]
        assert within and set(within) == {200}, polls  # still cached on a: still accepted
        assert after and set(after) == {401}, polls  # the cache entry ended: refused
        assert [c for _, _, c in polls] == sorted(c for _, _, c in polls), polls  # no flapping
        assert status(b) == 401
