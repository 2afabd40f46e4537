"""Error statuses and bodies, auth, limits, request ids, records and metrics, in-process."""

from __future__ import annotations

import sqlite3

import pytest

from tests.harness import Chaos
from tests.integration.conftest import App

CHAT = "/v1/chat/completions"
OK_BODY = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}


def assert_error(resp: object, status: int, code: str | None = None) -> dict[str, object]:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    err = resp.json()["error"]  # type: ignore[attr-defined]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    return dict(err)


def usage_rows(app: App) -> list[sqlite3.Row]:
    con = sqlite3.connect(app.data_dir / "seekport.db")
    con.row_factory = sqlite3.Row
    try:
        return list(con.execute("SELECT * FROM usage_records ORDER BY seq"))
    finally:
        con.close()


async def test_missing_key_is_401_with_www_authenticate(app: App) -> None:
    r = await app.client.post(CHAT, json=OK_BODY)
    assert_error(r, 401, "invalid_api_key")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer sk-sp-forged",
        "bearer " + "x" * 10_000,
        "Bearer ключ".encode(),
    ],
)
async def test_bad_keys_are_401_and_never_echoed(app: App, header: str | bytes) -> None:
    r = await app.client.post(CHAT, json=OK_BODY, headers={"Authorization": header})
    err = assert_error(r, 401)
    assert "forged" not in str(err["message"])


async def test_key_is_checked_before_the_body(app: App) -> None:
    r = await app.client.post(CHAT, content=b"{not json", headers={"Authorization": "Bearer x"})
    assert_error(r, 401)


async def test_models_requires_a_key(app: App) -> None:
    assert_error(await app.client.get("/models"), 401)
    r = await app.client.get("/models", headers=app.auth())
    assert r.status_code == 200
    assert r.json()["data"][0] == {
        "id": "deepseek-chat",
        "object": "model",
        "created": r.json()["data"][0]["created"],
        "owned_by": "seekport",
    }


async def test_malformed_json_is_400(app: App) -> None:
    r = await app.client.post(CHAT, content=b'{"model": ', headers=app.auth())
    assert_error(r, 400, "invalid_json")


async def test_non_object_body_is_400(app: App) -> None:
    r = await app.client.post(CHAT, content=b"[1, 2]", headers=app.auth())
    assert_error(r, 400, "invalid_json")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": None}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"temperature": 9}, "temperature"),
        ({"n": 17}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
    ],
)
async def test_invalid_fields_are_400_naming_the_param(
    app: App, patch: dict[str, object], param: str
) -> None:
    body = {**OK_BODY, **patch}
    if patch.get("messages", 0) is None:
        del body["messages"]
    err = assert_error(await app.client.post(CHAT, json=body, headers=app.auth()), 400)
    assert str(err["param"]).startswith(param)


async def test_unknown_model_is_404_model_not_found(app: App) -> None:
    r = await app.client.post(CHAT, json={**OK_BODY, "model": "gpt-9"}, headers=app.auth())
    err = assert_error(r, 404, "model_not_found")
    assert "gpt-9" in str(err["message"])


async def test_unknown_route_is_404_with_error_body(app: App) -> None:
    assert_error(await app.client.get("/v1/nothing", headers=app.auth()), 404)


