"""Tenants → users → keys, end to end: the five roles checked on every route (``/metrics``
included), an admin that sees only its own tenant (404 for another's ids), limits a user or a
tenant puts over all its keys, rotation with a grace period, revocation within a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]
CHAT = {"model": "m1", "messages": MESSAGES}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("tenancy-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("tenancy")
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    with run_server(write_config(tmp, models, log_level="warning")) as s:
        yield s


def cli_key(server: Server, *flags: str) -> str:
    out = server.cli("keys", "create", "--name", "k", *flags)
    return out.stdout.strip().splitlines()[-1]


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def call(server: Server, secret: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, headers=auth(secret), timeout=30)


def chat(server: Server, secret: str) -> httpx.Response:
    return call(server, secret, "POST", "/v1/chat/completions", CHAT)


def test_every_route_checks_the_role(server: Server) -> None:
    keys = {
        role: cli_key(server, "--role", role)
        for role in ("superadmin", "admin", "user", "auditor", "viewer")
    }
    routes = {
        ("POST", "/v1/chat/completions"): {"superadmin", "admin", "user"},
        ("POST", "/v1/responses"): {"superadmin", "admin", "user"},
        ("GET", "/v1/models"): {"superadmin", "admin", "user", "auditor", "viewer"},
        ("GET", "/metrics"): {"superadmin", "viewer"},
        ("GET", "/admin/routing"): {"superadmin"},
        ("GET", "/admin/tenants"): {"superadmin", "admin"},
        ("GET", "/admin/users"): {"superadmin", "admin"},
        ("GET", "/admin/keys"): {"superadmin", "admin"},
    }
    bodies = {
        "/v1/chat/completions": CHAT,
        "/v1/responses": {"model": "m1", "input": "hi"},
    }
    for (method, path), allowed in routes.items():
        for role, secret in keys.items():
            r = call(server, secret, method, path, bodies.get(path))
            want = 200 if role in allowed else 403
            assert r.status_code == want, (method, path, role, r.text)
            if want == 403:
                error = r.json()["error"]
                assert error["code"] == "permission_denied" and role in error["message"]
        assert httpx.request(method, server.url + path, json=bodies.get(path)).status_code == 401
    # Anthropic's route and shape, with its own x-api-key header
    for role, allowed in (("viewer", False), ("user", True)):
        with anthropic.Anthropic(
            base_url=server.url + "/anthropic", api_key=keys[role], max_retries=0
        ) as client:
            if allowed:
                answer = client.messages.create(model="m1", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
                assert answer.content
            else:
                with pytest.raises(anthropic.PermissionDeniedError) as info:
                    client.messages.create(model="m1", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
                assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_an_admin_sees_and_changes_only_its_own_tenant(server: Server) -> None:
    root = server.key
    a = call(server, root, "POST", "/admin/tenants", {"name": "team-a"}).json()
    b = call(server, root, "POST", "/admin/tenants", {"name": "team-b"}).json()
    assert a["object"] == "tenant" and a["id"].startswith("ten_")
    dup = call(server, root, "POST", "/admin/tenants", {"name": "team-a"})
    assert dup.status_code == 400 and dup.json()["error"]["code"] == "already_exists"
    admin_a = call(
        server, root, "POST", "/admin/keys", {"name": "a", "role": "admin", "tenant_id": a["id"]}
    ).json()
    assert admin_a["tenant_id"] == a["id"] and admin_a["secret"].startswith("sk-sp-")
    b_user = call(server, root, "POST", "/admin/users", {"name": "bob", "tenant_id": b["id"]})
    assert b_user.status_code == 201, b_user.text
    b_key = call(
        server, root, "POST", "/admin/keys", {"name": "bk", "user_id": b_user.json()["id"]}
    ).json()
    assert b_key["tenant_id"] == b["id"]

    sa = admin_a["secret"]
    alice = call(server, sa, "POST", "/admin/users", {"name": "alice"})
    assert alice.status_code == 201 and alice.json()["tenant_id"] == a["id"]
    made = call(server, sa, "POST", "/admin/keys", {"name": "ak", "user_id": alice.json()["id"]})
    assert made.status_code == 201 and made.json()["tenant_id"] == a["id"]
    assert chat(server, made.json()["secret"]).status_code == 200

    listed = call(server, sa, "GET", "/admin/keys").json()["data"]
    assert {k["tenant_id"] for k in listed} == {a["id"]}
    assert [t["id"] for t in call(server, sa, "GET", "/admin/tenants").json()["data"]] == [a["id"]]
    assert {u["tenant_id"] for u in call(server, sa, "GET", "/admin/users").json()["data"]} == {
        a["id"]
    }
    # another tenant's objects are not found, whatever the verb
    for method, path, body in (
        ("GET", f"/admin/keys/{b_key['id']}", None),
        ("POST", f"/admin/keys/{b_key['id']}/revoke", None),
        ("POST", f"/admin/keys/{b_key['id']}/rotate", None),
        ("GET", f"/admin/users/{b_user.json()['id']}", None),
        ("PATCH", f"/admin/users/{b_user.json()['id']}", {"disabled": True}),
        ("GET", f"/admin/tenants/{b['id']}", None),
        ("POST", "/admin/users", {"name": "x", "tenant_id": b["id"]}),
        ("POST", "/admin/keys", {"name": "x", "tenant_id": b["id"]}),
        ("POST", "/admin/keys", {"name": "x", "user_id": b_user.json()["id"]}),
        ("GET", f"/admin/keys?tenant_id={b['id']}", None),
    ):
        r = call(server, sa, method, path, body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert chat(server, b_key["secret"]).status_code == 200  # untouched
    # an admin may not mint superadmins, nor manage tenants or the gateway
    up = call(server, sa, "POST", "/admin/keys", {"name": "x", "role": "superadmin"})
    assert up.status_code == 403
    assert (
        call(server, sa, "PATCH", f"/admin/tenants/{a['id']}", {"disabled": True}).status_code
        == 403
    )
    assert call(server, sa, "POST", "/admin/tenants", {"name": "c"}).status_code == 403
    # bad input: the API's error shape, the field named
    bad = call(server, sa, "POST", "/admin/keys", {"name": "x", "rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    # the superadmin sees every tenant
    everyone = call(server, root, "GET", "/admin/keys").json()["data"]
    assert {a["id"], b["id"]} <= {k["tenant_id"] for k in everyone}


def test_limits_of_a_tenant_and_a_user_hold_over_all_their_keys(server: Server) -> None:
    root = server.key
    t = call(server, root, "POST", "/admin/tenants", {"name": "small", "limits": {"rpm": 3}})
    tid = t.json()["id"]
    k1 = call(server, root, "POST", "/admin/keys", {"name": "1", "tenant_id": tid}).json()
    k2 = call(server, root, "POST", "/admin/keys", {"name": "2", "tenant_id": tid}).json()
    codes = [chat(server, k["secret"]).status_code for k in (k1, k2, k1, k2)]
    assert codes == [200, 200, 200, 429]
    refused = chat(server, k1["secret"])
    assert refused.status_code == 429 and "your tenant" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    # a user's limit holds over its keys, and a refusal by the user costs the tenant nothing
    u = call(server, root, "POST", "/admin/users", {"name": "u", "limits": {"rpm": 1}}).json()
    u1 = call(server, root, "POST", "/admin/keys", {"name": "u1", "user_id": u["id"]}).json()
    u2 = call(server, root, "POST", "/admin/keys", {"name": "u2", "user_id": u["id"]}).json()
    assert chat(server, u1["secret"]).status_code == 200
    second = chat(server, u2["secret"])
    assert second.status_code == 429 and "your user" in second.json()["error"]["message"]
    # a changed limit applies within the auth cache's second
    call(server, root, "PATCH", f"/admin/users/{u['id']}", {"limits": {}})
    time.sleep(1.2)
    assert chat(server, u2["secret"]).status_code == 200
    # disabling a tenant stops its keys
    call(server, root, "PATCH", f"/admin/tenants/{tid}", {"disabled": True})
    time.sleep(1.2)
    assert chat(server, k1["secret"]).status_code == 401


def test_rotation_keeps_the_old_secret_for_its_grace_period(server: Server) -> None:
    root = server.key
    made = call(server, root, "POST", "/admin/keys", {"name": "r"}).json()
    old = made["secret"]
    assert chat(server, old).status_code == 200
    rotated = call(server, root, "POST", f"/admin/keys/{made['id']}/rotate", {"grace_s": 2})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["id"] == made["id"]
    assert rotated.json()["previous_secret_valid_until"] is not None
    assert chat(server, new).status_code == 200
    assert chat(server, old).status_code == 200  # within the grace period
    time.sleep(2 + 1.2)  # the grace, then the auth cache's TTL
    assert chat(server, old).status_code == 401
    assert chat(server, new).status_code == 200
    # the CLI rotates too, its new secret alone on the last line
    out = server.cli("keys", "rotate", made["id"], "--grace", "0")
    newest = out.stdout.strip().splitlines()[-1]
    assert newest.startswith("sk-sp-")
    with openai.OpenAI(base_url=server.url + "/v1", api_key=newest, max_retries=0) as c:
        assert c.chat.completions.create(model="m1", messages=MESSAGES).choices  # type: ignore[arg-type]


def test_revocation_takes_effect_within_a_second(server: Server) -> None:
    made = call(server, server.key, "POST", "/admin/keys", {"name": "doomed"}).json()
    assert chat(server, made["secret"]).status_code == 200  # now cached as valid
    done = call(server, server.key, "POST", f"/admin/keys/{made['id']}/revoke")
    assert done.status_code == 200 and done.json()["revoked_at"] is not None
    assert chat(server, made["secret"]).status_code == 401  # this replica forgets at once
    # revoked by another process (as on another replica): the cache forgets it within its TTL
    secret = cli_key(server)
    key_id = next(
        k["id"]
        for k in call(server, server.key, "GET", "/admin/keys").json()["data"]
        if k["prefix"] == secret[:10]
    )
    assert chat(server, secret).status_code == 200
    server.cli("keys", "revoke", key_id)
    revoked_at = time.monotonic()
    while chat(server, secret).status_code == 200:
        assert time.monotonic() - revoked_at < 1.5
        time.sleep(0.05)
