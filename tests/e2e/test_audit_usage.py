"""The audit log and the usage read API, end to end: admin actions and key lifecycle audited
with who, what, when and from where (tenant-scoped reads, JSONL and CSV export); failed
authentications and refusals aggregated into one row per minute, with no usage record per bad
key; retention run on the job queue; ``GET /admin/usage`` totals grouped by key, model, day."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, stop_process, write_config

SUMMED = ("group", "currency", "requests", "prompt_tokens", "completion_tokens", "cached_tokens")
SUMMED += ("cost_nanos", "cost")
SENT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("audit-chaos")) as chaos:
        yield chaos


def config_for(tmp: Path, upstream: Chaos, **fields: Any) -> Path:
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    pricing = {
        "models": [
            {"model": "m1", "input_cache_hit": "0", "input_cache_miss": "1000", "output": "2000"}
        ]
    }
    return write_config(tmp, models, log_level="warning", pricing=pricing, **fields)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    with run_server(config_for(tmp_path_factory.mktemp("audit"), upstream)) as s:
        yield s


def call(server: Server, secret: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        server.url + path,
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def make_key(server: Server, secret: str, **body: Any) -> dict[str, Any]:
    r = call(server, secret, "POST", "/admin/keys", {"name": "k", **body})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def test_admin_actions_are_audited_and_read_per_tenant(server: Server) -> None:
    root = server.key
    t = call(server, root, "POST", "/admin/tenants", {"name": "audited"}).json()
    admin = make_key(server, root, role="admin", tenant_id=t["id"])
    auditor = make_key(server, root, role="auditor", tenant_id=t["id"])
    user = call(server, admin["secret"], "POST", "/admin/users", {"name": "u"}).json()
    k = make_key(server, admin["secret"], user_id=user["id"])
    call(server, admin["secret"], "POST", f"/admin/keys/{k['id']}/rotate", {"grace_s": 0})
    call(server, admin["secret"], "POST", f"/admin/keys/{k['id']}/revoke")

    page = call(server, auditor["secret"], "GET", "/admin/audit?limit=1000")
    assert page.status_code == 200, page.text
    rows = page.json()["data"]
    assert {r["tenant_id"] for r in rows} == {t["id"]}  # its own tenant's rows only
    by_admin = [r for r in rows if r["actor_key_id"] == admin["id"]]
    assert [(r["action"], r["target_id"]) for r in by_admin] == [
        ("user.create", user["id"]),
        ("key.create", k["id"]),
        ("key.rotate", k["id"]),
        ("key.revoke", k["id"]),
    ]
    assert all(r["client_ip"] == "127.0.0.1" and r["actor_role"] == "admin" for r in by_admin)
    assert all(r["outcome"] == "ok" and r["count"] == 1 for r in by_admin)
    made = next(r for r in rows if r["action"] == "tenant.create")
    assert made["target_id"] == t["id"] and made["actor_role"] == "superadmin"
    assert "secret" not in orjson.dumps(rows).decode()  # no secret ever reaches the log

    # pages follow `next`; another tenant's auditor sees none of it; a user may not read it
    first = call(server, auditor["secret"], "GET", "/admin/audit?limit=2").json()
    assert len(first["data"]) == 2 and first["next"] == first["data"][-1]["seq"]
    second = call(server, auditor["secret"], "GET", f"/admin/audit?limit=2&after={first['next']}")
    assert second.json()["data"][0]["seq"] > first["next"]
    other = call(server, root, "POST", "/admin/tenants", {"name": "elsewhere"}).json()
    stranger = make_key(server, root, role="auditor", tenant_id=other["id"])
    theirs = call(server, stranger["secret"], "GET", "/admin/audit").json()["data"]
    assert all(r["tenant_id"] == other["id"] for r in theirs)
    plain = make_key(server, root, role="user", tenant_id=t["id"])
    assert call(server, plain["secret"], "GET", "/admin/audit").status_code == 403

    # export: JSON Lines and CSV, the same rows as the pages
    rows = call(server, auditor["secret"], "GET", "/admin/audit?limit=1000").json()["data"]
    jsonl = call(server, auditor["secret"], "GET", "/admin/audit/export?format=jsonl")
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in jsonl.text.splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in rows]
    as_csv = call(server, auditor["secret"], "GET", "/admin/audit/export?format=csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert table[0]["at"] and "action" in table[0]


def test_usage_totals_by_key_model_and_day(server: Server) -> None:
    root = server.key
    t = call(server, root, "POST", "/admin/tenants", {"name": "spender"}).json()
    a = make_key(server, root, tenant_id=t["id"])
    b = make_key(server, root, tenant_id=t["id"])
    for secret, n in ((a["secret"], 3), (b["secret"], 2)):
        for _ in range(n):
            assert call(server, secret, "POST", "/v1/chat/completions", SENT).status_code == 200
    auditor = make_key(server, root, role="auditor", tenant_id=t["id"])
    by_key = call(server, auditor["secret"], "GET", "/admin/usage?group_by=key").json()
    groups = {g["group"]: g for g in by_key["data"]}
    assert groups[a["id"]]["requests"] == 3 and groups[b["id"]]["requests"] == 2
    assert groups[a["id"]]["completion_tokens"] == 15
    assert groups[a["id"]]["cost"] == "0.033000" and groups[a["id"]]["currency"] == "USD"
    [total] = by_key["totals"]
    assert total["errors"] == 0 and total["latency_ms_avg"] > 0 and total["tokens_per_s"] > 0
    assert total["last_at"] == max(g["last_at"] for g in by_key["data"])
    assert [{k: v for k, v in total.items() if k in SUMMED}] == [
        {
            "group": None,
            "currency": "USD",
            "requests": 5,
            "prompt_tokens": 5,
            "completion_tokens": 25,
            "cached_tokens": 0,
            "cost_nanos": 55_000_000,
            "cost": "0.055000",
        }
    ]
    by_model = call(server, auditor["secret"], "GET", "/admin/usage?group_by=model").json()
    assert [(g["group"], g["requests"]) for g in by_model["data"]] == [("m1", 5)]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    by_day = call(server, auditor["secret"], "GET", "/admin/usage?group_by=day").json()
    assert [(g["group"], g["requests"]) for g in by_day["data"]] == [(today, 5)]
    one = call(server, auditor["secret"], "GET", f"/admin/usage?key_id={b['id']}").json()
    assert one["totals"][0]["requests"] == 2
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        call(server, auditor["secret"], "GET", f"/admin/usage?since={later}").json()["data"] == []
    )
    bad = call(server, auditor["secret"], "GET", "/admin/usage?since=yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    # the superadmin may ask for any tenant; another tenant's admin sees nothing of this one
    assert (
        call(server, root, "GET", f"/admin/usage?tenant_id={t['id']}").json()["totals"][0][
            "requests"
        ]
        == 5
    )
    other = call(server, root, "POST", "/admin/tenants", {"name": "nosy"}).json()
    nosy = make_key(server, root, role="admin", tenant_id=other["id"])
    peek = call(server, nosy["secret"], "GET", f"/admin/usage?tenant_id={t['id']}").json()
    assert peek["data"] == []
    plain = make_key(server, root, tenant_id=t["id"])
    assert call(server, plain["secret"], "GET", "/admin/usage").status_code == 403
    # the CLI reads the same totals
    out = server.cli("usage", "--group-by", "key", "--tenant", t["id"]).stdout.splitlines()
    line = next(x for x in out if x.startswith(a["id"]))
    assert line.split()[1:5] == ["3", "3", "15", "0.033000"] and line.endswith("USD")


def test_refusals_are_counted_into_one_row_a_minute_and_cost_no_write_each(
    tmp_path: Path, upstream: Chaos
) -> None:
    config = config_for(tmp_path, upstream, auth_failures_per_minute=5)
    with run_server(config) as s:
        limited = make_key(s, s.key, rpm=1)
        statuses = [
            call(s, limited["secret"], "POST", "/v1/chat/completions", SENT).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 429, 429, 429]
        for _ in range(8):  # random keys: 5 refused as invalid, then throttled
            r = call(s, "sk-sp-" + uuid.uuid4().hex, "GET", "/v1/models")
            assert r.status_code in (401, 429)
        stop_process(s.proc)  # a graceful stop writes the rows of the minute under way
        db = sqlite3.connect(s.data_dir / "seekport.db")
        try:
            audit = db.execute(
                "SELECT action, actor_key_id, client_ip, count, detail FROM audit_log "
                "WHERE outcome = 'refused' ORDER BY action, detail"
            ).fetchall()
            usage = db.execute("SELECT status FROM usage_records ORDER BY seq").fetchall()
        finally:
            db.close()
    rows = [(a, k, ip, n, orjson.loads(d) if d else None) for a, k, ip, n, d in audit]
    assert rows == [
        ("auth.failed", None, "127.0.0.1", 5, {"reason": "invalid"}),
        ("auth.failed", None, "127.0.0.1", 3, {"reason": "throttled"}),
        ("limit.refused", limited["id"], "127.0.0.1", 3, {"reason": "rate_limit_exceeded"}),
    ]
    assert usage == [(200,)]  # refused calls and bad keys wrote no usage record each


def test_retention_deletes_old_rows_on_the_job_queue(server: Server) -> None:
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=181)).replace(tzinfo=None)
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        db.execute(
            "INSERT INTO audit_log (id, at, action, outcome, count) VALUES (?, ?, ?, ?, ?)",
            ("aud_ancient", old.isoformat(sep=" "), "key.create", "ok", 1),
        )
    before = call(server, server.key, "GET", "/admin/audit?action=key.create&limit=1000")
    assert "aud_ancient" in {r["id"] for r in before.json()["data"]}
    admin = make_key(server, server.key, role="admin")
    assert call(server, admin["secret"], "POST", "/admin/audit/purge").status_code == 403
    done = call(server, server.key, "POST", "/admin/audit/purge")
    assert done.status_code == 200 and done.json()["deleted"] == 1, done.text
    after = call(server, server.key, "GET", "/admin/audit?action=key.create&limit=1000")
    ids = {r["id"] for r in after.json()["data"]}
    assert "aud_ancient" not in ids and len(ids) >= 1  # recent rows stay
