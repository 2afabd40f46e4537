"""Background jobs on huey (a well-kept task queue, not a home-made scheduler): on SQLite in
``data_dir`` embedded, on Redis when ``redis_url`` is set (replicas share one queue; each runs
a worker, and a periodic job may then run once per replica, so jobs are idempotent).

The server runs the consumer in-process: one worker thread and huey's scheduler thread for
periodic jobs. The server owns the process's signals, so the consumer installs none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer

log = logging.getLogger("seekport.jobs")


def huey_for(data_dir: Path, redis_url: str | None, *, name: str = "seekport") -> Huey:
    if redis_url:
        return RedisHuey(name, url=redis_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(data_dir / "jobs.db"))


class _InProcessConsumer(Consumer):  # type: ignore[misc]
    def _set_signal_handlers(self) -> None:
        """The server's signals stay the server's (SIGTERM drains, SIGHUP reloads)."""


class JobRunner:
    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._consumer: Consumer | None = None

    def start(self) -> None:
        self._consumer = _InProcessConsumer(
            self.huey,
            workers=1,
            worker_type="thread",
            periodic=True,
            check_worker_health=False,
            max_delay=1.0,  # the idle worker polls at most this far apart (a quick stop)
            shutdown_timeout=5.0,
        )
        self._consumer.start()

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
