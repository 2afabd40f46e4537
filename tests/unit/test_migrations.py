"""Migrations: a database made by an older seekport is brought to head at start, rows kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from seekport.store.sql.db import HEAD_REVISION, Database, alembic_config


async def test_a_0001_database_gains_served_model_and_deployment_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO usage_records (request_id, created_at, route, model, stream, status, "
            "prompt_tokens, completion_tokens, cached_tokens, latency_ms) "
            "VALUES ('req_old', '2026-11-01 00:00:00', 'chat.completions', 'deepseek-chat', "
            "0, 200, 1, 2, 0, 3.0)"
        )

    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.open()
    await db.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (HEAD_REVISION,)
        ]
        rows = conn.execute(
            "SELECT request_id, model, served_model, deployment FROM usage_records"
        ).fetchall()
    assert rows == [("req_old", "deepseek-chat", None, None)]
