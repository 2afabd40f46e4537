"""Routing end to end: one seekport in front of three chaos upstream processes — model ``m``
served by deployments ``m-a`` and ``m-b``, model ``backup`` by ``c`` as m's fallback — driven
by the official openai package. Faults are changed at run time on ``m-a`` while ``m-b`` stays
healthy: every client request must succeed, and no stream may repeat or lose a token.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.harness import (
    Chaos,
    Server,
    run_chaos,
    run_server,
    upstream_record,
    usage_row,
    write_config,
)

ANSWER = " ".join(f"tok{i}" for i in range(16))
MESSAGES: Any = [{"role": "user", "content": "say something nice"}]
COOLDOWN_S = 1.0

FAULTS: dict[str, dict[str, Any]] = {
    "http_500": {"error_rate": 1, "error_codes": [500]},
    "http_503": {"error_rate": 1, "error_codes": [503]},
    "http_429_retry_after": {"error_rate": 1, "error_codes": [429], "retry_after_s": 1},
    "reset": {"reset_rate": 1, "stall_after_chunks": 0},
    "timeout": {"timeout_rate": 1},
    "stall_before_first_byte": {"stall_rate": 1, "stall_after_chunks": 0},
    "malformed": {"malformed_rate": 1, "stall_after_chunks": 0},
}


def _model(name: str, chaos: Chaos, deployment: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "backend": "openai",
        "base_url": chaos.url,
        "upstream_model": "deepseek-chat",
        "deployment": deployment,
        "read_timeout_s": 1,
        "first_token_timeout_s": 1,
        **extra,
    }


def _models(a: Chaos, b: Chaos, c: Chaos, weight_a: float = 1) -> list[dict[str, Any]]:
    return [
        _model("m", a, "m-a", weight=weight_a),
        _model("m", b, "m-b"),
        _model("backup", c, "c"),
    ]


ROUTING = {
    "fallbacks": {"m": ["backup"]},
    "breaker": {"cooldown_s": COOLDOWN_S, "max_cooldown_s": 2 * COOLDOWN_S},
    "backoff_s": 0.01,
}


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chaos, Chaos, Chaos]]:
    tmp = tmp_path_factory.mktemp("routing-chaos")
    with (
        run_chaos(tmp, name="a") as a,
        run_chaos(tmp, name="b") as b,
        run_chaos(tmp, name="c") as c,
    ):
        yield a, b, c


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[Chaos, Chaos, Chaos]
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("routing-server")
    config = write_config(tmp, _models(*upstreams), routing=ROUTING, log_level="warning")
    with run_server(config) as s:
        yield s


@pytest.fixture
def healthy(upstreams: tuple[Chaos, Chaos, Chaos], routed: Server) -> tuple[Chaos, Chaos, Chaos]:
    """All three upstreams healthy, their counters zeroed, every breaker closed again and no
    Retry-After skip left."""
    for u in upstreams:
        u.control(reset=True)
    deadline = time.monotonic() + 10 * COOLDOWN_S
    while time.monotonic() < deadline:
        if all(
            d["breaker"]["state"] == "closed" and d["skipped_for_s"] == 0
            for group in routing_state(routed)["groups"].values()
            for d in group
        ):
            break
        # a probe closes a half-open breaker (one still open answers 503 meanwhile)
        for model in ("m", "backup"):
            with contextlib.suppress(openai.APIStatusError):
                client(routed).chat.completions.create(model=model, messages=MESSAGES)
        time.sleep(COOLDOWN_S / 4)
    for u in upstreams:
        u.control(reset_stats=True)
    return upstreams


_CLIENTS: dict[str, openai.OpenAI] = {}


def client(server: Server) -> openai.OpenAI:
    if server.url not in _CLIENTS:
        _CLIENTS[server.url] = openai.OpenAI(
            base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=30
        )
    return _CLIENTS[server.url]


def routing_state(server: Server) -> dict[str, Any]:
    r = httpx.get(
        server.url + "/admin/routing", headers={"Authorization": f"Bearer {server.key}"}, timeout=5
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def breaker(server: Server, deployment: str) -> dict[str, Any]:
    for group in routing_state(server)["groups"].values():
        for d in group:
            if d["deployment"] == deployment:
                return dict(d["breaker"])
    raise KeyError(deployment)


def ask(server: Server, *, stream: bool) -> tuple[str, str]:
    """One request through the openai package: (answer text, deployment that served it)."""
    c = client(server)
    if not stream:
        raw = c.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        text = raw.parse().choices[0].message.content or ""
        return text, raw.headers["x-seekport-deployment"]
    with c.chat.completions.with_streaming_response.create(
        model="m", messages=MESSAGES, stream=True
    ) as resp:
        pieces = [
            ch.choices[0].delta.content or ""
            for ch in resp.parse()
            if ch.choices and ch.choices[0].delta
        ]
        return "".join(pieces), resp.headers["x-seekport-deployment"]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_request_succeeds_with_one_healthy_deployment(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos], fault: str
) -> None:
    a, _, _ = healthy
    a.control(**FAULTS[fault])
    served = []
    for i in range(12):
        text, dep = ask(routed, stream=i % 2 == 0)
        assert text == ANSWER, (fault, i, dep)  # nothing repeated, nothing lost
        served.append(dep)
    assert set(served) <= {"m-a", "m-b"}
    assert a.stats()["requests_total"] >= 1  # the faulty one was tried
    if fault != "http_429_retry_after":  # a 429 skips the deployment; it is not a failure
        assert breaker(routed, "m-a")["state"] != "closed", (routing_state(routed), a.stats())
        assert a.stats()["requests_total"] <= 6


def test_breaker_opens_then_recovers(routed: Server, healthy: tuple[Chaos, Chaos, Chaos]) -> None:
    a, _, _ = healthy
    a.control(error_rate=1, error_codes=[502])
    for _ in range(10):
        assert ask(routed, stream=True)[0] == ANSWER
    assert breaker(routed, "m-a")["state"] in ("open", "half_open")
    tried = a.stats()["requests_total"]
    assert tried == 5  # ejected after exactly its 5 consecutive failures
    a.control(reset=True)  # healed
    time.sleep(COOLDOWN_S * 2.5)  # past the (doubled, capped) cooldown
    served = {ask(routed, stream=False)[1] for _ in range(8)}
    assert "m-a" in served and breaker(routed, "m-a")["state"] == "closed"


def test_all_down_is_a_fast_503_after_the_fallback(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos]
) -> None:
    a, b, c = healthy
    for u in (a, b, c):
        u.control(error_rate=1, error_codes=[500])
    for _ in range(8):  # open every breaker
        with pytest.raises(openai.APIStatusError):
            ask(routed, stream=False)
    before = sum(u.stats()["requests_total"] for u in (a, b, c))
    with pytest.raises(openai.APIStatusError) as info:
        ask(routed, stream=True)
    err = info.value
    assert err.status_code == 503 and int(err.response.headers["retry-after"]) >= 1
    body = err.response.json()
    assert body["error"]["type"] == "server_error" and body["error"]["code"] == "server_overloaded"
    assert sum(u.stats()["requests_total"] for u in (a, b, c)) == before  # nothing was called


def test_a_failed_group_falls_back_and_says_so(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos]
) -> None:
    a, b, _ = healthy
    a.control(error_rate=1, error_codes=[500])
    b.control(error_rate=1, error_codes=[500])
    raw = client(routed).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    answer = raw.parse()
    assert answer.model == "backup" and answer.choices[0].message.content == ANSWER
    assert raw.headers["x-seekport-model"] == "backup"
    assert raw.headers["x-seekport-deployment"] == "c"
    metrics = httpx.get(
        routed.url + "/metrics", headers={"Authorization": f"Bearer {routed.key}"}
    ).text
    assert 'seekport_fallbacks_total{model="m",to="backup"}' in metrics
    assert 'seekport_upstream_attempts_total{deployment="m-a",model="m",outcome=' in metrics


def test_admin_routes_need_the_admin_role(routed: Server) -> None:
    user = routed.cli("keys", "create", "--name", "u", "--role", "user").stdout.splitlines()[-1]
    for method, path in (("GET", "/admin/routing"), ("POST", "/admin/reload")):
        r = httpx.request(method, routed.url + path, headers={"Authorization": f"Bearer {user}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
        r = httpx.request(method, routed.url + path)
        assert r.status_code == 401


def test_reload_under_load_drops_nothing_and_moves_the_weights(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos]
) -> None:
    a, b, c = healthy
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def load() -> None:
        while not done.is_set():
            try:
                text, _ = ask(routed, stream=count[0] % 2 == 0)
                if text != ANSWER:
                    failures.append(text)
            except openai.OpenAIError as exc:
                failures.append(repr(exc))
            count[0] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        config = routed.config
        data = yaml.safe_load(config.read_text())
        data["models"] = _models(a, b, c, weight_a=0)  # canary off: m-a out of rotation
        config.write_text(yaml.safe_dump(data))
        auth = {"Authorization": f"Bearer {routed.key}"}
        r = httpx.post(routed.url + "/admin/reload", headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert set(r.json()["kept"]) == {"m-a", "m-b", "c"} and r.json()["added"] == []
        time.sleep(0.3)
        a.control(reset_stats=True)
        time.sleep(0.7)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
        data["models"] = _models(a, b, c)
        config.write_text(yaml.safe_dump(data))
        httpx.post(routed.url + "/admin/reload", headers=auth, timeout=30)
    assert failures == [] and count[0] >= 10
    assert a.stats()["requests_total"] == 0  # weight 0: no new request went there


def test_a_config_that_fails_validation_is_refused_and_the_old_one_stays(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos]
) -> None:
    config = routed.config
    good = config.read_text()
    data = yaml.safe_load(good)
    data["routing"] = {**ROUTING, "fallbacks": {"m": ["no-such-model"]}}
    config.write_text(yaml.safe_dump(data))
    try:
        r = httpx.post(
            routed.url + "/admin/reload",
            headers={"Authorization": f"Bearer {routed.key}"},
            timeout=30,
        )
    finally:
        config.write_text(good)
    assert r.status_code == 400 and "no-such-model" in r.json()["error"]["message"]
    assert ask(routed, stream=True)[0] == ANSWER


def test_a_stall_after_content_ends_in_band_within_the_chunk_timeout(
    routed: Server, healthy: tuple[Chaos, Chaos, Chaos]
) -> None:
    """Content already reached the client, so no retry: the stall becomes an in-band error
    at most the chunk timeout (read_timeout_s, 1 s here) + 1 s after the last chunk, the upstream
    connection is closed, and the usage record keeps what was delivered."""
    a, b, _ = healthy
    for u in (a, b):
        u.control(stall_rate=1, stall_after_chunks=3)
    headers = {"Authorization": f"Bearer {routed.key}", "X-Request-ID": "stall-after-content"}
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    arrivals: list[tuple[float, str]] = []
    with httpx.stream(
        "POST", routed.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line[6:]))
    error = json.loads(arrivals[-1][1])
    assert error["error"]["code"] == "upstream_timeout"
    chunks = [json.loads(data) for _, data in arrivals[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content.split() == ANSWER.split()[:3]  # what was sent, once
    assert arrivals[-1][0] - arrivals[-2][0] <= 1.0 + 1.0
    row = usage_row(routed, "stall-after-content")
    assert (row["status"], row["error_code"], row["completion_tokens"]) == (
        504,
        "upstream_timeout",
        3,
    )
    assert row["deployment"] in ("m-a", "m-b") and row["served_model"] == "m"
    served = a if row["deployment"] == "m-a" else b
    up = upstream_record(served, row["request_id"])
    assert (up["outcome"], up["chunks_sent"], up["client_closed"]) == ("stall", 3, True)


def _weights(server: Server) -> dict[str, float]:
    return {d["deployment"]: d["weight"] for d in routing_state(server)["groups"]["m"]}


def _await_weights(server: Server, want: dict[str, float]) -> dict[str, float]:
    deadline = time.monotonic() + 15
    while (got := _weights(server)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_sighup_rereads_the_config(routed: Server, healthy: tuple[Chaos, Chaos, Chaos]) -> None:
    a, b, c = healthy
    config = routed.config
    good = config.read_text()
    data = yaml.safe_load(good)
    data["models"] = _models(a, b, c, weight_a=3)
    config.write_text(yaml.safe_dump(data))
    try:
        routed.proc.send_signal(signal.SIGHUP)
        assert _await_weights(routed, {"m-a": 3.0, "m-b": 1.0}) == {"m-a": 3.0, "m-b": 1.0}
        assert ask(routed, stream=True)[0] == ANSWER
    finally:
        config.write_text(good)
        routed.proc.send_signal(signal.SIGHUP)
    assert _await_weights(routed, {"m-a": 1.0, "m-b": 1.0}) == {"m-a": 1.0, "m-b": 1.0}
