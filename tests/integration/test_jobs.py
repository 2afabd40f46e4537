"""The job queue (huey on SQLite, in-process worker): the audit retention job is scheduled
daily at 03:17 UTC and deletes only rows past the retention."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from seekport.api.jobs import Jobs
from seekport.config import Settings
from seekport.gateway.audit import AuditEvent, AuditLog
from seekport.store.sql import AuditRepository, ContentRepository, Database


async def test_retention_is_a_daily_job_that_deletes_only_old_rows(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "audit_retention_days": 30,
            "models": [{"name": "m", "backend": "openai", "base_url": "http://127.0.0.1:9"}],
        }
    )
    db = Database(settings.resolved_database_url)
    await db.open()
    store = AuditRepository(db)
    log = AuditLog(store)
    now = dt.datetime.now(dt.UTC)
    for days in (31, 29, 0):
        await log.record(AuditEvent("key.create", at=now - dt.timedelta(days=days)))
    jobs = Jobs(settings, store, ContentRepository(db), asyncio.get_running_loop())
    jobs.start()
    try:
        when = dt.datetime(2026, 12, 2, 3, 17)  # huey's periodic schedule, at 03:17
        due = [t.name for t in jobs.huey.read_periodic(when)]
        assert due == ["purge_audit_daily"]
        assert jobs.huey.read_periodic(when.replace(minute=18)) == []
        assert await jobs.purge_now() == {"audit": 1, "content": 0}
        left = await store.query(tenant_id=None)
        assert len(left) == 2
        assert await jobs.purge_now() == {"audit": 0, "content": 0}  # idempotent
    finally:
        await asyncio.to_thread(jobs.stop)
        await db.close()
