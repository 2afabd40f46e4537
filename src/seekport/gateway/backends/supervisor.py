"""Managed external engines (vLLM, SGLang, llama-server) as child processes.

The supervisor starts the configured command on a loopback port, waits until its health
endpoint answers, restarts it with exponential backoff whenever it exits, and stops it
(SIGTERM, then SIGKILL) on shutdown. The gateway talks to the child as to any
OpenAI-compatible upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

import aiohttp

log = logging.getLogger("seekport.supervisor")


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class ChildSpec:
    name: str
    argv: list[str]  # already formatted: {port} and {host} substituted
    port: int
    health_path: str = "/health"
    startup_timeout_s: float = 600.0  # big models take minutes to load
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stop_timeout_s: float = 10.0


class Supervisor:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.restarts = 0
        self.healthy = False
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    async def start(self) -> None:
        """Start the child and wait until it is healthy (or fail with its exit status)."""
        await self._spawn()
        if not await self._wait_healthy():
            await self.stop()
            raise RuntimeError(
                f"managed engine '{self.spec.name}' did not become healthy within "
                f"{self.spec.startup_timeout_s:.0f}s: {' '.join(self.spec.argv)}"
            )
        self._task = asyncio.create_task(self._watch(), name=f"supervise-{self.spec.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate()
        self.healthy = False

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: we stop its workers too
        )
        log.info(
            "managed engine started",
            extra={"fields": {"engine": self.spec.name, "pid": self._proc.pid}},
        )

    async def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        url = self.base_url + self.spec.health_path
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.returncode is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            self.healthy = True
                            return True
                await asyncio.sleep(0.2)
        return False

    async def _watch(self) -> None:
        """Restart the child whenever it exits, backing off while it keeps failing."""
        backoff = self.spec.backoff_initial_s
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            self.healthy = False
            if self._stopping:
                return
            log.warning(
                "managed engine exited; restarting",
                extra={"fields": {"engine": self.spec.name, "code": code, "backoff_s": backoff}},
            )
            await asyncio.sleep(backoff)
            self.restarts += 1
            await self._spawn()
            if await self._wait_healthy():
                backoff = self.spec.backoff_initial_s
            else:
                backoff = min(backoff * 2, self.spec.backoff_max_s)
                await self._terminate()

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.spec.stop_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
