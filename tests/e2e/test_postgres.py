"""The same server on PostgreSQL (127.0.0.1:5432, database per test run): keys and usage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from seekport.store.sql.db import HEAD_REVISION
from tests.conftest import remote_models
from tests.harness import (
    Chaos,
    Server,
    openai_client,
    pg_database,
    pg_rows,
    run_cli,
    run_server,
    write_config,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    with pg_database() as name:
        yield name


@pytest.fixture(scope="module")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, chaos: Chaos, pg_db: str
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("pg")
    config = write_config(
        tmp, remote_models(chaos), database_url=f"postgresql+asyncpg://127.0.0.1:5432/{pg_db}"
    )
    with run_server(config, extra_env={"CHAOS_UPSTREAM_KEY": "k"}) as s:
        yield s


def test_migrations_create_the_schema_on_postgres(pg_server: Server, pg_db: str) -> None:
    rows = asyncio.run(pg_rows(pg_db, "SELECT version_num FROM alembic_version"))
    assert [r["version_num"] for r in rows] == [HEAD_REVISION]
    cols = asyncio.run(
        pg_rows(
            pg_db,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_records'",
        )
    )
    assert {"model", "served_model"} <= {r["column_name"] for r in cols}


def test_keys_are_stored_hashed_in_postgres(pg_server: Server, pg_db: str) -> None:
    rows = asyncio.run(pg_rows(pg_db, "SELECT id, secret_hash, prefix FROM api_keys"))
    assert rows
    for r in rows:
        assert len(r["secret_hash"]) == 64
        assert pg_server.key not in (r["secret_hash"], r["prefix"])


def test_usage_records_are_committed_to_postgres(
    pg_server: Server, pg_db: str, fresh_chaos: Chaos
) -> None:
    client = openai_client(pg_server.url + "/v1", pg_server.key)
    rid = "pg-" + uuid.uuid4().hex
    r = client.chat.completions.create(
        model="deepseek-chat",
        messages=[{"role": "user", "content": "你好"}],
        extra_headers={"X-Request-ID": rid},
    )
    assert r.usage is not None
    # committed before the response's last byte: visible at once, no polling
    rows = asyncio.run(
        pg_rows(pg_db, f"SELECT * FROM usage_records WHERE client_request_id = '{rid}'")
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == 200 and row["model"] == "deepseek-chat"
    assert row["prompt_tokens"] == r.usage.prompt_tokens
    assert row["completion_tokens"] == r.usage.completion_tokens
    assert row["client_ip"] == "127.0.0.1" and row["key_id"].startswith("key_")


def test_keys_cli_lists_and_revokes_on_postgres(pg_server: Server) -> None:
    created = pg_server.cli("keys", "create", "--name", "cli-pg", "--role", "user")
    secret = created.stdout.strip().splitlines()[-1]
    key_id = created.stdout.split()[2]
    assert secret.startswith("sk-sp-")
    listing = pg_server.cli("keys", "list").stdout
    assert key_id in listing and secret not in listing
    client = openai_client(pg_server.url, secret)
    assert client.models.list().data
    pg_server.cli("keys", "revoke", key_id)
    import time

    time.sleep(1.1)  # auth cache TTL
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    again = run_cli(pg_server.config, "keys", "revoke", key_id, env=pg_server.env, check=False)
    assert again.returncode == 1
