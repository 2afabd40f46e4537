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


async def test_keys_made_before_tenants_keep_working_and_admins_become_superadmins(
    tmp_path: Path,
) -> None:
    from seekport.gateway.auth import KeyService, hash_secret
    from seekport.store.sql import KeyRepository

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    engine.dispose()
    with sqlite3.connect(path) as conn:
        for key_id, role, secret in (
            ("key_a", "admin", "sk-sp-old-admin"),
            ("key_u", "user", "sk-sp-old-user"),
        ):
            conn.execute(
                "INSERT INTO api_keys (id, name, role, secret_hash, prefix, created_at) "
                "VALUES (?, 'old', ?, ?, 'sk-sp-old', '2026-11-01 00:00:00')",
                (key_id, role, hash_secret(secret)),
            )

    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.open()
    try:
        keys = KeyService(KeyRepository(db))
        admin = await keys.authenticate("Bearer sk-sp-old-admin")
        user = await keys.authenticate("Bearer sk-sp-old-user")
    finally:
        await db.close()
    assert (admin.role, admin.tenant_id, admin.tenant_scope) == ("superadmin", "ten_default", None)
    assert (user.role, user.tenant_id, user.tenant_scope) == ("user", "ten_default", "ten_default")
    assert admin.can("tenants") and not user.can("metrics")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, name FROM tenants").fetchall() == [
            ("ten_default", "default")
        ]
