"""Managed external engines (vLLM, SGLang, llama-server) as child processes.

The supervisor starts the configured command on a loopback port, waits until its health
endpoint answers, restarts it with exponential backoff whenever it exits or fails to start,
and stops it (SIGTERM to its process group, then SIGKILL) on shutdown. The gateway talks to
the child as to any OpenAI-compatible upstream.

``launch()`` supervises in the background and returns at once, so the server listens while
an engine loads its weights (minutes for a big model); ``healthy`` says when it can serve.
The child's stdout and stderr, and one line per start, exit and retry, go to ``log_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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
    log_path: Path | None = None  # the child's stdout + stderr, appended; None: discarded


class Supervisor:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.attempts = 0  # starts tried, the first one included
        self.healthy = False
        self.last_error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def restarts(self) -> int:
        return max(0, self.attempts - 1)

    @property
    def pid(self) -> int | None:
        """The running child's pid (None before the first start and after it exited)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    def launch(self) -> None:
        """Supervise in the background and return at once; a failed start is retried."""
        self._task = asyncio.create_task(
            self._supervise(running=False), name=f"supervise-{self.spec.name}"
        )

    async def start(self) -> None:
        """Start the child and wait until it is healthy (or fail with the reason)."""
        if not await self._attempt():
            await self.stop()
            raise RuntimeError(
                f"managed engine '{self.spec.name}' did not become healthy "
                f"({self.last_error}): {' '.join(self.spec.argv)}"
            )
        self._task = asyncio.create_task(
            self._supervise(running=True), name=f"supervise-{self.spec.name}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.pid is not None:
            self._note("stopping (SIGTERM to its process group)", logging.INFO)
        await self._terminate()
        self.healthy = False

    async def _supervise(self, *, running: bool) -> None:
        """Keep the child up: restart it when it exits, retry a start that failed."""
        backoff = self.spec.backoff_initial_s
        if not running:
            running = await self._attempt()
        while True:
            if running:
                assert self._proc is not None
                code = await self._proc.wait()
                self.healthy = False
                self.last_error = f"exited with code {code}"
                backoff = self.spec.backoff_initial_s  # it ran: back off from the start again
            self._note(f"{self.last_error}; starting again in {backoff:g} s", logging.WARNING)
            await asyncio.sleep(backoff)
            running = await self._attempt()
            if not running:
                backoff = min(backoff * 2, self.spec.backoff_max_s)

    async def _attempt(self) -> bool:
        """Spawn the child and wait until it is healthy; if it is not, stop it and say why."""
        self.attempts += 1
        try:
            await self._spawn()
        except OSError as exc:  # no such command, not executable...
            self.last_error = f"cannot start {self.spec.argv[0]!r}: {exc.strerror or exc}"
            return False
        if await self._wait_healthy():
            self._note("healthy", logging.INFO)
            return True
        await self._terminate()
        return False

    async def _spawn(self) -> None:
        self._note(f"starting (attempt {self.attempts}): {' '.join(self.spec.argv)}", logging.INFO)
        out = self._open_log()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out if out is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT if out is not None else asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group: we stop its workers too
            )
        finally:
            if out is not None:
                out.close()  # the child holds its own copy

    async def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        url = self.base_url + self.spec.health_path
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.returncode is not None:
                    code = self._proc.returncode if self._proc is not None else None
                    self.last_error = f"exited with code {code} before it was healthy"
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            self.healthy = True
                            return True
                await asyncio.sleep(0.2)
        self.last_error = f"not healthy within {self.spec.startup_timeout_s:g} s"
        return False

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

    def _open_log(self) -> IO[bytes] | None:
        if self.spec.log_path is None:
            return None
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self.spec.log_path.open("ab")

    def _note(self, message: str, level: int) -> None:
        """One line in the server's log and in the engine's own log file."""
        log.log(
            level,
            f"managed engine: {message}",
            extra={"fields": {"engine": self.spec.name, "pid": self.pid}},
        )
        out = self._open_log()
        if out is not None:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            with out:
                out.write(f"[seekport {stamp}] {message}\n".encode())