async def test_body_over_the_limit_is_413_and_recorded(app: App) -> None:
    big = {**OK_BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
    headers = {**app.auth(), "X-Request-ID": "too-big-1"}
    assert_error(await app.client.post(CHAT, json=big, headers=headers), 413, "request_too_large")
    rows = [r for r in usage_rows(app) if r["client_request_id"] == "too-big-1"]
    assert [(r["status"], r["error_code"], r["route"]) for r in rows] == [
        (413, "request_too_large", "chat.completions")
    ]


async def test_chunked_body_over_the_limit_is_413_and_recorded(app: App) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1000

    headers = {**app.auth(), "X-Request-ID": "too-big-2"}
    r = await app.client.post(CHAT, content=chunks(), headers=headers)
    assert_error(r, 413)
    rows = [r for r in usage_rows(app) if r["client_request_id"] == "too-big-2"]
    assert [(r["status"], r["error_code"]) for r in rows] == [(413, "request_too_large")]


async def test_request_id_is_echoed_or_generated(app: App, fresh_chaos: Chaos) -> None:
    r = await app.client.post(
        CHAT, json=OK_BODY, headers={**app.auth(), "X-Request-ID": "my-trace-1"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "my-trace-1"
    r2 = await app.client.post(CHAT, json=OK_BODY, headers=app.auth())
    assert r2.headers["x-request-id"].startswith("req_")


async def test_every_request_leaves_one_usage_record(app: App, fresh_chaos: Chaos) -> None:
    """Every request past authentication; a bad key leaves none (it is counted in the audit
    log's aggregated rows instead: no durable write per bad key)."""
    await app.client.post(CHAT, json=OK_BODY, headers={**app.auth(), "X-Request-ID": "ok-1"})
    await app.client.post(CHAT, json=OK_BODY, headers={"X-Request-ID": "nokey-1"})
    await app.client.post(CHAT, content=b"{", headers={**app.auth(), "X-Request-ID": "bad-1"})
    await app.client.post(
        CHAT, json={**OK_BODY, "stream": True}, headers={**app.auth(), "X-Request-ID": "stream-1"}
    )
    rows = {r["client_request_id"]: r for r in usage_rows(app)}
    assert rows["ok-1"]["status"] == 200 and rows["ok-1"]["completion_tokens"] == 16
    assert rows["ok-1"]["client_ip"] == "10.1.2.3" and rows["ok-1"]["backend"] == "openai"
    assert "nokey-1" not in rows
    assert rows["bad-1"]["status"] == 400
    assert rows["stream-1"]["status"] == 200 and rows["stream-1"]["stream"] == 1
    assert rows["stream-1"]["ttft_ms"] is not None
    assert len({r["request_id"] for r in usage_rows(app)}) == len(usage_rows(app))


async def test_content_is_not_stored(app: App, fresh_chaos: Chaos) -> None:
    body = {**OK_BODY, "messages": [{"role": "user", "content": "secret-canary-42"}]}
    await app.client.post(CHAT, json=body, headers=app.auth())
    raw = (app.data_dir / "seekport.db").read_bytes()
    wal = app.data_dir / "seekport.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"secret-canary-42" not in raw


async def test_metrics_are_prometheus_text_with_our_prefix(app: App, fresh_chaos: Chaos) -> None:
    await app.client.post(CHAT, json=OK_BODY, headers=app.auth())
    r = await app.client.get("/metrics", headers=app.auth())
    assert r.status_code == 200
    text = r.text
    assert (
        'seekport_requests_total{model="deepseek-chat",route="chat.completions",status="200"}'
        in text
    )
    for name in (
        "seekport_request_latency_seconds_bucket",
        "seekport_requests_in_flight",
        "seekport_time_to_first_token_seconds_bucket",
        "seekport_tokens_total",
    ):
        assert name in text


async def test_health_needs_no_key(app: App) -> None:
    assert (await app.client.get("/health/live")).status_code == 200
    r = await app.client.get("/health/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key", "extra_headers"])
@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/anthropic/v1/messages"])
async def test_a_request_may_not_pick_the_upstream_or_its_credentials(
    app: App, fresh_chaos: Chaos, field: str, path: str
) -> None:
    before = len(fresh_chaos.requests(last=1000))
    body = {**OK_BODY, "prompt": "hi", "max_tokens": 8, field: "http://169.254.169.254/"}
    r = await app.client.post(path, json=body, headers=app.auth())
    assert r.status_code == 400, r.text
    assert "169.254" not in r.text and field in r.text
    assert len(fresh_chaos.requests(last=1000)) == before  # nothing went upstream
