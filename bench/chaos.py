"""Chaos benchmark: routing and resilience under upstream faults (issue 14).

Method
------
* Two chaos upstreams (the suite's ``tests/upstream.py``, 16-token answers) serve one public
  model ``m`` as deployments ``m-a`` and ``m-b`` behind one ``seekport serve`` with the default
  routing policy (weighted round-robin, ``max_retries: 2``, retry budget 20 %, breaker: 5
  failures in a row or > 30 % of ≥ 5 calls in 60 s, 30 s cooldown). The only non-default
  settings are the deadlines, ``read_timeout_s: 1`` and ``first_token_timeout_s: 1``, so a
  silent upstream costs 1 s instead of minutes.
* Per fault kind, a fresh seekport (breakers closed) and ``m-a`` failing 30 % of its calls
  with that fault while ``m-b`` stays healthy. A closed loop of 32 keep-alive connections sends
  the requests (10,000 per kind; ``--quick`` 1,000), every other one streamed. A request
  succeeds when its answer is exactly the upstream's 16 tokens: a non-stream ``content``, or a
  stream's content deltas joined, ending in ``[DONE]`` with no error event (nothing repeated,
  nothing lost).
* Attempts per request = the upstreams' own request counters (both) / client requests.
  *Retries over budget*: retries the retry budget refused (``GET /admin/routing``); such a
  request gets the failure of its last attempt.
* Failures before ejection: a fresh seekport, ``m-a`` failing every call with the fault;
  requests one at a time until ``GET /admin/routing`` shows its breaker open; the count is how
  many calls ``m-a`` received (n/a for 429: a rate limit skips a deployment for its
  ``Retry-After``, it is no failure).
* All down: both upstreams answer 500; once both breakers are open, 1,000 requests (one at a
  time) get the 503; latency percentiles (nearest rank) of those.
* Gateway CPU per request: utime + stime of the seekport process over a phase / its requests;
  routing's own cost: healthy non-stream requests (half the per-kind count, after 200 warm-up)
  with routing on (both deployments, defaults) against off (``m-a`` alone, ``max_retries: 0``),
  two interleaved rounds.

Run: ``.venv/bin/python bench/chaos.py [--quick] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    read_response,
    revision,
    write_section,
)
from tests.harness import Chaos, Server, run_chaos, run_server, write_config  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- chaos:start -->", "<!-- chaos:end -->"
ANSWER = " ".join(f"tok{i}" for i in range(16))
CONCURRENCY = 32
RATE = 0.3
FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "5xx (500/502/503)": {"error_rate": RATE, "error_codes": [500, 502, 503]},
    "429 + Retry-After 1 s": {"error_rate": RATE, "error_codes": [429], "retry_after_s": 1},
    "connection reset": {"reset_rate": RATE, "stall_after_chunks": 0},
    "timeout (no answer)": {"timeout_rate": RATE},
    "stall before first byte": {"stall_rate": RATE, "stall_after_chunks": 0},
    "malformed JSON": {"malformed_rate": RATE, "stall_after_chunks": 0},
}


def always(fault: dict[str, Any]) -> dict[str, Any]:
    """The same fault on every call."""
    return {k: (1 if k.endswith("_rate") else v) for k, v in fault.items()}


# --------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def gateway(tmp: Path, a: Chaos, b: Chaos, *, routing: bool = True) -> Iterator[Server]:
    """Model ``m`` on both upstreams; ``routing=False``: on ``m-a`` alone, never retried."""
    models = [
        {
            "name": "m",
            "backend": "openai",
            "base_url": u.url,
            "upstream_model": "deepseek-chat",
            "deployment": dep,
            "read_timeout_s": 1,
            "first_token_timeout_s": 1,
        }
        for u, dep in ((a, "m-a"), (b, "m-b"))
    ]
    extra: dict[str, Any] = {} if routing else {"routing": {"max_retries": 0}}
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    config = write_config(run_dir, models if routing else models[:1], log_level="warning", **extra)
    with run_server(config) as server:
        yield server


def routing_state(server: Server) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {server.key}"}
    return dict(httpx.get(server.url + "/admin/routing", headers=auth).json())


def breaker_state(server: Server, deployment: str) -> str:
    for group in routing_state(server)["groups"].values():
        for d in group:
            if d["deployment"] == deployment:
                return str(d["breaker"]["state"])
    raise KeyError(deployment)


# --------------------------------------------------------------------------- the load


def build(port: int, key: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def failure(status: int, body: bytes, stream: bool) -> str | None:
    """Why the answer is not exactly the upstream's (nothing repeated, nothing lost, no
    error); None when it is."""
    if status != 200:
        try:
            return f"{status} {json.loads(body)['error']['code']}"
        except (ValueError, KeyError, TypeError):
            return str(status)
    if not stream:
        content = json.loads(body)["choices"][0]["message"]["content"]
        return None if content == ANSWER else "wrong content"
    data = [ln[6:] for ln in body.decode().split("\n") if ln.startswith("data: ")]
    chunks = [json.loads(d) for d in data if d != "[DONE]"]
    errors = [c["error"].get("code") for c in chunks if "error" in c]
    if errors:
        return f"in-band {errors[0]}"
    if not data or data[-1] != "[DONE]":
        return "no [DONE]"
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    return None if text == ANSWER else "wrong content"


@dataclass
class Phase:
    requests: int = 0
    ok: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # why, how many
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    gateway_cpu_s: float = 0.0

    def pct(self, p: float) -> float:
        lat = sorted(self.latencies)
        return lat[max(0, math.ceil(p * len(lat)) - 1)] * 1000 if lat else math.nan


async def closed_loop(server: Server, total: int, conc: int, *, mixed: bool = True) -> Phase:
    """``total`` requests over ``conc`` connections; ``mixed``: every other one streamed."""
    phase = Phase()
    requests = [build(server.port, server.key, s) for s in (False, True)]
    left = [total]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            while left[0] > 0:
                left[0] -= 1
                stream = mixed and left[0] % 2 == 1
                t0 = time.perf_counter()
                writer.write(requests[stream])
                status, body, keep = await read_response(reader)
                phase.latencies.append(time.perf_counter() - t0)
                phase.requests += 1
                phase.statuses[status] = phase.statuses.get(status, 0) + 1
                why = failure(status, body, stream)
                if why is None:
                    phase.ok += 1
                else:
                    phase.failures[why] = phase.failures.get(why, 0) + 1
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        finally:
            writer.close()

    cpu0, t0 = proc_cpu_s(server.proc.pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    phase.wall_s = time.perf_counter() - t0
    await asyncio.sleep(0.2)
    phase.gateway_cpu_s = proc_cpu_s(server.proc.pid) - cpu0
    return phase


# --------------------------------------------------------------------------- the phases


@dataclass
class Row:
    fault: str
    load: Phase
    attempts: int
    on_a: int  # calls m-a received
    refused: int  # retries the retry budget refused
    before_ejection: int | None  # None: n/a


def ejection_count(tmp: Path, a: Chaos, b: Chaos, fault: dict[str, Any]) -> int | None:
    if "retry_after_s" in fault or not fault:
        return None
    for u in (a, b):
        u.control(reset=True, reset_stats=True)
    a.control(**always(fault))
    with gateway(tmp, a, b) as server:
        client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {server.key}"})
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(50):
            client.post(server.url + "/v1/chat/completions", json=body)
            if breaker_state(server, "m-a") != "closed":
                break
        return int(a.stats()["requests_total"])


def fault_row(tmp: Path, a: Chaos, b: Chaos, name: str, n: int) -> Row:
    fault = FAULTS[name]
    for u in (a, b):
        u.control(reset=True, reset_stats=True)
    a.control(**fault)
    with gateway(tmp, a, b) as server:
        load = asyncio.run(closed_loop(server, n, CONCURRENCY))
        refused = int(routing_state(server)["retry_budget"]["refused"])
    on_a = int(a.stats()["requests_total"])
    attempts = on_a + int(b.stats()["requests_total"])
    row = Row(name, load, attempts, on_a, refused, ejection_count(tmp, a, b, fault))
    print(render_row(row), file=sys.stderr, flush=True)
    return row


def all_down(tmp: Path, a: Chaos, b: Chaos, n: int) -> Phase:
    for u in (a, b):
        u.control(reset=True, reset_stats=True, error_rate=1, error_codes=[500])
    with gateway(tmp, a, b) as server:
        client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {server.key}"})
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(50):
            client.post(server.url + "/v1/chat/completions", json=body)
            if all(breaker_state(server, d) == "open" for d in ("m-a", "m-b")):
                break
        phase = Phase()
        cpu0 = proc_cpu_s(server.proc.pid)
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.post(server.url + "/v1/chat/completions", json=body)
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            phase.statuses[r.status_code] = phase.statuses.get(r.status_code, 0) + 1
        phase.gateway_cpu_s = proc_cpu_s(server.proc.pid) - cpu0
    return phase


def cpu_overhead(tmp: Path, a: Chaos, b: Chaos, n: int, rounds: int = 2) -> dict[str, float]:
    """Gateway CPU ms per healthy non-stream request, routing on (two deployments, defaults)
    and off (one deployment, no retries), in interleaved rounds."""
    for u in (a, b):
        u.control(reset=True, reset_stats=True)
    used = {"on": 0.0, "off": 0.0}
    for _ in range(rounds):
        for mode in used:
            with gateway(tmp, a, b, routing=mode == "on") as server:
                asyncio.run(closed_loop(server, 200, CONCURRENCY, mixed=False))  # warm-up
                phase = asyncio.run(closed_loop(server, n, CONCURRENCY, mixed=False))
            if phase.ok != phase.requests:
                raise SystemExit(f"healthy run failed: {phase.statuses}")
            used[mode] += 1000 * phase.gateway_cpu_s / phase.requests / rounds
    return used


# --------------------------------------------------------------------------- report

HEAD = (
    "| fault on m-a (30 %) | requests | client success | attempts / request | calls on m-a "
    "| failures before ejection | p50 / p99 ms | gateway CPU ms/req | failed requests "
    "| retries over budget |\n|---|--:|--:|--:|--:|--:|--:|--:|---|--:|"
)


def render_row(r: Row) -> str:
    p = r.load
    eject = "n/a" if r.before_ejection is None else str(r.before_ejection)
    return (
        f"| {r.fault} | {p.requests:,} | {100 * p.ok / p.requests:.2f} % "
        f"| {r.attempts / p.requests:.3f} | {100 * r.on_a / r.attempts:.1f} % | {eject} "
        f"| {p.pct(0.5):.1f} / {p.pct(0.99):.1f} "
        f"| {1000 * p.gateway_cpu_s / p.requests:.2f} "
        f"| {', '.join(f'{n} × {why}' for why, n in p.failures.items()) or '–'} "
        f"| {r.refused} |"
    )


def verdict(rows: list[Row], down: Phase, cpu: dict[str, float]) -> list[str]:
    def mark(ok: bool) -> str:
        return "meets" if ok else "**misses**"

    worst_ok = min(100 * r.load.ok / r.load.requests for r in rows)
    worst_att = max(r.attempts / r.load.requests for r in rows)
    ejections = [r.before_ejection for r in rows if r.before_ejection is not None]
    worst_cpu = max(1000 * r.load.gateway_cpu_s / r.load.requests for r in rows)
    return [
        f"- Client success: worst {worst_ok:.2f} % over the fault kinds; target 100 %: "
        f"{mark(worst_ok == 100)}.",
        f"- Upstream attempts per client request: worst {worst_att:.3f}; target ≤ 1.2: "
        f"{mark(worst_att <= 1.2)}.",
        f"- Failures before ejection: worst {max(ejections)}; target ≤ 5: "
        f"{mark(max(ejections) <= 5)}.",
        f"- All down: p99 {down.pct(0.99):.1f} ms to the 503 ({down.requests} requests, "
        f"statuses {down.statuses}); target ≤ 100 ms: {mark(down.pct(0.99) <= 100)}.",
        f"- Gateway CPU per healthy non-stream request: {cpu['on']:.3f} ms with routing on "
        f"(two deployments) against {cpu['off']:.3f} ms off (one, no retries), "
        f"{cpu['on'] / cpu['off']:.2f}x; target ≤ 1 ms: {mark(cpu['on'] <= 1)}. Under faults "
        f"(mixed stream and non-stream, retries included) at most {worst_cpu:.2f} ms.",
    ]


def render(rows: list[Row], down: Phase, cpu: dict[str, float], n: int) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            START,
            "## Chaos: routing and resilience under upstream faults",
            "",
            f"- Machine: {machine()}",
            f"- Date: {now}; seekport revision {revision()}",
            f"- Command: `{command_line()}` (from the repository root)",
            f"- Load: {n:,} requests per fault kind, closed loop over {CONCURRENCY} keep-alive "
            "connections, every other one streamed; model `m` = deployments `m-a` (faulty) "
            "and `m-b` (healthy), default routing policy, `read_timeout_s` and "
            "`first_token_timeout_s` 1 s. Success = exactly the upstream's 16 tokens, once. "
            "Load generator, upstreams and gateway share the cores; latencies include that.",
            "",
            HEAD,
            *(render_row(r) for r in rows),
            "",
            "This run:",
            "",
            *verdict(rows, down, cpu),
            "",
            "Timeouts and stalls cost their 1 s deadline before the retry, so those rows' "
            "latency percentiles show the deadline, not the gateway. Method: the docstring "
            "of `bench/chaos.py`.",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 requests per fault kind")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    parser.add_argument(
        "--faults", nargs="*", choices=list(FAULTS), help="only these (implies --no-docs)"
    )
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        with run_chaos(tmp, name="a") as a, run_chaos(tmp, name="b") as b:
            print(HEAD, file=sys.stderr)
            if args.faults:
                for name in args.faults:
                    fault_row(tmp, a, b, name, n)
                return
            rows = [fault_row(tmp, a, b, name, n) for name in FAULTS]
            down = all_down(tmp, a, b, 1_000 if not args.quick else 200)
            cpu = cpu_overhead(tmp, a, b, n // 2)
    section = render(rows, down, cpu, n)
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
