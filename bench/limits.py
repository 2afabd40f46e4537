"""Limits benchmark: exact rate limits and budgets under concurrency, 1 and 2 replicas (issue 15).

Method
------
* One chaos upstream (the suite's ``tests/upstream.py``) serves ``m1``, priced at 1000 USD per
  1M cache-miss input tokens and 2000 per 1M output tokens: each call (one prompt word,
  ``max_tokens: 5``) costs exactly 0.011 USD and reserves about 0.08.
* Setups: *1 replica* is the embedded default (SQLite, in-process limiter); *2 replicas* are
  two ``seekport serve`` processes sharing a fresh PostgreSQL database on 127.0.0.1:5432 and
  the Redis on 127.0.0.1:6379 (requests alternate between them).
* Rate limit: a key with ``--rpm N`` (N = 300); 64 concurrent clients send 2N requests as fast
  as they can. GCRA admits N at once and then one every 60/N s, so the exact expectation is
  N + ⌊N·T/60⌋ for a burst lasting T s (T is measured); error = admitted / expected − 1
  (target +0 / −1 %).
* Budget: a key with a budget of 1.00 USD; 64 concurrent clients call until every client has
  had a 402; overspend = the key's recorded cost (``GET /admin/usage``) − 1.00 (target ≤ 0).
* Gateway CPU per request (utime + stime of the server processes / requests): 2,000 healthy
  non-stream calls at c = 16 with a plain key, then with a key under rpm, tpm and a budget
  (limits high enough never to refuse), interleaved twice; 1 replica.

Run: ``.venv/bin/python bench/limits.py [--no-docs]`` (needs PostgreSQL and Redis for the
2-replica rows; ``--no-replicas`` skips them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402
from gateway_overhead import (  # noqa: E402
    command_line,
    machine,
    proc_cpu_s,
    revision,
    write_section,
)
from tests.harness import (  # noqa: E402
    Chaos,
    Server,
    pg_database,
    run_chaos,
    run_server,
    write_config,
)

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- limits:start -->", "<!-- limits:end -->"
SENT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
COST = 11_000_000  # nano-USD per call
RPM = 300
BUDGET_NANOS = 1_000_000_000
CLIENTS = 64


def config(tmp: Path, upstream: Chaos, **fields: Any) -> Path:
    models = [{"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}]
    pricing = {
        "models": [
            {"model": "m1", "input_cache_hit": "0", "input_cache_miss": "1000", "output": "2000"}
        ]
    }
    return write_config(
        tmp,
        models,
        log_level="warning",
        pricing=pricing,
        auth_failures_per_minute=1_000_000,
        **fields,
    )


@contextlib.contextmanager
def replicas(tmp: Path, upstream: Chaos, n: int) -> Iterator[list[Server]]:
    if n == 1:
        with run_server(config(tmp, upstream)) as s:
            yield [s]
        return
    with pg_database() as db:
        cfg = config(
            tmp,
            upstream,
            database_url=f"postgresql+asyncpg://127.0.0.1:5432/{db}",
            redis_url="redis://127.0.0.1:6379/0",
        )
        with run_server(cfg) as a, run_server(cfg) as b:
            yield [a, b]


def key(server: Server, *flags: str) -> str:
    return server.cli("keys", "create", "--name", "bench", *flags).stdout.strip().splitlines()[-1]


async def fire(servers: list[Server], secret: str, total: int, conc: int) -> list[int]:
    """``total`` calls from ``conc`` concurrent clients, alternating between the servers."""
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                url = servers[i % len(servers)].url + "/v1/chat/completions"
                r = await client.post(url, json=SENT, headers=headers)
                statuses.append(r.status_code)

        await asyncio.gather(*(worker() for _ in range(conc)))
    return statuses


@dataclass
class RateRow:
    replicas: int
    sent: int
    admitted: int
    expected: int
    seconds: float

    @property
    def error(self) -> float:
        return self.admitted / self.expected - 1


@dataclass
class BudgetRow:
    replicas: int
    admitted: int
    refused: int
    spent_nanos: int

    @property
    def overspend(self) -> int:
        return self.spent_nanos - BUDGET_NANOS


def rate_limit(servers: list[Server]) -> RateRow:
    secret = key(servers[0], "--rpm", str(RPM))
    t0 = time.perf_counter()
    statuses = asyncio.run(fire(servers, secret, 2 * RPM, CLIENTS))
    seconds = time.perf_counter() - t0
    expected = RPM + int(RPM * seconds / 60)
    return RateRow(len(servers), len(statuses), statuses.count(200), expected, seconds)


def budget(servers: list[Server]) -> BudgetRow:
    secret = key(servers[0], "--budget", str(BUDGET_NANOS / 1e9), "--budget-period", "daily")
    admitted = refused = 0
    while True:  # waves of 64 concurrent calls until a whole wave is refused
        statuses = asyncio.run(fire(servers, secret, CLIENTS, CLIENTS))
        admitted += statuses.count(200)
        refused += statuses.count(402)
        if statuses.count(200) == 0:
            break
    key_id = key_id_of(servers[0], secret)
    usage = httpx.get(
        servers[0].url + f"/admin/usage?key_id={key_id}",
        headers={"Authorization": f"Bearer {servers[0].key}"},
    ).json()
    spent = sum(t["cost_nanos"] for t in usage["totals"])
    return BudgetRow(len(servers), admitted, refused, spent)


def key_id_of(server: Server, secret: str) -> str:
    keys = httpx.get(
        server.url + "/admin/keys", headers={"Authorization": f"Bearer {server.key}"}
    ).json()["data"]
    return str(next(k["id"] for k in keys if k["prefix"] == secret[:10]))


def cpu_per_request(server: Server, rounds: int = 2, calls: int = 2000) -> dict[str, float]:
    plain = key(server)
    limited = key(
        server,
        "--rpm",
        "10000000",
        "--tpm",
        "1000000000",
        "--max-concurrent",
        "1000",
        "--budget",
        "1000000",
        "--budget-period",
        "daily",
    )
    asyncio.run(fire([server], plain, 200, 16))  # warm-up
    asyncio.run(fire([server], limited, 200, 16))
    spent = {"auth only": 0.0, "auth + limits + budget": 0.0}
    for _ in range(rounds):
        for name, secret in (("auth only", plain), ("auth + limits + budget", limited)):
            before = proc_cpu_s(server.proc.pid)
            statuses = asyncio.run(fire([server], secret, calls, 16))
            assert statuses.count(200) == calls, set(statuses)
            spent[name] += proc_cpu_s(server.proc.pid) - before
    return {name: s * 1000 / (rounds * calls) for name, s in spent.items()}


def render(rates: list[RateRow], budgets: list[BudgetRow], cpu: dict[str, float]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        START,
        "## Limits and budgets under concurrency (issue 15)",
        "",
        f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
        f"Command: `{command_line()}`. Method: the docstring of `bench/limits.py`.",
        "",
        f"Rate limit: a key with `--rpm {RPM}`, {CLIENTS} concurrent clients sending "
        f"{2 * RPM} requests.",
        "",
        "| replicas | sent | admitted | expected (N + refill) | burst s | error |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rates:
        out.append(
            f"| {r.replicas} | {r.sent} | {r.admitted} | {r.expected} | {r.seconds:.1f} "
            f"| {r.error:+.1%} |"
        )
    out += [
        "",
        f"Budget: 1.00 USD on a key, calls of 0.011 USD each, {CLIENTS} concurrent clients until "
        "every call is refused.",
        "",
        "| replicas | admitted | refused (402) | spent USD | overspend USD |",
        "|--:|--:|--:|--:|--:|",
    ]
    for b in budgets:
        out.append(
            f"| {b.replicas} | {b.admitted} | {b.refused} | {b.spent_nanos / 1e9:.3f} "
            f"| {max(0, b.overspend) / 1e9:.3f} |"
        )
    out += [
        "",
        "Gateway CPU per healthy non-stream call, 1 replica, c = 16 (2 interleaved rounds):",
        "",
        "| key | CPU ms/request |",
        "|---|--:|",
        *(f"| {name} | {ms:.2f} |" for name, ms in cpu.items()),
        "",
        END,
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--no-replicas", action="store_true", help="skip the 2-replica rows")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    args = parser.parse_args()
    import tempfile

    rates: list[RateRow] = []
    budgets: list[BudgetRow] = []
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d, run_chaos(Path(d)) as upstream:
        for n in (1,) if args.no_replicas else (1, 2):
            tmp = Path(d) / f"r{n}"
            tmp.mkdir()
            with replicas(tmp, upstream, n) as servers:
                rates.append(rate_limit(servers))
                budgets.append(budget(servers))
                if n == 1:
                    cpu = cpu_per_request(servers[0])
    section = render(rates, budgets, cpu)
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
