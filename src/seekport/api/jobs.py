"""The server's background jobs, on the huey queue (``store/jobs.py``): the audit log's
retention, daily at 03:17 UTC and on demand (``POST /admin/audit/purge``).

A job runs in huey's worker thread and does its database work on the server's event loop
(the same async engine as everything else). Replicas that share a database share a queue
(its name is derived from the database URL), so any of them may run a job; the retention job
is idempotent, which is all a periodic job run once per replica needs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

from huey import crontab

from seekport.config import Settings
from seekport.store.jobs import JobRunner, huey_for
from seekport.store.protocols import AuditStore

log = logging.getLogger("seekport.jobs")
JOB_TIMEOUT_S = 300.0


class Jobs:
    def __init__(
        self, settings: Settings, audit: AuditStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        digest = hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:12]
        self.huey = huey_for(settings.data_dir, settings.redis_url, name=f"seekport-{digest}")
        days = settings.audit_retention_days

        def purge_audit() -> int:
            before = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
            deleted = asyncio.run_coroutine_threadsafe(audit.purge(before), loop).result(
                timeout=JOB_TIMEOUT_S
            )
            log.info(
                "audit retention ran",
                extra={"fields": {"deleted": deleted, "older_than_days": days}},
            )
            return deleted

        self._purge = self.huey.task(name="purge_audit")(purge_audit)
        self.huey.periodic_task(crontab(minute="17", hour="3"), name="purge_audit_daily")(
            purge_audit
        )
        self._runner = JobRunner(self.huey)

    def start(self) -> None:
        self._runner.start()

    def stop(self) -> None:
        self._runner.stop()

    async def purge_audit_now(self) -> int:
        """Queue the retention job and wait for a worker to run it; the rows it deleted."""
        result = self._purge()
        deleted = await asyncio.to_thread(result.get, blocking=True, timeout=JOB_TIMEOUT_S)
        return int(deleted)
