"""Gateway overhead: what seekport adds on top of an OpenAI-compatible upstream.

Method
------
* One chaos upstream (the suite's ``tests/upstream.py --tokens 16``: every answer has 16
  completion tokens, no faults, no delay) and one ``seekport serve`` process whose config lists
  only the remote model ``deepseek-chat`` (``backend: openai``, ``base_url`` = the chaos URL),
  so the server RSS is that of a gateway *without a model*. ``log_level: warning``, no access log.
  Both run on 127.0.0.1, started by the helpers in ``tests/harness.py``.
* The same bounded, closed-loop load is sent twice per cell: DIRECTLY to the chaos upstream and
  THROUGH seekport (authenticated with a key from ``seekport keys create``). Cells: concurrency
  1, 16 and 64, non-stream and 16-chunk stream. Each cell sends a fixed number of requests
  (500 at c=1, 2000 otherwise; ``--quick`` = one tenth) over ``c`` keep-alive connections opened
  before the clock starts; each connection sends its next request as soon as the last one ended.
* Each target gets ~200 warm-up requests per mode before anything is measured.
* The load generator is a minimal HTTP/1.1 client on raw asyncio streams (uvloop when
  installed): one pre-built request, status line + Content-Length or chunked body parsed by hand,
  no per-request objects beyond bytes. Its own CPU per request is reported so it can be checked.
* Latency is time to the last byte (streams are read until ``data: [DONE]`` and the final chunk,
  and count as one request). "added" = through − direct, per percentile (nearest rank).
* RPS = requests / wall time of the cell: the closed-loop throughput at that concurrency, i.e.
  the most this machine gives at that concurrency. Through seekport it is bounded by its one
  event loop: "gateway cores busy" (its CPU-seconds per wall-second) ≈ 1 says so.
* Gateway CPU = utime + stime of the seekport server process (all its threads; it is one
  process) from ``/proc/<pid>/stat`` before and after the THROUGH half of the cell, divided by
  the requests. RSS = ``VmRSS`` of ``/proc/<pid>/status`` after the cell; the peak (``VmHWM``)
  after the whole run goes in the header.

Caveat: load generator, chaos and gateway share the same cores (2 on the reference machine), so
RPS at c≥16 is a property of the whole box, and the latencies include CPU contention. CPU per
request is the robust number.

Routes (``--routes``): the gateway CPU of the same prompt sent as an OpenAI chat request
(``POST /v1/chat/completions``), an Anthropic Messages request (``POST /anthropic/v1/messages``)
and a Responses request (``POST /v1/responses``), non-stream and stream, through one seekport in
front of the same chaos upstream, at concurrency 16, in interleaved rounds (every route and mode
once, then again) so a busy moment of a shared host hits them all alike. Issue 13 holds the
Anthropic and Responses routes to at most 1.5x the chat route's CPU per request.

Run: ``.venv/bin/python bench/gateway_overhead.py [--quick] [--no-docs]`` and
``.venv/bin/python bench/gateway_overhead.py --routes [--rounds N] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import run_chaos, run_server, write_config  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- gateway_overhead:start -->", "<!-- gateway_overhead:end -->"
MODEL = "deepseek-chat"
TOKENS = 16
CONCURRENCY = (1, 16, 64)
WARMUP = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def request_counts(quick: bool) -> dict[int, int]:
    """Requests per target and cell, by concurrency."""
    n = {1: 500, 16: 2000, 64: 2000}
    return {c: v // 10 for c, v in n.items()} if quick else n


# --------------------------------------------------------------------------- load generator


class HttpError(Exception):
    pass


def build_request(port: int, key: str | None, stream: bool, route: str = "chat") -> bytes:
    """One pre-built HTTP/1.1 request with the same prompt in the route's wire format."""
    stream_json = "true" if stream else "false"
    prompt = '"Say hello"'
    if route == "chat":
        path, fields = "/v1/chat/completions", f'"messages":[{{"role":"user","content":{prompt}}}]'
    elif route == "anthropic":
        path = "/anthropic/v1/messages"
        fields = f'"max_tokens":64,"messages":[{{"role":"user","content":{prompt}}}]'
    elif route == "responses":
        path, fields = "/v1/responses", f'"input":{prompt}'
    else:
        raise ValueError(route)
    body = f'{{"model":"{MODEL}",{fields},"stream":{stream_json}}}'.encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if key:
        head.append(f"authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, connection may be reused)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    keep = b"connection: close" not in head
    m = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if m:
        return status, await reader.readexactly(int(m.group(1))), keep
    if b"transfer-encoding: chunked" not in head:
        raise HttpError("response without content-length or chunked encoding")
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent
            return status, b"".join(parts), keep
        parts.append((await reader.readexactly(size + 2))[:-2])


def body_ok(status: int, body: bytes, stream: bool) -> bool:
    """A complete answer in any of the three wire formats."""
    if status != 200:
        return False
    if stream:
        return (
            b"data: [DONE]" in body[-64:]  # chat
            or b"event: message_stop" in body[-64:]  # Anthropic
            or b"event: response.completed" in body  # Responses (no [DONE])
        )
    return b'"choices"' in body or b'"type":"message"' in body or b'"status":"completed"' in body


@dataclass
class CellResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    other_cores: float = 0.0  # busy CPU of the box outside chaos, gateway and load generator

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    def pct(self, p: float) -> float:
        """Nearest-rank percentile in ms."""
        lat = sorted(self.latencies)
        return lat[max(0, math.ceil(p * len(lat)) - 1)] * 1000 if lat else math.nan

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else math.nan


@dataclass
class Load:
    """One closed-loop run: ``left`` requests shared by all connections."""

    port: int
    request: bytes
    stream: bool
    left: int
    res: CellResult = field(default_factory=CellResult)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def worker(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = conn
        res, request, stream = self.res, self.request, self.stream
        try:
            while self.left > 0:
                self.left -= 1
                t0 = time.perf_counter()
                writer.write(request)
                status, body, keep = await read_response(reader)
                if body_ok(status, body, stream):
                    res.latencies.append(time.perf_counter() - t0)
                else:
                    res.errors += 1
                if not keep:
                    writer.close()
                    reader, writer = await self.connect()
        finally:
            writer.close()


async def run_load(port: int, request: bytes, stream: bool, total: int, conc: int) -> CellResult:
    """``conc`` keep-alive connections, opened before the clock starts; ``total`` requests."""
    load = Load(port, request, stream, total)
    conns = await asyncio.gather(*(load.connect() for _ in range(conc)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(load.worker(c) for c in conns))
    load.res.wall_s = time.perf_counter() - t0
    load.res.client_cpu_s = time.process_time() - cpu0
    return load.res


# --------------------------------------------------------------------------- the server's /proc


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # fields 3.. (comm may contain spaces)
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # fields 14 and 15


def system_busy_s() -> float:
    """Busy CPU time of the whole machine (all cores) from /proc/stat, in seconds."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK  # user nice system irq softirq steal


def proc_mem_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


# --------------------------------------------------------------------------- the cells


@dataclass
class Target:
    port: int
    key: str | None
    pid: int  # the process whose CPU this target costs


@dataclass
class Cell:
    mode: str
    conc: int
    direct: CellResult
    through: CellResult
    gateway_cpu_s: float
    chaos_cpu_s: tuple[float, float]  # (direct, through)
    rss_mb: float


async def measure(
    target: Target, pids: list[int], stream: bool, n: int, conc: int
) -> tuple[CellResult, list[float]]:
    """Run one half of a cell; returns the result and the CPU seconds each pid used."""
    request = build_request(target.port, target.key, stream)
    pids = [*pids, os.getpid()]
    t0, sys0, before = time.perf_counter(), system_busy_s(), [proc_cpu_s(p) for p in pids]
    res = await run_load(target.port, request, stream, n, conc)
    await asyncio.sleep(0.2)  # let after-response work (closing, usage commit) finish
    used = [proc_cpu_s(p) - b for p, b in zip(pids, before, strict=True)]
    other = (system_busy_s() - sys0 - sum(used)) / (time.perf_counter() - t0)
    res.other_cores = max(0.0, other)  # per-process and system ticks round separately
    return res, used[:-1]


async def run_cells(direct: Target, through: Target, counts: dict[int, int]) -> list[Cell]:
    gw, up = through.pid, direct.pid
    cells: list[Cell] = []
    for stream in (False, True):
        mode = f"stream ({TOKENS} chunks)" if stream else "non-stream"
        for target in (direct, through):
            warm = await run_load(
                target.port, build_request(target.port, target.key, stream), stream, WARMUP, 16
            )
            if warm.errors:
                raise SystemExit(f"warm-up failed on port {target.port}: {warm.errors} errors")
        for conc in CONCURRENCY:
            n = counts[conc]
            d, (_, up_d) = await measure(direct, [gw, up], stream, n, conc)
            t, (gw_t, up_t) = await measure(through, [gw, up], stream, n, conc)
            cell = Cell(mode, conc, d, t, gw_t, (up_d, up_t), proc_mem_mb(gw))
            cells.append(cell)
            print(main_row(cell), file=sys.stderr, flush=True)
    return cells


# --------------------------------------------------------------------------- report


def ms_per(seconds: float, res: CellResult) -> float:
    return seconds * 1000 / res.requests if res.requests else math.nan


MAIN_HEAD = (
    "| mode | c | requests | added p50 ms | added p99 ms | RPS through | RPS direct "
    "| gateway CPU ms/req | RSS MB |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
)
DETAIL_HEAD = (
    "| mode | c | direct p50 / p99 ms | through p50 / p99 ms | errors direct / through "
    "| load-gen CPU ms/req direct / through | chaos CPU ms/req direct / through "
    "| gateway cores busy | other CPU, cores direct / through |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def main_row(c: Cell) -> str:
    d, t = c.direct, c.through
    return (
        f"| {c.mode} | {c.conc} | {t.requests} | {t.pct(0.5) - d.pct(0.5):.2f} "
        f"| {t.pct(0.99) - d.pct(0.99):.2f} | {t.rps:,.0f} | {d.rps:,.0f} "
        f"| {ms_per(c.gateway_cpu_s, t):.2f} | {c.rss_mb:.0f} |"
    )


def detail_row(c: Cell) -> str:
    d, t = c.direct, c.through
    return (
        f"| {c.mode} | {c.conc} | {d.pct(0.5):.2f} / {d.pct(0.99):.2f} "
        f"| {t.pct(0.5):.2f} / {t.pct(0.99):.2f} | {d.errors} / {t.errors} "
        f"| {ms_per(d.client_cpu_s, d):.2f} / {ms_per(t.client_cpu_s, t):.2f} "
        f"| {ms_per(c.chaos_cpu_s[0], d):.2f} / {ms_per(c.chaos_cpu_s[1], t):.2f} "
        f"| {c.gateway_cpu_s / t.wall_s:.2f} | {d.other_cores:.2f} / {t.other_cores:.2f} |"
    )


def verdict(cells: list[Cell], peak_rss: float) -> list[str]:
    def worst(stream: bool) -> float:
        return max(
            ms_per(c.gateway_cpu_s, c.through) for c in cells if c.mode.startswith("s") == stream
        )

    def mark(ok: bool) -> str:
        return "meets" if ok else "**misses**"

    ns, st = worst(False), worst(True)
    other = max(max(c.direct.other_cores, c.through.other_cores) for c in cells)
    return [
        f"- Non-stream: worst {ns:.2f} ms gateway CPU per request; target ≤ 1 ms: {mark(ns <= 1)}.",
        f"- 16-chunk stream: worst {st:.2f} ms per request; target ≤ 2 ms: {mark(st <= 2)}.",
        f"- RSS: peak {peak_rss:.0f} MB (VmHWM) without a model; target ≤ 100 MB per worker: "
        f"{mark(peak_rss <= 100)}.",
        f"- Other CPU on the machine: at most {other:.2f} cores during a cell "
        + ("(quiet)." if other <= 0.3 else "(**disturbed run: other work shared the cores**)."),
    ]


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cores = len(os.sched_getaffinity(0))
    py = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{cpu}, {cores} usable cores (`os.sched_getaffinity`), {py}, Linux {platform.release()}"


def revision() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    diff = git("diff", "HEAD", "--", "src")
    if not diff:
        return rev
    digest = sha256(diff.encode()).hexdigest()[:12]
    return f"{rev} + uncommitted changes in src/ (diff sha256 {digest})"


def command_line() -> str:
    exe = Path(sys.executable)
    shown = exe.relative_to(REPO) if exe.is_relative_to(REPO) else exe
    script = Path(sys.argv[0]).resolve()
    script_shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join([str(shown), str(script_shown), *sys.argv[1:]])


def render(cells: list[Cell], peak_rss: float, counts: dict[int, int]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "## Gateway overhead (seekport in front of an OpenAI-compatible upstream)",
        "",
        f"- Machine: {machine()}",
        f"- Date: {now}; seekport revision {revision()}",
        f"- Command: `{command_line()}` (from the repository root)",
        f"- Load: closed loop, {counts[1]} requests at c=1 and {counts[16]} at c=16/64 per target "
        f"and cell, after {WARMUP} warm-up requests per target and mode.",
        "- **The load generator, the chaos upstream and the gateway share these cores**, so RPS "
        "at c≥16 and the latency under load are properties of the whole box, not of seekport "
        "alone; gateway CPU per request is the number to compare. seekport is one process "
        "with one event loop: where *gateway cores busy* (its CPU-seconds per wall-second) is "
        "≈ 1, RPS through is bounded by the gateway's CPU per request. *Other CPU* (details "
        "table) is the machine's busy time outside the three processes (kernel loopback work "
        "and anything else running); well above ~0.2 cores means the run was disturbed.",
        "",
        MAIN_HEAD,
        *(main_row(c) for c in cells),
        "",
        "Targets:",
        "",
        "- ≤ 1 ms gateway CPU per non-stream request, ≤ 2 ms per 16-chunk stream, ≤ 100 MB RSS "
        "per worker without a model.",
        "- For comparison, LiteLLM measured ~9–12 ms CPU per non-stream request, ~24 ms per "
        "stream and ~330–410 MB RSS on this kind of machine.",
        "",
        "This run:",
        "",
        *verdict(cells, peak_rss),
        "",
        "Details (nearest-rank percentiles, time to last byte):",
        "",
        DETAIL_HEAD,
        *(detail_row(c) for c in cells),
        "",
        METHOD,
        END,
    ]
    return "\n".join(lines)


METHOD = (
    "Method: one chaos upstream (`tests/upstream.py --tokens 16`, no faults, no "
    "delay) and one `seekport serve` process whose config lists only the remote model "
    "`deepseek-chat` (`backend: openai`, `base_url` = the chaos URL; `log_level: warning`, no "
    "access log), both on 127.0.0.1. Every cell sends the same load directly to chaos and "
    "through seekport with a raw-asyncio HTTP/1.1 client (keep-alive, connections opened before "
    "the clock starts). Streams are read to `data: [DONE]` and count as one request. *added* = "
    "through − direct per percentile. *Gateway CPU* = utime+stime of the server process from "
    "`/proc/<pid>/stat` across the through half of the cell ÷ requests (10 ms tick resolution). "
    "*RSS* = `VmRSS` after the cell. Each usage record is committed to SQLite before the "
    "response ends, so that work is included. Details: the docstring of "
    "`bench/gateway_overhead.py`."
)

DOCS_PREAMBLE = (
    "# Benchmarks\n\n"
    "Each section is written by its own script under `bench/`; re-running a script replaces "
    "only its section (between its `<!-- NAME:start -->` and `<!-- NAME:end -->` markers).\n\n"
)


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between ``start`` and ``end`` markers (or append the section)."""
    text = path.read_text(encoding="utf-8") if path.exists() else DOCS_PREAMBLE
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- routes

ROUTES = ("chat", "anthropic", "responses")
ROUTES_START, ROUTES_END = "<!-- route_overhead:start -->", "<!-- route_overhead:end -->"
ROUTE_PER_RUN = 400
ROUTE_CONCURRENCY = 16


def measure_routes(rounds: int, per_run: int) -> dict[tuple[str, bool], float]:
    """ms of gateway CPU per request for each (route, stream), interleaved rounds."""
    with tempfile.TemporaryDirectory(prefix="seekport-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with run_chaos(tmp, "--tokens", str(TOKENS)) as chaos:
            config = write_config(
                tmp, [remote_model(chaos.url)], log_level="warning", access_log=False
            )
            with run_server(config) as server:
                pid = server.proc.pid
                requests = {
                    (route, stream): build_request(server.port, server.key, stream, route)
                    for stream in (False, True)
                    for route in ROUTES
                }
                for (_, stream), req in requests.items():  # warm-up
                    res = _event_loop_run(run_load(server.port, req, stream, WARMUP, 4))
                    if res.errors:
                        raise SystemExit(f"warm-up: {res.errors} failed requests")
                cpu = dict.fromkeys(requests, 0.0)
                done = dict.fromkeys(requests, 0)
                for _ in range(rounds):
                    for key, req in requests.items():
                        before = proc_cpu_s(pid)
                        res = _event_loop_run(
                            run_load(server.port, req, key[1], per_run, ROUTE_CONCURRENCY)
                        )
                        if res.errors:
                            raise SystemExit(f"{key}: {res.errors} failed requests")
                        cpu[key] += proc_cpu_s(pid) - before
                        done[key] += res.requests
                return {k: cpu[k] / done[k] * 1000 for k in requests}


def render_routes(ms: dict[tuple[str, bool], float], rounds: int, per_run: int) -> str:
    rows = []
    for stream in (False, True):
        chat = ms[("chat", stream)]
        cells = [f"{chat:.3f}"]
        for route in ROUTES[1:]:
            other = ms[(route, stream)]
            verdict = "ok" if other <= 1.5 * chat else "over budget"
            cells.append(f"{other:.3f} ({other / chat:.2f}x, {verdict})")
        mode = f"{TOKENS}-chunk stream" if stream else "non-stream"
        rows.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            ROUTES_START,
            "## Wire formats: gateway CPU of the Anthropic and Responses routes against chat",
            "",
            f"- Machine: {machine()}",
            f"- Date: {dt.date.today().isoformat()}, revision {revision()}",
            f"- Command: `{command_line()}` (from the repository root)",
            "",
            f"The same prompt through `/v1/chat/completions`, `/anthropic/v1/messages` and "
            f"`/v1/responses` of one seekport in front of one chaos upstream ({TOKENS}-token "
            f"answers), {rounds} interleaved rounds of {per_run} requests per route and mode at "
            f"concurrency {ROUTE_CONCURRENCY}. Cells: ms of gateway CPU per request (ratio to "
            f"chat). Budget: at most 1.5x the chat route (issue 13).",
            "",
            "| mode | chat | anthropic | responses |",
            "|---|--:|--:|--:|",
            *rows,
            ROUTES_END,
        ]
    )


# --------------------------------------------------------------------------- main


def remote_model(url: str) -> dict[str, object]:
    return {"name": MODEL, "backend": "openai", "base_url": url, "upstream_model": MODEL}


def run(args: argparse.Namespace) -> tuple[list[Cell], float]:
    counts = request_counts(args.quick)
    with tempfile.TemporaryDirectory(prefix="seekport-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with run_chaos(tmp, "--tokens", str(TOKENS)) as chaos:
            models = [remote_model(chaos.url)]
            config = write_config(tmp, models, log_level="warning", access_log=False)
            with run_server(config) as server:
                direct = Target(chaos.port, None, chaos.proc.pid)
                through = Target(server.port, server.key, server.proc.pid)
                print(f"chaos pid {direct.pid}, seekport pid {through.pid}", file=sys.stderr)
                cells = _event_loop_run(run_cells(direct, through, counts))
                return cells, proc_mem_mb(through.pid, "VmHWM")


def _event_loop_run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tenth of the requests")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave the docs alone")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    parser.add_argument(
        "--routes", action="store_true", help="compare the chat, Anthropic and Responses routes"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (--routes)")
    args = parser.parse_args()
    if args.routes:
        per_run = ROUTE_PER_RUN // 10 if args.quick else ROUTE_PER_RUN
        section = render_routes(measure_routes(args.rounds, per_run), args.rounds, per_run)
        start, end = ROUTES_START, ROUTES_END
    else:
        cells, peak = run(args)
        section = render(cells, peak, request_counts(args.quick))
        start, end = START, END
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, start, end)
        print(f"\nwrote {args.docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
