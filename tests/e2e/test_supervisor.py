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
from tests.harness import UPSTREAM_SCRIPT, Server, run_server, write_config


def chaos_argv(*extra: str) -> list[str]:
    return [sys.executable, str(UPSTREAM_SCRIPT), "--port", "{port}", "--name", "child", *extra]


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


async def serving_pid(base_url: str) -> int:
    """The pid of the process answering on ``base_url`` (the upstream's /healthz names it)."""
    async with httpx.AsyncClient() as c:
        r = await c.get(base_url + "/healthz")
        assert r.status_code == 200
        assert (await c.get(base_url + "/v1/models")).status_code == 200
    return int(r.json()["pid"])


async def test_child_is_started_restarted_after_a_crash_and_stopped() -> None:
    sup = Supervisor(spec(chaos_argv(), backoff_initial_s=0.1))
    await sup.start()
    try:
        assert sup.healthy
        first = sup.pid
        assert first is not None and alive(first)
        assert await serving_pid(sup.base_url) == first
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: not sup.healthy)  # the crash is noticed
        await wait_for(lambda: sup.restarts == 1 and sup.healthy)
        second = sup.pid
        assert second is not None and second != first
        assert alive(second) and not alive(first)
        assert await serving_pid(sup.base_url) == second  # the new child answers, not a stray
    finally:
        last = sup.pid
        await sup.stop()
    assert last == second and not alive(second)
    assert not sup.healthy


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
        first = managed_child(server.proc.pid)
        assert served_by(server, first)
        # kill the child: the gateway reports not-ready, then serves again from a new child
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        ready = 200
        while time.monotonic() < deadline and ready == 200:
            ready = httpx.get(server.url + "/health/ready").status_code
            time.sleep(0.02)
        assert ready == 503, "the gateway never reported not-ready while its engine was down"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ready != 200:
            time.sleep(0.1)
            ready = httpx.get(server.url + "/health/ready").status_code
        assert ready == 200, "the gateway never became ready again"
        second = managed_child(server.proc.pid)
        assert second != first and alive(second) and not alive(first)
        assert served_by(server, second)
    assert not alive(second), "the restarted child outlived the gateway"


def managed_child(parent: int) -> int:
    """The one upstream process the gateway ``parent`` runs as its managed engine."""
    children = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and str(UPSTREAM_SCRIPT) in _cmdline(int(p)) and _ppid(int(p)) == parent
    ]
    assert len(children) == 1, children
    return children[0]


def served_by(server: Server, child: int) -> bool:
    """A chat completion through the gateway succeeds and was answered by process ``child``
    (its /healthz names its pid; its request counter moves by exactly this one call)."""
    child_url = "http://127.0.0.1:" + _cmdline(child).split("--port ", 1)[1].split()[0]
    assert httpx.get(child_url + "/healthz").json()["pid"] == child
    before = httpx.get(child_url + "/__stats").json()["requests_total"]
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "managed-chat", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {server.key}"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["system_fingerprint"]) == ("managed-chat", "fp_child")
    return bool(httpx.get(child_url + "/__stats").json()["requests_total"] == before + 1)


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
