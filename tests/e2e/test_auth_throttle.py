"""Failed authentications are throttled per client address, in the OpenAI error shape, on a
real server (the default in-process limiter; tests/integration/test_kv_limiter.py covers Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import Server, run_server, write_config

LIMIT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("auth-throttle")
    # a remote model nobody calls: no model to load
    models = [{"name": "m", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}]
    config = write_config(tmp, models, auth_failures_per_minute=LIMIT, log_level="warning")
    with run_server(config) as s:
        yield s


def test_an_address_that_keeps_failing_gets_429_then_even_a_good_key_waits(
    server: Server,
) -> None:
    bad = {"Authorization": "Bearer sk-sp-not-a-key"}
    for _ in range(LIMIT):
        r = httpx.get(server.url + "/v1/models", headers=bad)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    for headers in (bad, {"Authorization": f"Bearer {server.key}"}):
        r = httpx.get(server.url + "/v1/models", headers=headers)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "rate_limit_error"
        assert "failed authentications" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) == 20  # one failure more per 60 s / 3
    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"})
    assert metrics.status_code == 429  # the same address: it waits like everyone
