"""Metrics truthfulness (reliability plan T10, CI budget): over a mixed run, the request counter
by status equals what the client saw, the upstream's own count equals the calls seekport made,
and no label carries a key or a prompt."""

from __future__ import annotations

import random
from collections import Counter

import httpx

from tests.harness import Chaos, Server

CANARY = "canary-prompt-7d1f"


def requests_by_status(server: Server) -> Counter[str]:
    text = httpx.get(
        server.url + "/metrics", timeout=10, headers={"Authorization": f"Bearer {server.key}"}
    ).text
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("seekport_requests_total{") and 'route="chat.completions"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] += int(float(line.rsplit(" ", 1)[1]))
    return out


def test_request_counters_match_the_client_and_the_upstream(
    server: Server, fresh_chaos: Chaos
) -> None:
    fresh_chaos.control(error_rate=0.3, error_codes=[500, 503])
    before = requests_by_status(server)
    rng = random.Random(7)
    seen: Counter[str] = Counter()
    good = {"model": "deepseek-chat", "messages": [{"role": "user", "content": CANARY}]}
    auth = {"Authorization": f"Bearer {server.key}"}
    kinds = ["ok", "ok", "ok", "stream", "bad_key", "bad_body", "bad_model"]
    upstream_calls = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(120):
            kind = rng.choice(kinds)
            url = "/v1/chat/completions"
            if kind == "bad_key":
                r = client.post(url, json=good, headers={"Authorization": "Bearer sk-sp-nope"})
            elif kind == "bad_body":
                r = client.post(url, json={**good, "temperature": "hot"}, headers=auth)
            elif kind == "bad_model":
                r = client.post(url, json={**good, "model": "nope"}, headers=auth)
            elif kind == "stream":
                upstream_calls += 1
                with client.stream("POST", url, json={**good, "stream": True}, headers=auth) as r:
                    r.read()
            else:
                upstream_calls += 1
                r = client.post(url, json=good, headers=auth)
            seen[str(r.status_code)] += 1
    fresh_chaos.control(reset=True)
    after = requests_by_status(server)
    counted = Counter({s: after[s] - before[s] for s in after if after[s] - before[s]})
    assert counted == seen
    assert {"200", "401", "400", "404"} <= set(seen)
    assert set(seen) & {"500", "502", "503"}  # upstream faults were part of the run
    assert fresh_chaos.stats()["requests_total"] == upstream_calls  # no hidden retries
    metrics = httpx.get(server.url + "/metrics", headers=auth, timeout=10).text
    assert CANARY not in metrics and server.key not in metrics and "sk-sp-nope" not in metrics
