"""The content log, end to end (the chaos upstream in echo mode answers the question back):
per tenant off, redacted or full; read per tenant as JSON Lines; a user's entries erased
(hidden at once, audited) and deleted by the retention job after the grace period."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.harness import Chaos, Server, run_chaos, run_cli, run_server, write_config

QUESTION = "请联系 wang.wu@example.com 或 13812345678"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("content-chaos")) as chaos:
        chaos.control(echo=True)
        yield chaos


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, upstream: Chaos
) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("content")
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    config = write_config(tmp, models, log_level="warning")
    tenants = {
        name: run_cli(config, "tenants", "create", "--name", name).stdout.strip().splitlines()[-1]
        for name in ("full", "redacted", "quiet")
    }
    cfg = yaml.safe_load(config.read_text())
    cfg["content_log"] = {
        "tenants": {tenants["full"]: "full", tenants["redacted"]: "redacted"},
        "erasure_grace_days": 0,
    }
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with run_server(config) as s:
        yield s, tenants


def admin(server: Server, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    r = httpx.request(
        method,
        server.url + path,
        json=body,
        headers={"Authorization": f"Bearer {key or server.key}"},
        timeout=30,
    )
    assert r.status_code < 300, r.text
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


def ask(server: Server, secret: str) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "m1", "messages": [{"role": "user", "content": QUESTION}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def entries(server: Server, key: str, query: str = "") -> list[dict[str, Any]]:
    r = httpx.get(server.url + "/admin/content" + query, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return [orjson.loads(line) for line in r.text.splitlines()]


def wait_for(server: Server, key: str, n: int) -> list[dict[str, Any]]:
    """The entries are written in the background: poll a little."""
    deadline = time.monotonic() + 5
    while True:
        got = entries(server, key)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_each_tenant_keeps_what_its_mode_says(setup: tuple[Server, dict[str, str]]) -> None:
    server, tenants = setup
    keys = {
        name: admin(server, "POST", "/admin/keys", {"name": name, "tenant_id": tid})["secret"]
        for name, tid in tenants.items()
    }
    auditors = {
        name: admin(
            server, "POST", "/admin/keys", {"name": "a", "role": "auditor", "tenant_id": tid}
        )["secret"]
        for name, tid in tenants.items()
    }
    for secret in keys.values():
        ask(server, secret)
    full = wait_for(server, auditors["full"], 1)
    assert [e["mode"] for e in full] == ["full"]
    assert full[0]["request"]["messages"][0]["content"] == QUESTION
    assert full[0]["answer"] == [{"content": QUESTION, "reasoning": ""}]
    assert full[0]["tenant_id"] == tenants["full"] and full[0]["model"] == "m1"
    redacted = wait_for(server, auditors["redacted"], 1)
    assert redacted[0]["request"]["messages"][0]["content"] == "请联系 [EMAIL] 或 [PHONE_CN]"
    assert redacted[0]["answer"][0]["content"] == "请联系 [EMAIL] 或 [PHONE_CN]"
    assert entries(server, auditors["quiet"]) == []  # off: nothing kept
    # the superadmin reads one tenant's, or every tenant's
    assert len(entries(server, server.key, f"?tenant_id={tenants['full']}")) == 1
    plain = keys["full"]
    assert (
        httpx.get(
            server.url + "/admin/content", headers={"Authorization": f"Bearer {plain}"}
        ).status_code
        == 403
    )


def test_a_users_entries_are_erased_and_then_deleted(
    setup: tuple[Server, dict[str, str]],
) -> None:
    server, tenants = setup
    tid = tenants["full"]
    boss = admin(server, "POST", "/admin/keys", {"name": "boss", "role": "admin", "tenant_id": tid})
    user = admin(server, "POST", "/admin/users", {"name": "erasable", "tenant_id": tid})
    secret = admin(server, "POST", "/admin/keys", {"name": "u", "user_id": user["id"]})["secret"]
    ask(server, secret)
    ask(server, secret)
    mine = f"?user_id={user['id']}"
    deadline = time.monotonic() + 5
    while len(entries(server, boss["secret"], mine)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(entries(server, boss["secret"], mine)) == 2
    # another tenant's admin cannot erase (or see) this user
    other = admin(
        server, "POST", "/admin/keys", {"name": "x", "role": "admin", "tenant_id": tenants["quiet"]}
    )
    refused = httpx.post(
        server.url + f"/admin/users/{user['id']}/erase",
        headers={"Authorization": f"Bearer {other['secret']}"},
    )
    assert refused.status_code == 404
    done = admin(server, "POST", f"/admin/users/{user['id']}/erase", key=boss["secret"])
    assert done == {"user_id": user["id"], "erased": 2, "deleted_within_days": 0.0}
    assert entries(server, boss["secret"], mine) == []  # hidden at once
    audit = admin(server, "GET", "/admin/audit?action=user.erase", key=boss["secret"])["data"]
    assert [(r["target_id"], r["detail"]) for r in audit] == [(user["id"], {"entries": 2})]
    # the retention job deletes erased entries past their grace (0 days here)
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        count = "SELECT count(*) FROM content_log WHERE user_id = ?"
        assert db.execute(count, (user["id"],)).fetchone() == (2,)
    purged = admin(server, "POST", "/admin/audit/purge")
    assert purged["content_deleted"] >= 2
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        assert db.execute(count, (user["id"],)).fetchone() == (0,)
