"""Asyncio front of the engine: ``submit(seq) -> AsyncIterator[TokenDelta]``, ``close()``.

One engine thread runs ``LLMEngine.step()`` in a loop while there is work (continuous
batching); the event loop hands it new sequences through an inbox and receives each step's
deltas in one ``call_soon_threadsafe``. A client that goes away sets ``seq.cancelled``; the
next step frees its slot and KV cells.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

from seekport.engine.llm_engine import BatchRunner, LLMEngine
from seekport.engine.scheduler import SchedulerConfig, StepPlan
from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import OverloadedError, SeekportError

log = logging.getLogger("seekport.engine")

_END = object()


class SequenceStream:
    """The output of one submitted sequence. Iterate it; ``close()`` aborts it."""

    def __init__(self, engine: AsyncEngine, seq: Sequence) -> None:
        self._engine = engine
        self.seq = seq
        self.queue: asyncio.Queue[object] = asyncio.Queue()

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
        """Abort: the engine drops the sequence at its next step."""
        if not self.seq.cancelled and self.seq.finish_reason is None:
            self.seq.cancelled = True
            self._engine._wake.set()


class AsyncEngine:
    def __init__(
        self,
        runner: BatchRunner,
        cfg: SchedulerConfig,
        *,
        name: str,
        on_step: Callable[[StepPlan], None] | None = None,
    ) -> None:
        """``on_step`` runs on the engine thread after every step (metrics); keep it cheap."""
        self.name = name
        self._on_step = on_step
        self.cfg = cfg
        self._engine = LLMEngine(runner, cfg)  # the config as given, never a rebuilt copy
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._inbox: list[Sequence] = []
        self._streams: dict[Sequence, SequenceStream] = {}
        self._waiting = 0  # in the inbox or the scheduler's waiting line (published by the loop)
        self._free_slots = cfg.max_num_seqs  # published by the loop after each step
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- numbers for metrics

    @property
    def num_waiting(self) -> int:
        return self._waiting

    @property
    def num_running(self) -> int:
        return len(self._engine.scheduler.running)

    @property
    def kv_cells_used(self) -> int:
        return self._engine.scheduler.kv_cells_used

    # ---- event-loop side

    def submit(self, seq: Sequence) -> SequenceStream:
        """Queue a sequence or raise OverloadedError (503) when the waiting line is full."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._run, name=f"engine-{self.name}", daemon=True
            )
            self._thread.start()
        with self._lock:
            # free slots take the next sequences at the engine's next step: not waiting
            if self._waiting >= self.cfg.max_waiting + self._free_slots:
                raise OverloadedError(
                    f"model '{self.name}' is overloaded: {self._waiting} requests are waiting; "
                    "retry later",
                    retry_after=1,
                )
            stream = SequenceStream(self, seq)
            self._streams[seq] = stream
            self._inbox.append(seq)
            self._waiting += 1
        self._wake.set()
        return stream

    def _deliver(self, events: list[tuple[Sequence, object]]) -> None:
        for seq, item in events:
            stream = self._streams.get(seq)
            if stream is None:
                continue
            stream.queue.put_nowait(item)
            done = isinstance(item, BaseException) or (
                isinstance(item, TokenDelta) and item.finish_reason is not None
            )
            if done:
                if isinstance(item, TokenDelta):
                    stream.queue.put_nowait(_END)
                self._streams.pop(seq, None)

    async def aclose(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        gone = OverloadedError("the server is shutting down; retry", retry_after=1)
        self._deliver([(seq, gone) for seq in list(self._streams)])

    # ---- engine thread

    def _run(self) -> None:
        engine = self._engine
        while not self._stopping:
            with self._lock:
                new, self._inbox = self._inbox, []
            refused: list[tuple[Sequence, object]] = []
            for seq in new:
                try:
                    engine.add(seq)
                except SeekportError as exc:  # the line filled up since submit() looked
                    refused.append((seq, exc))
                except ValueError as exc:  # the caller's checks should have caught it
                    refused.append((seq, SeekportError(str(exc))))
            if refused and not self._post(refused):
                return
            if not engine.has_work():
                self._publish_waiting()
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                events: list[tuple[Sequence, object]] = list(engine.step())
            except Exception as exc:
                log.exception("engine step failed", extra={"fields": {"model": self.name}})
                err = SeekportError(f"the local engine failed: {type(exc).__name__}")
                events = [(seq, err) for seq in engine.fail_all()]
            self._publish_waiting()
            if self._on_step is not None:
                self._on_step(engine.last_plan)
            if events and not self._post(events):
                return

    def _post(self, events: list[tuple[Sequence, object]]) -> bool:
        """Hand events to the event loop; False once that loop is gone (stop the thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver, events)
        except RuntimeError:  # the event loop was closed without aclose()
            return False
        return True

    def _publish_waiting(self) -> None:
        sched = self._engine.scheduler
        with self._lock:
            self._waiting = len(self._inbox) + len(sched.waiting)
            self._free_slots = self.cfg.max_num_seqs - len(sched.running)
