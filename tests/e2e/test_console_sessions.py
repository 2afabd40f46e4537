"""The web console's sessions, against a real server: login with an API key sets an HttpOnly,
SameSite=Strict cookie; the cookie stands in for the key on the API routes with the same role
checks; requests that change something need the session's CSRF token; a revoked key ends its
sessions; forged cookies and other secrets' cookies are refused; logout ends the session; bearer
keys work as before. Also the usage API's console fields (errors, latency, tokens per second,
last use) and its CSV export."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

SECRET = "a-test-session-secret-that-is-32-chars-or-more"
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("console-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("console")
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    config = write_config(
        tmp, models, log_level="warning", console={"session_secret": SECRET}, auth_cache_ttl_s=0.2
    )
    with run_server(config) as s:
        yield s


def bearer(server: Server, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def new_key(server: Server, role: str) -> tuple[str, str]:
    r = bearer(server, server.key, "POST", "/admin/keys", {"name": f"console-{role}", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def login(server: Server, key: str) -> tuple[httpx.Client, dict[str, Any], str]:
    """A browser-like client logged in with ``key``: its cookie jar, the session, Set-Cookie."""
    client = httpx.Client(base_url=server.url, timeout=30)
    _CLIENTS.append(client)
    r = client.post("/console/session", json={"key": key})
    assert r.status_code == 200, r.text
    return client, r.json(), r.headers["set-cookie"]


def test_page_and_assets_are_served_offline_with_a_strict_policy(server: Server) -> None:
    r = httpx.get(server.url + "/console", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http://" not in r.text and "https://" not in r.text  # nothing from a CDN
    asset = httpx.get(server.url + "/console/assets/app.js", timeout=10)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    # percent-encoded so that no client tidies the dots away before they reach the server
    escape = httpx.get(server.url + "/console/assets/%2e%2e/%2e%2e/deps.py", timeout=10)
    assert escape.status_code == 404
    assert "ASSETS" not in escape.text


def test_login_sets_an_httponly_strict_cookie_and_returns_the_role(server: Server) -> None:
    key_id, secret = new_key(server, "user")
    client, who, cookie = login(server, secret)
    assert who["key_id"] == key_id and who["role"] == "user"
    assert set(who["grants"]) == {"infer", "models", "balance", "knowledge"}
    assert len(who["csrf"]) >= 32 and who["expires_at"] > time.time()
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert attrs[0].startswith("seekport_session=")
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
    assert "max-age=86400" in attrs  # the session's whole lifetime (session_lifetime_s)
    assert "secure" not in attrs  # plain HTTP on loopback; over HTTPS it is Secure
    assert secret not in cookie  # the browser never keeps the key
    assert client.get("/console/session").json()["key_id"] == key_id


def test_a_bad_key_gets_401_and_no_cookie(server: Server) -> None:
    r = httpx.post(server.url + "/console/session", json={"key": "sk-sp-nope"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert "set-cookie" not in r.headers
    assert httpx.post(server.url + "/console/session", json={}, timeout=10).status_code == 400
    logged_out = httpx.get(server.url + "/console/session", timeout=10)
    assert logged_out.status_code == 200 and logged_out.json()["authenticated"] is False


def test_the_session_stands_in_for_the_key_with_its_role(server: Server) -> None:
    _, secret = new_key(server, "user")
    client, who, _ = login(server, secret)
    assert client.get("/v1/models").status_code == 200
    denied = client.get("/admin/keys")
    assert denied.status_code == 403 and "user" in denied.json()["error"]["message"]
    csrf = {"X-CSRF-Token": who["csrf"]}
    ok = client.post("/v1/chat/completions", json=CHAT, headers=csrf)
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"]
    # an auditor's session reads usage and the audit log, and may not call models
    _, audit_secret = new_key(server, "auditor")
    auditor, who2, _ = login(server, audit_secret)
    assert auditor.get("/admin/usage").status_code == 200
    assert auditor.get("/admin/audit").status_code == 200
    r = auditor.post("/v1/chat/completions", json=CHAT, headers={"X-CSRF-Token": who2["csrf"]})
    assert r.status_code == 403


def test_mutations_need_the_csrf_token(server: Server) -> None:
    _, secret = new_key(server, "admin")
    client, who, _ = login(server, secret)
    for headers in ({}, {"X-CSRF-Token": "x" * 43}, {"X-CSRF-Token": ""}):
        r = client.post(
            "/admin/keys", json={"name": "via-console", "role": "user"}, headers=headers
        )
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "csrf_failed"
        r = client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    made = client.post(
        "/admin/keys",
        json={"name": "via-console", "role": "user"},
        headers={"X-CSRF-Token": who["csrf"]},
    )
    assert made.status_code == 201, made.text
    # another session's token does not do
    _, other = new_key(server, "admin")
    _, other_who, _ = login(server, other)
    r = client.post(
        "/admin/keys",
        json={"name": "x", "role": "user"},
        headers={"X-CSRF-Token": other_who["csrf"]},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # a token with bytes no ASCII token has is refused like any wrong one, not a 500
    r = client.post("/v1/chat/completions", json=CHAT, headers={"X-CSRF-Token": b"\xe9" * 43})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # the right token from another site's page is refused too (Origin, Sec-Fetch-Site)
    for foreign in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = client.post("/v1/chat/completions", json=CHAT, headers={**foreign, **csrf_ok(who)})
        assert r.status_code == 403, foreign
        assert r.json()["error"]["code"] == "csrf_failed"
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin", **csrf_ok(who)}
    assert client.post("/v1/chat/completions", json=CHAT, headers=own).status_code == 200
    # behind a reverse proxy that rewrites Host: the browser's Sec-Fetch-Site decides, or,
    # from a browser that sends none, the proxy's X-Forwarded-Host
    proxied = [
        {"Origin": "https://ai.example.com", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://ai.example.com", "X-Forwarded-Host": "ai.example.com"},
    ]
    for headers in proxied:
        r = client.post("/v1/chat/completions", json=CHAT, headers={**headers, **csrf_ok(who)})
        assert r.status_code == 200, headers


def csrf_ok(who: dict[str, Any]) -> dict[str, str]:
    return {"X-CSRF-Token": who["csrf"]}


def test_login_comes_from_the_console_only_and_replaces_the_old_session(server: Server) -> None:
    _, secret = new_key(server, "user")
    body = f'{{"key": "{secret}", "x": "="}}'
    # another site's form can post text/plain (no preflight) and follow the answer: a login
    # CSRF would put the victim's browser on the attacker's key
    as_form = httpx.post(
        server.url + "/console/session",
        content=body,
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert as_form.status_code == 400 and "set-cookie" not in as_form.headers
    for foreign in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(
            server.url + "/console/session", json={"key": secret}, headers=foreign, timeout=10
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers
    client, _, _ = login(server, secret)
    first = client.cookies["seekport_session"]
    r = client.post("/console/session", json={"key": secret})
    assert r.status_code == 200
    assert client.cookies["seekport_session"] != first
    old = httpx.get(server.url + "/v1/models", cookies={"seekport_session": first}, timeout=10)
    assert old.status_code == 401  # the session a new login replaced has ended


def test_bearer_keys_work_as_before_and_win_over_a_cookie(server: Server) -> None:
    _, secret = new_key(server, "user")
    client, _, _ = login(server, secret)
    # a bearer key needs no CSRF token, with or without a cookie beside it
    r = client.get("/admin/keys", headers={"Authorization": f"Bearer {server.key}"})
    assert r.status_code == 200
    r = client.post(
        "/admin/keys",
        json={"name": "by-bearer", "role": "user"},
        headers={"Authorization": f"Bearer {server.key}"},
    )
    assert r.status_code == 201
    assert bearer(server, secret, "POST", "/v1/chat/completions", CHAT).status_code == 200


def test_forged_and_foreign_cookies_are_refused(server: Server) -> None:
    from itsdangerous import URLSafeTimedSerializer

    _, secret = new_key(server, "user")
    client, _, _ = login(server, secret)
    real = client.cookies["seekport_session"]
    forged = [
        real[:-2] + ("AA" if not real.endswith("AA") else "BB"),
        "x" * 500,
        URLSafeTimedSerializer(
            "another-secret-of-enough-length-0000", salt="seekport.console.session"
        ).dumps("sid"),
        URLSafeTimedSerializer(SECRET, salt="seekport.console.session").dumps("not-a-session"),
    ]
    for value in forged:
        r = httpx.get(server.url + "/v1/models", cookies={"seekport_session": value}, timeout=10)
        assert r.status_code == 401, value
        assert r.json()["error"]["code"] == "session_expired"


def test_revoking_the_key_ends_its_sessions(server: Server) -> None:
    key_id, secret = new_key(server, "user")
    client, _, _ = login(server, secret)
    assert client.get("/v1/models").status_code == 200
    assert bearer(server, server.key, "POST", f"/admin/keys/{key_id}/revoke").status_code == 200
    deadline = time.monotonic() + 5
    while (r := client.get("/v1/models")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "session_key_invalid"
    assert client.get("/console/session").json()["authenticated"] is False
    assert client.get("/v1/models").json()["error"]["code"] == "session_expired"  # it ended


def test_logout_needs_the_token_then_ends_the_session(server: Server) -> None:
    _, secret = new_key(server, "user")
    client, who, _ = login(server, secret)
    cookie = client.cookies["seekport_session"]
    assert client.delete("/console/session").status_code == 403
    r = client.delete("/console/session", headers={"X-CSRF-Token": who["csrf"]})
    assert r.status_code == 204
    assert "max-age=0" in r.headers["set-cookie"].lower()
    again = httpx.get(server.url + "/v1/models", cookies={"seekport_session": cookie}, timeout=10)
    assert again.status_code == 401
    who = httpx.get(server.url + "/console/session", cookies={"seekport_session": cookie})
    assert who.json() == {"object": "console.session", "authenticated": False}


def test_logins_are_audited_and_read_newest_first(server: Server) -> None:
    key_id, secret = new_key(server, "auditor")
    login(server, secret)
    rows = bearer(server, server.key, "GET", "/admin/audit?action=console.login&limit=1000").json()
    assert any(r["actor_key_id"] == key_id for r in rows["data"])
    for _ in range(3):
        login(server, secret)
    q = "/admin/audit?order=desc&limit=2&action=console.login"
    newest = bearer(server, server.key, "GET", q).json()
    seqs = [r["seq"] for r in newest["data"]]
    assert seqs == sorted(seqs, reverse=True) and newest["next"] == seqs[-1]
    assert all(r["actor_key_id"] == key_id for r in newest["data"])  # the last logins
    older = bearer(server, server.key, "GET", f"{q}&before={newest['next']}").json()
    older_seqs = [r["seq"] for r in older["data"]]
    assert len(older_seqs) == 2 and seqs[-1] > older_seqs[0] > older_seqs[1]
    everything = bearer(server, server.key, "GET", "/admin/audit?limit=1000").json()["data"]
    assert everything[-1]["seq"] == seqs[0]  # ascending, as before, by default


def test_usage_has_errors_latency_speed_last_use_and_a_csv(server: Server) -> None:
    key_id, secret = new_key(server, "user")
    before = time.time()
    for _ in range(3):
        assert bearer(server, secret, "POST", "/v1/chat/completions", CHAT).status_code == 200
    bad = bearer(server, secret, "POST", "/v1/chat/completions", {**CHAT, "model": "nope"})
    assert bad.status_code == 404
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        report = bearer(
            server, server.key, "GET", f"/admin/usage?group_by=key&key_id={key_id}"
        ).json()
        if report["data"] and report["data"][0]["requests"] == 4:
            break
        time.sleep(0.1)
    [row] = report["data"]
    assert row["group"] == key_id and row["requests"] == 4 and row["errors"] == 1
    assert row["latency_ms_avg"] > 0 and row["tokens_per_s"] > 0
    assert 0 < row["generating_ms"] <= row["latency_ms_avg"] * 4
    tps = row["completion_tokens"] / (row["generating_ms"] / 1000)
    assert abs(row["tokens_per_s"] - tps) <= 0.01 * tps + 0.01
    assert before - 1 <= row["last_at"] <= time.time() + 1
    assert report["totals"][0]["errors"] == 1 and report["totals"][0]["last_at"] == row["last_at"]
    r = bearer(server, server.key, "GET", f"/admin/usage?group_by=key&key_id={key_id}&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="usage-key.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["group"] for x in rows] == [key_id]
    assert rows[0]["requests"] == "4" and rows[0]["errors"] == "1"
    bad_format = bearer(server, server.key, "GET", "/admin/usage?format=xml")
    assert bad_format.status_code == 400  # in the API's error shape, naming the parameter
    assert bad_format.json()["error"]["param"] == "format"
    assert "'json' or 'csv'" in bad_format.json()["error"]["message"]
