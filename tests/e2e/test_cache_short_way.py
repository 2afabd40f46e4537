"""Cache hits the short way (``gateway/hit_memo.py``), end to end: the same caller's same
request bytes, once they found a stored answer, skip parsing, the guard's passes and the cache
key, and still get the same answer, the guard's restored values and counters, a usage record
and the caller's limits; a reload, another key or other bytes never get an entry's answer.

The chaos upstream echoes the last user message (3 characters a chunk), so the answer carries
the caller's personal data back: redacted on the way out, restored for the caller."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

TEXT = "please mail li.lei@example.com about ticket 7"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("short-chaos")) as chaos:
        chaos.control(echo=True)
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("short")
    words = tmp / "words.txt"
    words.write_text("违禁词\n", encoding="utf-8")
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    guard = {
        "enabled": True,
        "pii": {"input": "redact", "restore": True, "output": "redact"},
        "words": {"files": [str(words)]},
    }
    config = write_config(
        tmp, models, log_level="warning", cache={"enabled": True, "ttl_s": 600}, guard=guard
    )
    with run_server(config) as s:
        yield s


def key(server: Server, name: str, **policy: Any) -> str:
    auth = {"Authorization": f"Bearer {server.key}"}
    t = httpx.post(server.url + "/admin/tenants", json={"name": name}, headers=auth).json()
    made = httpx.post(
        server.url + "/admin/keys",
        json={"name": name, "tenant_id": t["id"], **policy},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def chat(server: Server, secret: str, text: str = TEXT, **headers: str) -> httpx.Response:
    # the same bytes each time: one fixed body
    body = {"model": "m1", "messages": [{"role": "user", "content": text}], "temperature": 0}
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}", **headers},
        timeout=30,
    )


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
    ).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def upstream_calls(upstream: Chaos) -> int:
    return len(upstream.requests(last=100_000))


def test_a_repeated_hit_takes_the_short_way_with_the_same_answer(
    server: Server, upstream: Chaos
) -> None:
    secret = key(server, "short-a")
    short_before = metric(server, "seekport_cache_short_hits_total", model="m1")
    redacted_before = metric(server, "seekport_guard_actions_total", kind="email", action="redact")
    calls = upstream_calls(upstream)
    answers = [chat(server, secret, **{"X-Request-ID": f"short-{i}"}) for i in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert [r.headers["x-cache"] for r in answers] == ["miss", "hit", "hit", "hit"]
    assert upstream_calls(upstream) == calls + 1
    # the model saw the placeholder; the caller gets its own address back, every time
    content = [r.json()["choices"][0]["message"]["content"] for r in answers]
    assert content == [TEXT] * 4
    bodies = [r.json() for r in answers]
    assert bodies[1]["usage"] == bodies[2]["usage"] == bodies[3]["usage"]
    assert bodies[3]["usage"]["prompt_cache_hit_tokens"] == bodies[3]["usage"]["prompt_tokens"]
    assert len({b["id"] for b in bodies}) == 4
    # the first hit took the long way and left the entry; the next two took the short way
    assert metric(server, "seekport_cache_short_hits_total", model="m1") == short_before + 2
    # the guard's counters count every request's redaction, the short way's too
    after = metric(server, "seekport_guard_actions_total", kind="email", action="redact")
    assert after == redacted_before + 4
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        rows = db.execute(
            "SELECT client_request_id, backend, status, completion_tokens FROM usage_records "
            "WHERE client_request_id LIKE 'short-%' ORDER BY client_request_id"
        ).fetchall()
    tokens = bodies[0]["usage"]["completion_tokens"]
    assert rows == [
        ("short-0", "openai", 200, tokens),
        *[(f"short-{i}", "cache", 200, tokens) for i in (1, 2, 3)],
    ]
    # Cache-Control: no-cache still asks the model
    assert chat(server, secret, **{"Cache-Control": "no-cache"}).headers["x-cache"] == "miss"


def test_a_stream_hit_the_short_way_is_the_same_stream(server: Server) -> None:
    secret = key(server, "short-stream")
    body = {
        "model": "m1",
        "messages": [{"role": "user", "content": TEXT}],
        "temperature": 0,
        "stream": True,
    }
    texts = []
    for _ in range(4):
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
        texts.append(re.sub(r'"(id|created)":("[^"]*"|\d+)', "", r.text))
    assert texts[1] == texts[2] == texts[3]


def test_other_keys_and_other_bytes_never_get_an_entrys_answer(
    server: Server, upstream: Chaos
) -> None:
    a, b = key(server, "short-b1"), key(server, "short-b2")
    for _ in range(3):
        assert chat(server, a, "tenant b1's question").status_code == 200
    calls = upstream_calls(upstream)
    assert chat(server, b, "tenant b1's question").headers["x-cache"] == "miss"
    assert chat(server, a, "tenant b1's question!").headers["x-cache"] == "miss"
    assert upstream_calls(upstream) == calls + 2


def test_limits_still_count_on_the_short_way(server: Server) -> None:
    secret = key(server, "short-limited", rpm=4)
    statuses = [chat(server, secret, "limited question").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]


def test_a_reload_is_seen_by_requests_with_an_entry(server: Server) -> None:
    secret = key(server, "short-reload")
    text = "a question about a newword"
    assert [chat(server, secret, text).headers["x-cache"] for _ in range(3)] == ["miss"] + [
        "hit"
    ] * 2
    words = Path(server.config.parent / "words.txt")
    words.write_text("违禁词\nnewword\n", encoding="utf-8")
    r = httpx.post(
        server.url + "/admin/reload", headers={"Authorization": f"Bearer {server.key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    blocked = chat(server, secret, text)
    assert blocked.status_code == 400, blocked.text
    assert blocked.json()["error"]["code"] == "content_blocked"
