"""Two `seekport serve` replicas sharing one PostgreSQL database and one Redis, as a real
scale-out runs: a limit of N requests a minute admits N in total (not 2N), concurrent calls
on both never overspend a budget, and a key revoked through one is refused by the other
within a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness import Server, pg_database, run_chaos, run_server, write_config

pytestmark = pytest.mark.postgres

SENT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
COST = 11_000_000  # nano-USD: 1 prompt token at 1000/1M + 5 output tokens at 2000/1M


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp: Path = tmp_path_factory.mktemp("replicas")
    with run_chaos(tmp_path_factory.mktemp("replicas-chaos")) as upstream, pg_database() as db:
        config = write_config(
            tmp,
            [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}],
            log_level="warning",
            database_url=f"postgresql+asyncpg://127.0.0.1:5432/{db}",
            redis_url="redis://127.0.0.1:6379/0",
            pricing={
                "models": [
                    {
                        "model": "m1",
                        "input_cache_hit": "0",
                        "input_cache_miss": "1000",
                        "output": "2000",
                    }
                ]
            },
        )
        with run_server(config) as a, run_server(config) as b:
            yield a, b


def key(server: Server, *flags: str) -> str:
    return server.cli("keys", "create", "--name", "r", *flags).stdout.strip().splitlines()[-1]


def post(server: Server, secret: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=SENT,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_a_limit_of_n_a_minute_admits_n_across_both_replicas(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    secret = key(a, "--rpm", "6")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post((a, b)[i % 2], secret), range(16)))
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 6 and codes.count(429) == 10, codes
    served_by = {r.request.url.port for r in answers if r.status_code == 200}
    assert len(served_by) == 2  # both replicas admitted some: one shared count


def test_concurrent_calls_on_both_replicas_never_overspend_a_budget(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    secret = key(a, "--budget", "0.3", "--budget-period", "daily")
    admitted = 0
    for _ in range(10):  # waves of concurrent calls on both until the budget is spent
        with ThreadPoolExecutor(8) as pool:
            wave = list(pool.map(lambda i: post((a, b)[i % 2], secret), range(8)))
        codes = [r.status_code for r in wave]
        assert set(codes) <= {200, 402}, codes
        admitted += codes.count(200)
        if codes.count(200) == 0:
            break
    spent = admitted * COST
    assert 0 < spent <= 300_000_000
    assert spent > 300_000_000 - 100_000_000  # reservations were settled, not kept
    # both replicas tell the same balance: one ledger
    shown = [
        httpx.get(s.url + "/user/balance", headers={"Authorization": f"Bearer {secret}"}).json()
        for s in (a, b)
    ]
    assert shown[0]["budgets"] == shown[1]["budgets"]


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    made = httpx.post(
        a.url + "/admin/keys",
        json={"name": "doomed"},
        headers={"Authorization": f"Bearer {a.key}"},
    ).json()
    assert post(a, made["secret"]).status_code == 200
    assert post(b, made["secret"]).status_code == 200  # cached as valid on b too
    revoked = httpx.post(
        a.url + f"/admin/keys/{made['id']}/revoke", headers={"Authorization": f"Bearer {a.key}"}
    )
    assert revoked.status_code == 200
    at = time.monotonic()
    assert post(a, made["secret"]).status_code == 401  # at once where it was revoked
    while post(b, made["secret"]).status_code == 200:
        assert time.monotonic() - at < 1.5, "the other replica still accepts the key"
        time.sleep(0.05)
