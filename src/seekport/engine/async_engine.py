"""Asyncio front of the engine: ``submit(seq) -> AsyncIterator[TokenDelta]``, ``abort``.

For now one sequence runs at a time on a single worker thread; the others wait in FIFO order
(asyncio.Semaphore wakes waiters first-come, first-served) in a bounded queue. Continuous
batching replaces the worker in #3 behind the same interface.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import OverloadedError

log = logging.getLogger("seekport.engine")

_END = object()


class Runner(Protocol):
    def generate(self, seq: Sequence) -> Iterator[TokenDelta]: ...


class SequenceStream:
    """The output of one submitted sequence. Iterate it; ``close()`` aborts it."""

    def __init__(self, engine: AsyncEngine, seq: Sequence) -> None:
        self._engine = engine
        self.seq = seq
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.waiting = True  # counted in the engine's waiting line until it gets the slot
        self._task: asyncio.Task[None] | None = None

    def __aiter__(self) -> AsyncIterator[TokenDelta]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TokenDelta]:
        try:
            while True:
                item = await self.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, TokenDelta)
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Abort: the worker stops within one token; a waiting sequence never starts and
        leaves the waiting line at once (its place is free for the next client)."""
        self.seq.cancelled = True
        self._engine._leave_line(self)


class AsyncEngine:
    def __init__(self, runner: Runner, *, max_waiting: int, name: str) -> None:
        self._runner = runner
        self._max_waiting = max_waiting
        self._slot = asyncio.Semaphore(1)
        self._waiting = 0
        self._running: set[Sequence] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"engine-{name}")
        self.name = name

    @property
    def waiting(self) -> int:
        return self._waiting

    def submit(self, seq: Sequence) -> SequenceStream:
        """Admit a sequence or raise OverloadedError (503) when the waiting queue is full."""
        # Admitted = waiting + running, both counted synchronously. (The slot itself is taken
        # later, in the _run task, so `_slot.locked()` lags a burst of submits.)
        if self._waiting + len(self._running) > self._max_waiting:
            raise OverloadedError(
                f"model '{self.name}' is overloaded: {self._waiting} requests are waiting; "
                "retry later",
                retry_after=1,
            )
        stream = SequenceStream(self, seq)
        self._waiting += 1  # counted at once, so a burst of submits cannot overshoot the bound
        stream._task = asyncio.create_task(self._run(stream))
        return stream

    async def _run(self, stream: SequenceStream) -> None:
        seq = stream.seq
        try:
            await self._slot.acquire()
        finally:
            self._leave_line(stream)
        if seq.cancelled:
            self._slot.release()
            stream.queue.put_nowait(_END)
            return
        loop = asyncio.get_running_loop()
        self._running.add(seq)

        def work() -> None:
            try:
                for delta in self._runner.generate(seq):
                    loop.call_soon_threadsafe(stream.queue.put_nowait, delta)
                loop.call_soon_threadsafe(stream.queue.put_nowait, _END)
            except Exception as exc:  # crosses the thread boundary as a value
                log.exception("engine failure", extra={"fields": {"request_id": seq.request_id}})
                loop.call_soon_threadsafe(stream.queue.put_nowait, exc)

        def release(_fut: object) -> None:
            loop.call_soon_threadsafe(self._release, seq)

        try:
            fut = self._pool.submit(work)
        except RuntimeError:  # pool shut down: the engine is closing
            self._release(seq)
            stream.queue.put_nowait(OverloadedError("the server is shutting down", retry_after=1))
            return
        fut.add_done_callback(release)

    def _leave_line(self, stream: SequenceStream) -> None:
        if stream.waiting:
            stream.waiting = False
            self._waiting -= 1

    def _release(self, seq: Sequence) -> None:
        self._running.discard(seq)
        self._slot.release()

    async def aclose(self) -> None:
        for seq in list(self._running):
            seq.cancelled = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
