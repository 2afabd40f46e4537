"""Monitoring against the real tools: ``deploy/prometheus/rules.yml`` passes ``promtool check
rules`` and its unit tests (``promtool test rules``); ``/metrics`` passes ``promtool check
metrics``; and a real Prometheus scrapes a real seekport (a viewer key in a credentials file),
loads the rules and, after a burst of failing and slow calls through the chaos upstream, finds
the error-rate, latency and open-breaker alerts true through its HTTP API; and every query of
the Grafana dashboard (``deploy/grafana/seekport.json``) runs on it.

Debian's ``prometheus`` package provides both binaries; the fixture installs it with apt-get
when it is missing and it can (root), as CI does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    REPO,
    Chaos,
    Server,
    run_chaos,
    run_prometheus,
    run_server,
    write_config,
)

RULES = REPO / "deploy" / "prometheus"


def _install() -> str | None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
        )
        subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
    return shutil.which("promtool")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or _install()
    if found is None:
        message = "promtool not found and not installable here (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("prom-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("prom")
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    routing = {"max_retries": 0, "breaker": {"consecutive_failures": 3, "cooldown_s": 120}}
    config = write_config(tmp, models, log_level="warning", routing=routing)
    with run_server(config) as s:
        yield s


def chat(server: Server, n: int = 1) -> list[int]:
    body = {"model": "m1", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    auth = {"Authorization": f"Bearer {server.key}"}
    url = server.url + "/v1/chat/completions"
    return [httpx.post(url, json=body, headers=auth, timeout=30).status_code for _ in range(n)]


def test_the_rules_pass_promtool_and_their_unit_tests(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES / "rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "tests.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_metrics_pass_promtool_check_metrics(promtool: str, server: Server) -> None:
    assert chat(server, 2) == [200, 200]
    text = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
    ).text
    assert "seekport_request_latency_seconds_bucket" in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_label_values_stay_bounded_whatever_clients_send(server: Server) -> None:
    """Model names that are served nowhere, and request ids, never become label values."""
    auth = {"Authorization": f"Bearer {server.key}"}
    for i in range(20):
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": f"no-such-model-{i}", "messages": [{"role": "user", "content": "x"}]},
            headers={**auth, "X-Request-ID": f"cardinality-{i}"},
        )
        assert r.status_code == 404
    text = httpx.get(server.url + "/metrics", headers=auth).text
    assert "no-such-model" not in text and "cardinality-" not in text
    assert 'seekport_requests_total{model="-",route="chat.completions",status="404"} ' in text


def viewer_key(server: Server) -> str:
    made = httpx.post(
        server.url + "/admin/keys",
        json={"name": "prometheus", "role": "viewer"},
        headers={"Authorization": f"Bearer {server.key}"},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def alerts(prom: str) -> dict[str, str]:
    """Alert name → its state (pending or firing), as Prometheus evaluates them now."""
    r = httpx.get(prom + "/api/v1/alerts", timeout=5).json()
    return {a["labels"]["alertname"]: a["state"] for a in r["data"]["alerts"]}


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert r["status"] == "success", r
    result: list[dict[str, Any]] = r["data"]["result"]
    return result


@pytest.fixture(scope="module")
def prom(promtool: str, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the module's server every second, with the rules loaded."""
    tmp = tmp_path_factory.mktemp("prometheus")
    with run_prometheus(tmp, server.port, viewer_key(server), RULES / "rules.yml") as url:
        yield url


def test_a_real_prometheus_scrapes_seekport_and_the_alerts_evaluate_true(
    prom: str, server: Server, upstream: Chaos
) -> None:
    try:
        assert chat(server, 3) == [200] * 3
        deadline = time.monotonic() + 30
        while not query(prom, 'up{job="seekport"} == 1') and time.monotonic() < deadline:
            time.sleep(0.5)
        assert query(prom, 'up{job="seekport"} == 1'), "the viewer key's scrape failed"
        # slow, then failing: errors open the breaker, and the latency's P99 passes 500 ms
        upstream.control(latency_ms=700)
        assert chat(server, 3) == [200] * 3
        upstream.control(latency_ms=0, error_rate=1.0)
        seen: dict[str, str] = {}
        want = {"SeekportErrorRateHigh", "SeekportLatencyP99High", "SeekportUpstreamBreakerOpen"}
        deadline = time.monotonic() + 60
        while not want <= set(seen) and time.monotonic() < deadline:
            chat(server, 2)  # fails: 5xx from the upstream, then 503 while the breaker is open
            time.sleep(1)
            seen = alerts(prom)
        assert want <= set(seen), seen
        ratio = query(prom, "seekport:request_errors:ratio_rate5m")
        assert ratio and float(ratio[0]["value"][1]) > 0.01
        breaker = query(prom, "seekport_breaker_state == 2")
        assert [b["metric"]["model"] for b in breaker] == ["m1"]
    finally:
        upstream.control(latency_ms=0, error_rate=0.0)


def test_every_query_of_the_grafana_dashboard_runs_on_prometheus(prom: str) -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "seekport.json").read_text())
    assert dashboard["uid"] == "seekport-overview" and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "instance", "route"}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & area, f"{p['title']} overlaps another panel"
        cells |= area
    concrete = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*", "$route": ".*"}
    answered = 0
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            for name, value in concrete.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, expr
            answered += bool(query(prom, expr))  # asserts the query parses and runs
    assert answered >= 5  # the traffic series are there already
