"""The request scope, in-process over real SQLite: one usage record per request whatever
happens, the response headers, and a store that fails while recording (no [DONE] without a
record, 503 for non-stream, the failure metric)."""

from __future__ import annotations

import sqlite3

import orjson

from tests.harness import Chaos
from tests.integration.conftest import App
from tests.integration.test_api_contract import CHAT, OK_BODY, usage_rows


def data_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


async def test_headers_name_the_request_the_model_and_the_deployment(app: App) -> None:
    r = await app.client.post(CHAT, json=OK_BODY, headers=app.auth())
    assert r.status_code == 200
    assert r.headers["x-seekport-model"] == "deepseek-chat"
    assert r.headers["x-seekport-deployment"] == "deepseek-chat#0"
    (row,) = usage_rows(app)
    assert r.headers["x-request-id"] == row["request_id"]  # ours, when the client sent none
    assert row["status"] == 200 and row["client_request_id"] is None


async def test_client_request_id_is_echoed_and_stored_beside_ours(app: App) -> None:
    r = await app.client.post(
        CHAT, json={**OK_BODY, "stream": True}, headers={**app.auth(), "x-request-id": "trace-42"}
    )
    assert r.status_code == 200 and data_events(r.text)[-1] == "[DONE]"
    assert r.headers["x-request-id"] == "trace-42"
    (row,) = usage_rows(app)
    assert row["client_request_id"] == "trace-42"
    assert row["request_id"].startswith("req_") and row["stream"] == 1


async def test_each_kind_of_request_leaves_exactly_one_record(app: App, chaos: Chaos) -> None:
    chaos.control(reset=True, script="error:503,reset")
    try:
        await app.client.post(CHAT, json=OK_BODY)  # 401: no record (an aggregated audit row)
        await app.client.post(CHAT, json={**OK_BODY, "model": "nope"}, headers=app.auth())  # 404
        await app.client.post(CHAT, json=OK_BODY, headers=app.auth())  # upstream 503
        r = await app.client.post(CHAT, json={**OK_BODY, "stream": True}, headers=app.auth())
        assert "error" in orjson.loads(data_events(r.text)[-1])  # failed after its first byte
        await app.client.post(CHAT, json=OK_BODY, headers=app.auth())  # 200
    finally:
        chaos.control(reset=True)
    rows = usage_rows(app)
    assert [row["status"] for row in rows] == [404, 503, 502, 200]
    assert len({row["request_id"] for row in rows}) == 4


def drop_usage_table(app: App) -> None:
    con = sqlite3.connect(app.data_dir / "seekport.db")
    try:
        con.execute("DROP TABLE usage_records")
        con.commit()
    finally:
        con.close()


def failures(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("seekport_usage_write_failures_total "):
            return float(line.split()[1])
    raise AssertionError("no usage write failure metric")


async def test_a_store_failure_while_recording_is_never_a_silent_success(app: App) -> None:
    before = failures((await app.client.get("/metrics", headers=app.auth())).text)
    drop_usage_table(app)  # a real failure of the real store, not a stand-in

    r = await app.client.post(CHAT, json=OK_BODY, headers=app.auth())
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "server_overloaded"
    assert r.headers["retry-after"] == "1" and r.headers["x-request-id"]

    r = await app.client.post(CHAT, json={**OK_BODY, "stream": True}, headers=app.auth())
    assert r.status_code == 200  # the stream had started
    events = data_events(r.text)
    assert "[DONE]" not in events  # no [DONE] without a record
    assert orjson.loads(events[-1])["error"]["code"] == "server_overloaded"
    assert orjson.loads(events[-2])["choices"][0]["finish_reason"] == "stop"  # answer was sent

    after = failures((await app.client.get("/metrics", headers=app.auth())).text)
    assert after - before == 2


async def test_every_5xx_carries_the_request_id(app: App, chaos: Chaos) -> None:
    chaos.control(reset=True, script="error:500,reset")
    try:
        r = await app.client.post(CHAT, json=OK_BODY, headers=app.auth())  # upstream 500
        assert r.status_code == 502, r.text
        s = await app.client.post(CHAT, json={**OK_BODY, "stream": True}, headers=app.auth())
    finally:
        chaos.control(reset=True)
    ids = [r.headers["x-request-id"], s.headers["x-request-id"]]
    assert [row["request_id"] for row in usage_rows(app)] == ids  # the ids find the records
    assert [row["status"] for row in usage_rows(app)] == [502, 502]
    missing = await app.client.get("/no/such/route")
    assert missing.status_code == 404 and missing.headers["x-request-id"].startswith("req_")
