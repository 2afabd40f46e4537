"""Managed external engines: the supervisor runs a real child (the chaos upstream standing in
for vLLM), restarts it when it dies and stops it on shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from seekport.gateway.backends.supervisor import ChildSpec, Supervisor, free_loopback_port
from tests.harness import chaos_script, run_server, write_config


def chaos_argv(*extra: str) -> list[str]:
    return [sys.executable, str(chaos_script()), "--port", "{port}", "--name", "child", *extra]


def spec(argv: list[str], **kw: float) -> ChildSpec:
    port = free_loopback_port()
    return ChildSpec(
        name="child",
        argv=[a.format(port=port) for a in argv],
        port=port,
        health_path="/healthz",
        **kw,
    )  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for(pred: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_child_is_started_restarted_after_a_crash_and_stopped() -> None:
    sup = Supervisor(spec(chaos_argv(), backoff_initial_s=0.1))
    await sup.start()
    try:
        assert sup.healthy
        first = sup.pid
        assert first is not None
        async with httpx.AsyncClient() as c:
            assert (await c.get(sup.base_url + "/v1/models")).status_code == 200
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: sup.restarts == 1 and sup.healthy)
        assert sup.pid != first
        async with httpx.AsyncClient() as c:
            assert (await c.get(sup.base_url + "/healthz")).status_code == 200
    finally:
        last = sup.pid
        await sup.stop()
    assert last is not None and not alive(last)


async def test_a_child_that_exits_at_once_fails_the_start_quickly() -> None:
    started = time.monotonic()
    sup = Supervisor(spec([sys.executable, "-c", "import sys; sys.exit(3)"], startup_timeout_s=60))
    with pytest.raises(RuntimeError, match="did not become healthy"):
        await sup.start()
    assert time.monotonic() - started < 10


async def test_a_child_that_keeps_dying_is_restarted_with_backoff() -> None:
    sup = Supervisor(spec(chaos_argv("--max-runtime-s", "1"), backoff_initial_s=0.2))
    await sup.start()
    try:
        await wait_for(lambda: sup.restarts >= 2, timeout=20)
        assert sup.restarts >= 2
    finally:
        await sup.stop()


def test_managed_model_is_served_through_the_gateway(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [
            {
                "name": "managed-chat",
                "backend": "vllm",
                "command": chaos_argv(),
                "health_path": "/healthz",
                "upstream_model": "deepseek-chat",
            }
        ],
    )
    with run_server(config) as server:
        headers = {"Authorization": f"Bearer {server.key}"}
        body = {"model": "managed-chat", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "managed-chat"
        assert r.json()["system_fingerprint"] == "fp_child"
        # kill the child: the gateway reports not-ready, then serves again after the restart
        children = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit()
            and str(chaos_script()) in _cmdline(int(p))
            and _ppid(int(p)) == server.proc.pid
        ]
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        ok = False
        while time.monotonic() < deadline and not ok:
            ok = (
                httpx.post(
                    server.url + "/v1/chat/completions", json=body, headers=headers
                ).status_code
                == 200
            )
            time.sleep(0.1)
        assert ok
        assert httpx.get(server.url + "/health/ready").status_code == 200
    assert not alive(children[0])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
