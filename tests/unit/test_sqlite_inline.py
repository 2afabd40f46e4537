"""The SQLite writer on the event loop (``store/sql/inline.py``) over a real file: it never
waits for a lock (Busy at once, nothing written), a duplicate is the DBAPI's IntegrityError,
and its WAL is checkpointed in a thread, so the file stays bounded though its own
autocheckpoint is off."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from seekport.store.sql import Database, UsageRepository
from seekport.store.sql.inline import CHECKPOINT_EVERY, Busy
from seekport.store.sql.tables import usage_records


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'seekport.db'}")
    await database.open()
    yield database
    await database.close()


def row(request_id: str | None = None) -> dict[str, object]:
    return {
        "request_id": request_id or "req_" + uuid.uuid4().hex,
        "client_request_id": None,
        "key_id": "k1",
        "route": "chat.completions",
        "model": "m",
        "served_model": "m",
        "backend": "openai",
        "stream": 0,
        "status": 200,
        "error_code": None,
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "cached_tokens": 0,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "client_ip": "127.0.0.1",
        "created_at": dt.datetime.now(dt.UTC),
        "deployment": None,
        "tenant_id": "t1",
        "user_id": None,
        "cost_nanos": None,
        "currency": None,
    }


async def test_a_held_lock_is_busy_at_once_and_nothing_is_written(
    db: Database, tmp_path: Path
) -> None:
    writer = db.inline_writer(usage_records)
    assert writer is not None
    blocker = sqlite3.connect(tmp_path / "seekport.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(Busy):
        writer.insert([row("req_busy")])
    assert time.monotonic() - started < 1  # the pool's busy timeout is 5 s: not waited
    blocker.execute("COMMIT")
    blocker.close()
    repo = UsageRepository(db)
    assert await repo.get("req_busy") is None
    writer.insert([row("req_after")])  # the same connection, usable again
    assert await repo.get("req_after") is not None


async def test_a_duplicate_is_an_integrity_error_and_the_batch_is_not_written(
    db: Database,
) -> None:
    writer = db.inline_writer(usage_records)
    assert writer is not None
    writer.insert([row("req_1")])
    with pytest.raises(sqlite3.IntegrityError):
        writer.insert([row("req_2"), row("req_1")])
    repo = UsageRepository(db)
    assert await repo.get("req_2") is None
    assert await repo.count() == 1


async def test_a_row_missing_a_column_is_refused(db: Database) -> None:
    writer = db.inline_writer(usage_records)
    assert writer is not None
    partial = {k: v for k, v in row().items() if k != "stream"}  # a column with a default
    with pytest.raises(ValueError, match="stream"):
        writer.insert([partial])


async def test_the_wal_is_checkpointed_though_autocheckpoint_is_off(
    db: Database, tmp_path: Path
) -> None:
    repo = UsageRepository(db)
    wal = tmp_path / "seekport.db-wal"
    sizes = []
    for _ in range(6):
        for _ in range(CHECKPOINT_EVERY):
            assert repo.insert_now([row()])
        for _ in range(100):  # the checkpoint runs in a thread
            await asyncio.sleep(0.01)
            if repo._checkpoint is None:
                break
        sizes.append(wal.stat().st_size)
    assert await repo.count() == 6 * CHECKPOINT_EVERY
    # after a checkpoint the next writer starts the WAL over: it stops growing
    assert max(sizes) < 2 * sizes[0], sizes
