"""Cost and budgets, end to end, in front of the suite's chaos upstream (its prompt_tokens are
the prompt's word count; it answers max_tokens tokens). m1 costs 1000 USD per 1M cache-miss
input tokens and 2000 per 1M output tokens: a one-word prompt with max_tokens 5 costs exactly
0.001 + 0.010 = 0.011 USD, while its reservation (every byte of its JSON an input token) is
about 0.08."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

SENT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
COST = 11_000_000  # nano-USD of one call


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("budgets-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Path:
    tmp: Path = tmp_path_factory.mktemp("budgets")
    models = [
        {"name": name, "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}
        for name in ("m1", "free", "cheap", "dear")
    ]

    def table(model: str, factor: int) -> dict[str, str]:
        return {
            "model": model,
            "currency": "USD",
            "input_cache_hit": str(100 * factor),
            "input_cache_miss": str(1000 * factor),
            "output": str(2000 * factor),
        }

    pricing = {"currency": "USD", "models": [table("m1", 1), table("cheap", 1), table("dear", 10)]}
    routing = {"fallbacks": {"cheap": ["dear"]}}
    return write_config(tmp, models, log_level="warning", pricing=pricing, routing=routing)


@pytest.fixture(scope="module")
def server(config: Path) -> Iterator[Server]:
    with run_server(config) as s:
        yield s


def key(server: Server, *flags: str) -> str:
    return server.cli("keys", "create", "--name", "b", *flags).stdout.strip().splitlines()[-1]


def post(server: Server, secret: str, body: dict[str, object] = SENT) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def costs(server: Server, request_ids: list[str]) -> list[tuple[int | None, str | None]]:
    with sqlite3.connect(server.data_dir / "seekport.db") as db:
        marks = ",".join("?" * len(request_ids))
        return db.execute(
            f"SELECT cost_nanos, currency FROM usage_records WHERE client_request_id IN ({marks})",
            request_ids,
        ).fetchall()


def usd(nanos: int) -> str:
    return str((Decimal(nanos) / 10**9).quantize(Decimal("0.01"), rounding=ROUND_FLOOR))


def balance(server: Server, secret: str) -> dict[str, object]:
    r = httpx.get(server.url + "/user/balance", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def spend(server: Server, model: str) -> float:
    """seekport_spend_total of a model in USD (0 before its first priced call)."""
    text = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
    ).text
    want = f'seekport_spend_total{{currency="USD",model="{model}"}} '
    return next((float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(want)), 0.0)


def test_every_usage_record_carries_its_cost(server: Server) -> None:
    secret = key(server)
    spent = spend(server, str(SENT["model"]))
    priced = httpx.post(
        server.url + "/v1/chat/completions",
        json=SENT,
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "cost-priced"},
    )
    free = httpx.post(
        server.url + "/v1/chat/completions",
        json={**SENT, "model": "free"},
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "cost-free"},
    )
    assert priced.status_code == free.status_code == 200
    usage = priced.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (1, 5)
    assert sorted(costs(server, ["cost-priced", "cost-free"]), key=str) == sorted(
        [(COST, "USD"), (None, None)], key=str
    )
    # the same cost on the metric the dashboard's spend panel reads
    assert spend(server, str(SENT["model"])) - spent == pytest.approx(COST / 1e9)
    # no budget: the balance is available and lists nothing
    assert balance(server, secret) == {"is_available": True, "balance_infos": [], "budgets": []}


def test_concurrent_calls_never_overspend_a_budget_and_the_last_gets_402(
    server: Server,
) -> None:
    secret = key(server, "--budget", "0.2", "--budget-period", "daily")
    with ThreadPoolExecutor(16) as pool:
        burst = list(pool.map(lambda _: post(server, secret), range(16)))
    codes = sorted(r.status_code for r in burst)
    assert set(codes) == {200, 402} and codes.count(200) >= 2, codes
    refused = next(r for r in burst if r.status_code == 402)
    error = refused.json()["error"]
    assert error["message"].startswith("Insufficient Balance")
    assert error["type"] == "unknown_error" and error["code"] == "insufficient_balance"
    admitted = codes.count(200)
    for _ in range(40):  # then one at a time until the budget cannot hold one more
        r = post(server, secret)
        if r.status_code == 402:
            break
        assert r.status_code == 200
        admitted += 1
    else:
        pytest.fail("the budget never ran out")
    spent = admitted * COST
    assert spent <= 200_000_000  # never over 0.2 USD
    assert spent > 200_000_000 - 100_000_000  # and not far below: reservations were settled
    # the balance says the same, in DeepSeek's shape
    shown = balance(server, secret)
    info = shown["balance_infos"][0]  # type: ignore[index]
    assert info["currency"] == "USD" and info["topped_up_balance"] == "0.00"
    assert info["total_balance"] == usd(200_000_000 - spent)
    state = shown["budgets"][0]  # type: ignore[index]
    assert (state["scope"], state["period"], state["amount"]) == ("key", "daily", "0.20")
    assert state["spent"] == usd(spent) and state["remaining"] == usd(200_000_000 - spent)
    # the official SDK sees a 402 status error
    with (
        openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0) as c,
        pytest.raises(openai.APIStatusError) as info402,
    ):
        c.chat.completions.create(**SENT)  # type: ignore[call-overload]
    assert info402.value.status_code == 402


def test_a_tenant_budget_holds_over_all_its_keys_and_free_models_stay_free(
    server: Server,
) -> None:
    tenant = server.cli("tenants", "create", "--name", "frugal", "--budget", "0.1")
    tid = tenant.stdout.strip().splitlines()[-1]
    k1, k2 = key(server, "--tenant", tid), key(server, "--tenant", "frugal")
    admitted = 0
    for i in range(40):
        r = post(server, (k1, k2)[i % 2])
        if r.status_code == 402:
            assert "your tenant" in r.json()["error"]["message"]
            break
        admitted += 1
    assert 0 < admitted * COST <= 100_000_000
    assert post(server, k2, {**SENT, "model": "free"}).status_code == 200


def test_a_restarted_server_remembers_what_was_spent(config: Path) -> None:
    with run_server(config) as first:
        secret = key(first, "--budget", "5", "--budget-period", "monthly")
        for _ in range(3):
            assert post(first, secret).status_code == 200
        before = balance(first, secret)
    with run_server(config) as second:  # a new process: its ledger starts from the records
        after = balance(second, secret)
    assert after == before
    assert after["budgets"][0]["spent"] == "0.03"  # type: ignore[index]


def test_a_call_that_may_fall_back_reserves_at_its_dearest_model(server: Server) -> None:
    """cheap falls back to dear (ten times the price): its reservation (about 0.8 USD at
    dear's prices) does not fit 0.5, though cheap's own (0.08) would; 1.0 fits."""
    body = {**SENT, "model": "cheap"}
    short = post(server, key(server, "--budget", "0.5"), body)
    assert short.status_code == 402 and "may cost up to 0.8" in short.json()["error"]["message"]
    assert post(server, key(server, "--budget", "1.0"), body).status_code == 200
