"""The exact response cache, end to end, in front of the suite's chaos upstream: a repeated
deterministic request is answered once, a stream is replayed as the same stream, tenants never
share an entry, and what must not be cached (sampled requests, other models, errors, streams cut
short) is not."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

SENT: dict[str, Any] = {
    "model": "m1",
    "messages": [{"role": "user", "content": "what is a cache"}],
    "temperature": 0,
    "max_tokens": 6,
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("cache-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("cache")
    models = [
        {"name": name, "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}
        for name in ("m1", "m2")
    ]
    cache = {"enabled": True, "models": ["m1"], "ttl_s": 600}
    config = write_config(tmp, models, log_level="warning", cache=cache, routing={"max_retries": 0})
    with run_server(config) as s:
        yield s


def upstream_calls(upstream: Chaos) -> int:
    return len(upstream.requests(last=100_000))


def tenant_key(server: Server, name: str) -> str:
    auth = {"Authorization": f"Bearer {server.key}"}
    t = httpx.post(server.url + "/admin/tenants", json={"name": name}, headers=auth).json()
    made = httpx.post(
        server.url + "/admin/keys", json={"name": name, "tenant_id": t["id"]}, headers=auth
    )
    return str(made.json()["secret"])


def post(server: Server, secret: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}", **headers},
        timeout=30,
    )


def stream_chunks(server: Server, secret: str, body: dict[str, Any]) -> tuple[str, list[Any]]:
    r = post(server, secret, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200, r.text
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    return r.headers["x-cache"], chunks


def content_of(chunks: list[Any]) -> list[str]:
    return [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]


def test_a_repeated_request_is_answered_once_and_billed_as_a_cache_hit(
    server: Server, upstream: Chaos
) -> None:
    secret = tenant_key(server, "alpha")
    before = upstream_calls(upstream)
    first = post(server, secret, SENT, **{"X-Request-ID": "cache-first"})
    again = post(server, secret, SENT, **{"X-Request-ID": "cache-again"})
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert upstream_calls(upstream) == before + 1
    a, b = first.json(), again.json()
    assert b["choices"] == a["choices"] and b["id"] != a["id"]
    assert b["usage"]["prompt_cache_hit_tokens"] == b["usage"]["prompt_tokens"] == 4
    assert b["usage"]["completion_tokens"] == a["usage"]["completion_tokens"] == 6
    # a changed output-shaping field is another entry; the client's `user` is not
    assert post(server, secret, {**SENT, "max_tokens": 5}).headers["x-cache"] == "miss"
    assert post(server, secret, {**SENT, "user": "someone"}).headers["x-cache"] == "hit"
    # Cache-Control: no-cache asks the model again (and stores the new answer)
    assert post(server, secret, SENT, **{"Cache-Control": "no-cache"}).headers["x-cache"] == "miss"
    # each answer still leaves its usage record; a hit's names the cache as its backend
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        rows = dict(
            db.execute(
                "SELECT client_request_id, backend FROM usage_records "
                "WHERE client_request_id IN ('cache-first', 'cache-again')"
            ).fetchall()
        )
    assert rows == {"cache-first": "openai", "cache-again": "cache"}


def test_tenants_never_share_an_answer_even_for_identical_requests(
    server: Server, upstream: Chaos
) -> None:
    a, b = tenant_key(server, "tenant-a"), tenant_key(server, "tenant-b")
    body = {**SENT, "messages": [{"role": "user", "content": "a secret of tenant a"}]}
    before = upstream_calls(upstream)
    assert post(server, a, body).headers["x-cache"] == "miss"
    assert post(server, a, body).headers["x-cache"] == "hit"
    assert post(server, b, body).headers["x-cache"] == "miss"  # never a's answer
    assert post(server, b, body).headers["x-cache"] == "hit"
    assert upstream_calls(upstream) == before + 2


def test_a_stream_is_replayed_as_the_same_stream(server: Server, upstream: Chaos) -> None:
    secret = tenant_key(server, "streamer")
    body = {**SENT, "messages": [{"role": "user", "content": "stream me"}]}
    first_state, first = stream_chunks(server, secret, body)
    again_state, again = stream_chunks(server, secret, body)
    assert (first_state, again_state) == ("miss", "hit")
    assert content_of(again) == content_of(first) and len(content_of(first)) >= 6
    assert again[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in again if c["choices"]]
    assert finishes[-1] == "length" and finishes.count("length") == 1
    assert again[-1]["usage"]["completion_tokens"] == first[-1]["usage"]["completion_tokens"]
    # the same entry serves a non-stream request: the aggregate of the same events
    whole = post(server, secret, body)
    assert whole.headers["x-cache"] == "hit"
    assert whole.json()["choices"][0]["message"]["content"] == "".join(
        t or "" for t in content_of(first)
    )


def test_what_must_not_be_cached_is_not(server: Server, upstream: Chaos) -> None:
    secret = tenant_key(server, "careful")
    sampled = {**SENT, "temperature": 1}
    assert "x-cache" not in post(server, secret, sampled).headers  # not deterministic
    seeded = {**sampled, "seed": 7}
    assert post(server, secret, seeded).headers["x-cache"] == "miss"  # a seed makes it so
    assert "x-cache" not in post(server, secret, {**SENT, "model": "m2"}).headers
    # an upstream error is never stored
    failing = {**SENT, "messages": [{"role": "user", "content": "fail once"}]}
    upstream.control(script="error:500")
    try:
        assert post(server, secret, failing).status_code >= 500
    finally:
        upstream.control(reset=True)
    assert post(server, secret, failing).headers["x-cache"] == "miss"
    # a stream the upstream cuts short is not stored
    broken = {**SENT, "messages": [{"role": "user", "content": "broken"}], "stream": True}
    upstream.control(script="reset")
    try:
        r = post(server, secret, broken)
        assert '"error"' in r.text  # the in-band error of a stream cut after its first byte
    finally:
        upstream.control(reset=True)
    assert post(server, secret, {**broken, "stream": False}).headers["x-cache"] == "miss"
    # a stream the client leaves before its end is not stored
    cut = {**SENT, "messages": [{"role": "user", "content": "cut me short"}], "stream": True}
    upstream.control(drip_ms=150)
    try:
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json=cut,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as r:
            assert r.headers["x-cache"] == "miss"
            next(r.iter_lines())
    finally:
        upstream.control(reset=True)
    assert post(server, secret, {**cut, "stream": False}).headers["x-cache"] == "miss"
    metrics = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
    ).text
    assert 'seekport_cache_lookups_total{model="m1",result="hit"}' in metrics
    assert 'seekport_cache_bytes_total{direction="stored"}' in metrics


def test_a_key_or_a_tenant_can_switch_the_cache(server: Server, upstream: Chaos) -> None:
    never = server.cli("keys", "create", "--name", "n", "--no-cache").stdout.splitlines()[-1]
    assert "x-cache" not in post(server, never, SENT).headers
    assert "x-cache" not in post(server, never, SENT).headers
    always = server.cli("keys", "create", "--name", "a", "--cache").stdout.splitlines()[-1]
    other_model = {**SENT, "model": "m2"}  # not under cache.models
    assert post(server, always, other_model).headers["x-cache"] == "miss"
    assert post(server, always, other_model).headers["x-cache"] == "hit"
