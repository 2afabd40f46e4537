"""Asyncio front of the engine: ``submit(seq) -> AsyncIterator[TokenDelta]``, ``close()``.

One engine thread runs ``LLMEngine.step()`` in a loop while there is work (continuous
batching); the event loop hands it new sequences through an inbox and receives each step's
deltas in one ``call_soon_threadsafe``. A client that goes away sets ``seq.cancelled``; the
next step frees its slot and KV cells.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable

from seekport.engine.llm_engine import BatchRunner, LLMEngine
from seekport.engine.scheduler import SchedulerConfig, StepPlan
from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import EngineFailedError, OverloadedError, SeekportError

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
    """Runs the engine loop on one thread; recovers from that thread's failure.

    Any exception on the engine thread (a runner call, ``on_step``, the loop's own code) ends
    every open stream with EngineFailedError (503), marks the engine not ready, resets the
    runner (its KV cache and sampler chains: what the failed step left there is unknown) and
    starts a new thread with a fresh scheduler. Repeated failures back off up to
    ``MAX_RESTART_DELAY_S`` between restarts; one successful step resets the back-off.
    """

    MAX_RESTART_DELAY_S = 5.0

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
        self._runner = runner
        self._engine = LLMEngine(runner, cfg)  # the config as given, never a rebuilt copy
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._inbox: list[Sequence] = []
        self._streams: dict[Sequence, SequenceStream] = {}
        self._waiting = 0  # in the inbox or the scheduler's waiting line (published by the loop)
        self._free_slots = cfg.max_num_seqs  # published by the loop after each step
        self._stopping = False
        self._closing = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._healthy = True  # False from a failure until the restarted thread runs
        self._recovery: asyncio.Task[None] | None = None
        self._failed_in_a_row = 0  # failures without a successful step in between
        self.failures = 0  # engine thread failures since start (each one restarted it)

    # ---- numbers for metrics and health

    @property
    def ready(self) -> bool:
        """False while the engine recovers from a failure (and once it is closed)."""
        return self._healthy and not self._stopping

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
        """Queue a sequence or raise OverloadedError (503) when the waiting line is full, or
        EngineFailedError (503) while the engine restarts after a failure."""
        return self.submit_all([seq])[0]

    def submit_all(self, seqs: list[Sequence]) -> list[SequenceStream]:
        """Queue the choices of one request together (all or none, as ``submit``)."""
        if not self._healthy:
            raise EngineFailedError(
                f"the local engine of model '{self.name}' is restarting after a failure; retry",
                retry_after=1,
            )
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._start_thread()
        with self._lock:
            # free slots take the next sequences at the engine's next step: not waiting
            if self._waiting >= self.cfg.max_waiting + self._free_slots:
                raise OverloadedError(
                    f"model '{self.name}' is overloaded: {self._waiting} requests are waiting; "
                    "retry later",
                    retry_after=1,
                )
            streams = [SequenceStream(self, seq) for seq in seqs]
            for stream in streams:
                self._streams[stream.seq] = stream
            self._inbox.extend(seqs)
            self._waiting += len(seqs)
        self._wake.set()
        return streams

    def _start_thread(self) -> None:
        engine = self._engine
        self._thread = threading.Thread(
            target=self._run, args=(engine,), name=f"engine-{self.name}", daemon=True
        )
        self._thread.start()

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

    def _fail_open_streams(self, error: Callable[[], SeekportError]) -> None:
        """End every open stream, queued ones included, with a fresh ``error()`` each."""
        with self._lock:
            gone = list(self._streams)
            self._inbox = []
            self._waiting = 0
        self._deliver([(seq, error()) for seq in gone])

    def _on_failure(self, exc: BaseException) -> None:
        """Event loop, after the engine thread died of ``exc``: fail its streams, restart."""
        self.failures += 1
        self._failed_in_a_row += 1
        message = (
            f"the local engine of model '{self.name}' failed ({type(exc).__name__}) and is "
            "restarting; retry"
        )
        self._fail_open_streams(lambda: EngineFailedError(message, retry_after=1))
        if not self._stopping:
            self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        n = self._failed_in_a_row
        delay = 0.0 if n <= 1 else min(self.MAX_RESTART_DELAY_S, 0.1 * 2 ** (n - 2))
        while True:
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
            if self._stopping:
                return
            try:
                # the failed step left the KV cache and sampler chains in an unknown state
                await asyncio.to_thread(self._runner.reset)
                break
            except Exception:
                log.exception("engine reset failed", extra={"fields": {"model": self.name}})
                delay = min(self.MAX_RESTART_DELAY_S, max(0.1, delay * 2))
        self._engine = LLMEngine(self._runner, self.cfg)
        with self._lock:
            self._waiting = len(self._inbox)
            self._free_slots = self.cfg.max_num_seqs
        self._healthy = True
        self._start_thread()
        log.warning(
            "engine restarted after a failure",
            extra={"fields": {"model": self.name, "failures": self.failures}},
        )

    async def aclose(self) -> None:
        self._stopping = True
        self._closing.set()
        self._wake.set()
        if self._recovery is not None:
            await self._recovery  # returns at its next check (at most one runner reset)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        self._fail_open_streams(
            lambda: OverloadedError("the server is shutting down; retry", retry_after=1)
        )

    # ---- engine thread

    def _run(self, engine: LLMEngine) -> None:
        try:
            self._serve(engine)
        except BaseException as exc:
            log.exception("engine thread failed", extra={"fields": {"model": self.name}})
            self._healthy = False  # at once: /health/ready turns 503 before the loop knows
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody to tell
                self._loop.call_soon_threadsafe(self._on_failure, exc)

    def _serve(self, engine: LLMEngine) -> None:
        while not self._stopping:
            with self._lock:
                new, self._inbox = self._inbox, []
            refused: list[tuple[Sequence, object]] = []
            gone: dict[Sequence, object] = {}  # refused here: their further choices follow
            for seq in new:
                if seq.after is not None and seq.after in gone:
                    gone[seq] = gone[seq.after]
                    refused.append((seq, gone[seq]))
                    continue
                try:
                    engine.add(seq)
                except SeekportError as exc:  # the line filled up since submit() looked
                    refused.append((seq, exc))
                    gone[seq] = exc
                except Exception as exc:  # the caller's checks should have caught it
                    log.exception(
                        "engine refused a sequence", extra={"fields": {"model": self.name}}
                    )
                    why = f"{type(exc).__name__}: {exc}"
                    gone[seq] = SeekportError(f"the local engine refused it ({why})")
                    refused.append((seq, gone[seq]))
            if refused and not self._post(refused):
                return
            if not engine.has_work():
                self._publish_waiting(engine)
                self._wake.wait()
                self._wake.clear()
                continue
            events: list[tuple[Sequence, object]] = list(engine.step())
            self._failed_in_a_row = 0
            self._publish_waiting(engine)
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

    def _publish_waiting(self, engine: LLMEngine) -> None:
        sched = engine.scheduler
        with self._lock:
            self._waiting = len(self._inbox) + len(sched.waiting)
            self._free_slots = self.cfg.max_num_seqs - len(sched.running)
