"""The command line a newcomer meets: first start prints an admin key, config errors are clear."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import remote_models
from tests.harness import SEEKPORT, Chaos, free_port, wait_http, write_config


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
