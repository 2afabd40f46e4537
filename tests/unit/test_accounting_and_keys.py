"""UsageRecorder and KeyService over a real SQLite file (no stand-ins for our own classes):
group commit, one bad row not losing the others, failures surfacing as 503 and in the
metric, hashed keys, the auth cache and revocation across instances."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event

from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
)
from seekport.gateway.accounting import UsageEvent, UsageRecorder
from seekport.gateway.auth import KeyService
from seekport.store.kv import MemoryLimiter
from seekport.store.sql import Database, KeyRepository, UsageRepository
from seekport.telemetry.metrics import Metrics


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'seekport.db'}")
    await database.open()
    yield database
    await database.close()


def usage(request_id: str | None = None) -> UsageEvent:
    return UsageEvent(
        request_id=request_id or "req_" + uuid.uuid4().hex,
        client_request_id=None,
        key_id=None,
        route="chat.completions",
        model="m",
        served_model="m",
        backend="openai",
        stream=0,
        status=200,
        error_code=None,
        prompt_tokens=3,
        completion_tokens=2,
        cached_tokens=0,
        latency_ms=1.0,
        ttft_ms=None,
        client_ip="127.0.0.1",
        created_at=dt.datetime.now(dt.UTC),
    )


def _as_row(ev: UsageEvent) -> dict[str, object]:
    return dataclasses.asdict(ev)


def failures(metrics: Metrics) -> float:
    return float(metrics.usage_write_failures._value.get())


async def test_records_waiting_for_the_lock_are_committed_together(
    db: Database, tmp_path: Path
) -> None:
    """With another writer holding SQLite's lock, records queue up behind the first and are
    committed together once it is free: far fewer transactions than records, none lost."""
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    assert db.sync_engine is not None
    event.listen(db.sync_engine, "commit", count)  # the path that waits for the lock
    recorder = UsageRecorder(UsageRepository(db), Metrics())
    await recorder.start()
    blocker = sqlite3.connect(tmp_path / "seekport.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's write transaction
    records = asyncio.gather(*(recorder.record(usage()) for _ in range(200)))
    await asyncio.sleep(0.3)
    assert not records.done()  # nothing acknowledged while nothing could be committed
    assert await UsageRepository(db).count() == 0
    blocker.execute("COMMIT")
    blocker.close()
    await records
    await recorder.stop()
    assert await UsageRepository(db).count() == 200
    assert commits < 20  # group commit: far fewer transactions than records


async def test_an_idle_record_is_committed_before_record_returns(
    db: Database, tmp_path: Path
) -> None:
    """The path without a queue (the lock free, nothing waiting) stores what the SQLAlchemy
    path stores, and the row is durable when ``record`` returns."""
    recorder = UsageRecorder(UsageRepository(db), Metrics())
    await recorder.start()
    ev = usage("req_inline")
    ev.ttft_ms, ev.cost_nanos, ev.currency = 12.5, 1234, "CNY"
    await recorder.record(ev)
    other = sqlite3.connect(tmp_path / "seekport.db")
    assert other.execute(
        "SELECT count(*) FROM usage_records WHERE request_id = 'req_inline'"
    ).fetchone() == (1,)
    other.close()
    await UsageRepository(db).insert_many([_as_row(usage("req_threaded"))])
    await recorder.stop()
    repo = UsageRepository(db)
    inline, threaded = await repo.get("req_inline"), await repo.get("req_threaded")
    assert inline is not None and threaded is not None
    assert inline["created_at"] == ev.created_at.replace(tzinfo=None)  # as SQLAlchemy stores it
    assert (inline["ttft_ms"], inline["cost_nanos"], inline["currency"]) == (12.5, 1234, "CNY")
    assert type(inline["created_at"]) is type(threaded["created_at"])


async def test_one_duplicate_does_not_lose_the_rows_beside_it(db: Database) -> None:
    metrics = Metrics()
    recorder = UsageRecorder(UsageRepository(db), metrics)
    await recorder.start()
    await recorder.record(usage("req_dup"))
    results = await asyncio.gather(
        recorder.record(usage("req_dup")),
        recorder.record(usage("req_a")),
        recorder.record(usage("req_b")),
        return_exceptions=True,
    )
    await recorder.stop()
    assert isinstance(results[0], OverloadedError) and results[0].status_code == 503
    assert results[1:] == [None, None]
    repo = UsageRepository(db)
    assert await repo.get("req_a") is not None and await repo.get("req_b") is not None
    assert failures(metrics) == 1


async def test_a_store_that_fails_is_a_503_and_the_writer_keeps_going(
    db: Database, tmp_path: Path
) -> None:
    metrics = Metrics()
    recorder = UsageRecorder(UsageRepository(db), metrics)
    await recorder.start()
    con = sqlite3.connect(tmp_path / "seekport.db")
    rename = "ALTER TABLE usage_records RENAME TO {}"
    con.execute(rename.format("usage_away"))  # a real failure of the real database
    con.commit()
    with pytest.raises(OverloadedError):
        await recorder.record(usage())
    recorder.record_nowait(usage())  # never raises: counted as a failure
    await asyncio.sleep(0.2)
    assert failures(metrics) == 2
    con.execute(rename.replace("usage_records", "usage_away").format("usage_records"))
    con.commit()
    con.close()
    await recorder.record(usage("req_after"))  # the writer survived
    await recorder.stop()
    assert await UsageRepository(db).get("req_after") is not None


async def test_stop_commits_what_is_queued(db: Database) -> None:
    recorder = UsageRecorder(UsageRepository(db), Metrics())
    await recorder.start()
    for i in range(30):
        recorder.record_nowait(usage(f"req_bg{i}"))  # e.g. clients gone mid-stream
    await recorder.stop()
    assert await UsageRepository(db).count() == 30


async def test_keys_are_stored_hashed_and_authenticate(db: Database, tmp_path: Path) -> None:
    keys = KeyService(KeyRepository(db))
    record, secret = await keys.create("team-a", "user")
    assert secret.startswith("sk-sp-") and len(secret) > 40
    principal = await keys.authenticate(f"Bearer {secret}")
    assert (principal.key_id, principal.name, principal.role) == (record.id, "team-a", "user")
    con = sqlite3.connect(tmp_path / "seekport.db")
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert secret not in dump and secret[10:30] not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic abc", "Bearer sk-sp-unknown", "Bearer " + "x" * 600],
)
async def test_bad_authorization_headers_are_401(db: Database, header: str | None) -> None:
    keys = KeyService(KeyRepository(db))
    with pytest.raises(AuthenticationError):
        await keys.authenticate(header)


async def test_bad_role_or_name_is_400(db: Database) -> None:
    keys = KeyService(KeyRepository(db))
    with pytest.raises(InvalidRequestError):
        await keys.create("x", "root")
    with pytest.raises(InvalidRequestError):
        await keys.create("", "user")


async def test_revocation_reaches_another_instance_when_its_cache_entry_ends(
    db: Database,
) -> None:
    ttl = 0.4
    here = KeyService(KeyRepository(db), cache_ttl_s=ttl)
    there = KeyService(KeyRepository(db), cache_ttl_s=ttl)  # another replica, same database
    record, secret = await here.create("k", "user")
    await there.authenticate(f"Bearer {secret}")  # cached there
    assert await here.revoke(record.id)
    with pytest.raises(AuthenticationError):
        await here.authenticate(f"Bearer {secret}")  # at once where it was revoked
    await there.authenticate(f"Bearer {secret}")  # still cached there
    await asyncio.sleep(ttl + 0.1)
    with pytest.raises(AuthenticationError):
        await there.authenticate(f"Bearer {secret}")


async def test_a_spray_of_unknown_keys_cannot_evict_a_known_one(db: Database) -> None:
    keys = KeyService(KeyRepository(db), cache_ttl_s=60)
    _record, secret = await keys.create("k", "user")
    await keys.authenticate(f"Bearer {secret}")
    for i in range(10_050):  # more than the cache holds
        with pytest.raises(AuthenticationError):
            await keys.authenticate(f"Bearer sk-sp-random{i}")
    queries = 0

    def count(*_args: object) -> None:
        nonlocal queries
        queries += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    await keys.authenticate(f"Bearer {secret}")
    assert queries == 0  # still answered from the cache, no database query
    with pytest.raises(AuthenticationError):
        await keys.authenticate("Bearer sk-sp-never-seen")
    assert queries == 1  # (the counter does see a lookup that misses the cache)


async def test_an_address_that_keeps_failing_gets_429_before_any_lookup(db: Database) -> None:
    metrics = Metrics()
    keys = KeyService(
        KeyRepository(db), limiter=MemoryLimiter(), failures_per_minute=3, metrics=metrics
    )
    _record, secret = await keys.create("k", "user")
    for header in (None, "Basic abc", "Bearer sk-sp-unknown"):  # missing, malformed, invalid
        with pytest.raises(AuthenticationError):
            await keys.authenticate(header, "10.0.0.1")
    queries = 0

    def count(*_args: object) -> None:
        nonlocal queries
        queries += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    for header in ("Bearer sk-sp-another", f"Bearer {secret}"):
        with pytest.raises(RateLimitError) as info:
            await keys.authenticate(header, "10.0.0.1")
        assert info.value.status_code == 429 and info.value.retry_after == 20  # 60 s / 3
    assert queries == 0  # refused before the key store was asked
    assert (await keys.authenticate(f"Bearer {secret}", "10.0.0.2")).name == "k"  # others pass
    # now known valid (cached): it passes from the throttled address too, with no lookup —
    # a good client behind the same address as a bad one keeps working
    queries = 0
    assert (await keys.authenticate(f"Bearer {secret}", "10.0.0.1")).name == "k"
    assert queries == 0
    text = metrics.render().decode()
    for reason, n in (("missing", 1), ("malformed", 1), ("invalid", 1), ("throttled", 2)):
        assert f'seekport_auth_failures_total{{reason="{reason}"}} {n}.0' in text


async def test_successful_authentications_never_count_against_an_address(db: Database) -> None:
    keys = KeyService(KeyRepository(db), limiter=MemoryLimiter(), failures_per_minute=2)
    _record, secret = await keys.create("k", "user")
    for _ in range(20):
        await keys.authenticate(f"Bearer {secret}", "10.0.0.1")
    with pytest.raises(AuthenticationError):
        await keys.authenticate("Bearer sk-sp-unknown", "10.0.0.1")
    await keys.authenticate(f"Bearer {secret}", "10.0.0.1")  # one failure of two: still in
