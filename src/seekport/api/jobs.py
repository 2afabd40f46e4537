"""The server's background jobs, on the huey queue (``store/jobs.py``): retention of the
audit log and the content log (with erased entries past their grace), daily at 03:17 UTC
and on demand (``POST /admin/audit/purge``); the ingestion of knowledge-base documents (a
failed run is retried twice; its status in the knowledge store says how far it got); with
``backup.dir`` set, a backup of the SQLite store every ``backup.every_minutes`` (its last
success is the gauge ``seekport_backup_last_success_timestamp_seconds``).

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
from collections.abc import Callable
from typing import Any

from huey import crontab

from seekport.config import Settings
from seekport.store.backup import backup, prune
from seekport.store.jobs import JobRunner, huey_for
from seekport.store.protocols import AuditStore, ContentStore
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.jobs")
JOB_TIMEOUT_S = 300.0


class Jobs:
    def __init__(
        self,
        settings: Settings,
        audit: AuditStore,
        content: ContentStore,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics | None = None,
    ) -> None:
        digest = hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:12]
        self.huey = huey_for(settings.data_dir, settings.redis_url, name=f"seekport-{digest}")
        days = settings.audit_retention_days
        kept = settings.content_log

        def purge_audit() -> dict[str, int]:
            now = dt.datetime.now(dt.UTC)
            before = now - dt.timedelta(days=days)
            deleted = asyncio.run_coroutine_threadsafe(audit.purge(before), loop).result(
                timeout=JOB_TIMEOUT_S
            )
            content_deleted = asyncio.run_coroutine_threadsafe(
                content.purge(
                    now - dt.timedelta(days=kept.retention_days),
                    now - dt.timedelta(days=kept.erasure_grace_days),
                ),
                loop,
            ).result(timeout=JOB_TIMEOUT_S)
            log.info(
                "retention ran",
                extra={"fields": {"audit_deleted": deleted, "content_deleted": content_deleted}},
            )
            return {"audit": deleted, "content": content_deleted}

        self._purge = self.huey.task(name="purge_audit")(purge_audit)
        # knowledge-base ingestion: the handler is wired once the knowledge layer exists; a
        # document whose job a crash cut is queued again at start (its status says so)
        self.ingest_handler: Callable[[str], str] | None = None

        def ingest_document(doc_id: str) -> str:
            if self.ingest_handler is None:
                raise RuntimeError("knowledge bases are not wired")
            return self.ingest_handler(doc_id)

        self._backup: Callable[[], Any] | None = None  # with backup.dir
        self._ingest = self.huey.task(name="ingest_document", retries=2, retry_delay=5)(
            ingest_document
        )
        self.huey.periodic_task(crontab(minute="17", hour="3"), name="purge_audit_daily")(
            purge_audit
        )
        b = settings.backup
        if b.dir is not None:
            data_dir, dest, keep = settings.data_dir, b.dir.expanduser(), b.keep

            def backup_store() -> str:
                made = backup(data_dir, dest)
                pruned = prune(dest, keep)
                if metrics is not None:
                    metrics.backup_last_success.set_to_current_time()
                log.info(
                    "backup made",
                    extra={"fields": {"backup": str(made), "pruned": len(pruned)}},
                )
                return str(made)

            minute = "0" if b.every_minutes == 60 else f"*/{b.every_minutes}"
            self.huey.periodic_task(crontab(minute=minute), name="backup_store")(backup_store)
            self._backup = self.huey.task(name="backup_now")(backup_store)
        self._runner = JobRunner(self.huey)

    def start(self) -> None:
        self._runner.start()

    def enqueue_ingest(self, doc_id: str) -> None:
        """Queue a document's ingestion (durable: SQLite or Redis)."""
        self._ingest(doc_id)

    def stop(self) -> None:
        self._runner.stop()

    async def purge_now(self) -> dict[str, int]:
        """Queue the retention job and wait for a worker to run it; the rows it deleted, per
        log (``audit``, ``content``)."""
        result = self._purge()
        deleted = await asyncio.to_thread(result.get, blocking=True, timeout=JOB_TIMEOUT_S)
        return {str(k): int(v) for k, v in dict(deleted).items()}

    async def backup_now(self) -> str | None:
        """Queue a backup (as the schedule does) and wait for a worker to make it: its
        directory; None when no ``backup.dir`` is configured."""
        if self._backup is None:
            return None
        result = self._backup()
        made = await asyncio.to_thread(result.get, blocking=True, timeout=JOB_TIMEOUT_S)
        return str(made)
