"""Engine throughput: seekport's continuous-batching engine against llama-cpp-python's server.

Method
------
* The same GGUF (the bundled SmolLM2-135M-Instruct, ``bundled_model_path()``) is served by
  (a) ``seekport serve`` with one local model (``n_threads: 1``, ``context_length: 1024``,
  ``max_num_seqs: 16``, ``max_waiting: 64``; ``log_level: warning``, no access log), started by
  ``tests.harness.run_server`` (which also creates the API key), and (b) llama-cpp-python's own
  server, ``python -m llama_cpp.server --model <gguf> --n_threads 1 --n_threads_batch 1
  --n_ctx 4096 --interrupt_requests False --verbose False`` (install it, and
  matplotlib for the plot, with ``pip install -e '.[server,local,bench]'``). Both use one
  llama.cpp thread for decode and prefill. The servers run one at a time, never together,
  on 127.0.0.1.
* (c) llama.cpp's C++ ``llama-server`` is measured only when a binary is on ``PATH``; this
  script never builds it (docs/benchmarks.md says how it was built: about 4 minutes from the
  llama.cpp sources vendored in llama-cpp-python's sdist).
* Load: streamed chat completions, closed loop at concurrency 1, 4, 8 and 16. Each cell sends a
  fixed number of requests (``max(16, 2*c)``; ``--quick``: ``max(2, c)``) over ``c`` workers; a
  worker sends its next request as soon as its last stream ended. Request ``i`` asks
  ``"Request {i}. "`` + prompt ``i mod 8`` of a fixed list, with ``seed = i``, and ``i`` counts
  on across the cells of a run (0 is the warm-up): every server gets the same prompts, and each
  is unique within the run, so prefix caches (seekport's per-slot reuse and KV copies,
  llama_cpp.server's reuse of its one context, llama-server's slot and RAM prompt caches) can
  only share the chat template's system prefix, never a whole earlier prompt.
  Every request asks for exactly 128 tokens: ``max_tokens: 128`` and ``logit_bias {"2": -100}``
  (token 2 is SmolLM2's ``<|im_end|>``, the end-of-generation token), with the same sampling
  (temperature 0.7, top_p 0.95, top_k 40, min_p 0.05, repeat_penalty 1.0). One warm-up request
  per server precedes the cells.
* Per request: TTFT = send → first non-empty content delta; inter-token latency (ITL) = gaps
  between consecutive content deltas; completion tokens = ``usage.completion_tokens`` when the
  server sends it (``stream_options.include_usage``; seekport does), else the number of content
  deltas (llama_cpp.server sends one delta per token and no usage). Rates use these real counts,
  so a stream that stops early lowers them; such requests are counted as *short*.
* Per cell: TTFT p50/p99 (nearest rank; with 16-32 samples p99 is the maximum), mean and p99 ITL
  over all gaps of the cell, aggregate output tok/s = completion tokens / wall time of the cell,
  and tokens per server CPU-second, with the server's CPU = utime + stime of the server process
  (all its threads) from ``/proc/<pid>/stat`` before and after the cell.
* The load generator is a minimal HTTP/1.1 client on raw asyncio streams (uvloop when
  installed), one connection per request, parsing SSE events by hand; its own CPU is reported.
  *Other CPU* = busy time of the whole machine (``/proc/stat``) minus server and load generator,
  per wall-second: well above ~0.2 cores means something else ran during the cell.

Caveat: the load generator shares the machine's cores with the server (2 on the reference
machine); one of them runs llama.cpp's single thread, the other the server's event loop and the
load generator.

Defaults: (d) ``seekport-default`` is ``seekport serve`` with no model settings at all (the
bundled model with its defaults: slots sized from available memory, ``context_length`` 4096,
``n_threads`` free cores − 1, at most 4: 1 on the reference machine), and (e)
``seekport-old-default`` the same with ``max_num_seqs: 4``, the fixed default before slots
were sized from memory. Both run at c=8 and c=16 only, after the servers above, and get their
own section of docs/benchmarks.md, which a run of just them writes alone:
``bench/engine_throughput.py --servers seekport-default,seekport-old-default`` (no C++
llama-server or llama_cpp.server needed).

Run: ``.venv/bin/python bench/engine_throughput.py [--quick] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gateway_overhead import (  # noqa: E402
    _event_loop_run,
    command_line,
    machine,
    proc_cpu_s,
    proc_mem_mb,
    revision,
    system_busy_s,
    write_section,
)
from tests.harness import free_port, run_server, stop_process, wait_http, write_config  # noqa: E402

from seekport.engine.runners.llamacpp import bundled_model_path  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "engine_throughput.png"
START, END = "<!-- engine_throughput:start -->", "<!-- engine_throughput:end -->"
DEFAULTS_START, DEFAULTS_END = "<!-- engine_defaults:start -->", "<!-- engine_defaults:end -->"
SEEKPORT_MODEL = "smollm2-135m-instruct"
CONCURRENCY = (1, 4, 8, 16)
DEFAULT_LEVELS = (8, 16)  # the default-config rows
MAX_TOKENS = 128
EOS_TOKEN = "2"  # SmolLM2's <|im_end|>
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
PROMPTS = (
    "Write a short story about a cat who learns to sail.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "List some tips for a first-time visitor to a large city, with a sentence on each.",
    "Describe the water cycle to a ten-year-old.",
    "What are the pros and cons of working from home? Give a balanced answer.",
    "Write a friendly email inviting a neighbour to a garden party on Saturday afternoon.",
    "Summarise the rules of chess for someone who has never played a board game.",
    "Why is the sky blue? Answer in plain language and then add a more technical paragraph.",
)
SSE_EVENT_END = re.compile(rb"\r?\n\r?\n")


def prompt(i: int) -> str:
    """Unique per request, so no server can reuse a whole earlier prompt from its cache."""
    return f"Request {i}. {PROMPTS[i % len(PROMPTS)]}"


def request_count(conc: int, quick: bool) -> int:
    return max(2, conc) if quick else max(16, 2 * conc)


# --------------------------------------------------------------------------- load generator


@dataclass
class Target:
    name: str
    port: int
    key: str | None
    model: str
    pid: int


@dataclass
class Stream:
    """What one streamed request produced."""

    ttft: float = math.nan
    deltas: list[float] = field(default_factory=list)  # arrival times of content deltas
    usage_tokens: int | None = None
    finish: str | None = None
    done: bool = False

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else len(self.deltas)


def build_request(t: Target, i: int) -> bytes:
    body = json.dumps(
        {
            "model": t.model,
            "messages": [{"role": "user", "content": prompt(i)}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
            "logit_bias": {EOS_TOKEN: -100},
            "seed": i,
            **SAMPLING,
        }
    ).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"host: 127.0.0.1:{t.port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if t.key:
        head.append(f"authorization: Bearer {t.key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def body_parts(reader: asyncio.StreamReader, head: bytes) -> AsyncIterator[bytes]:
    """The response body as it arrives (chunked, or read to EOF)."""
    if b"transfer-encoding: chunked" in head.lower():
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            yield (await reader.readexactly(size + 2))[:-2]
        return
    while data := await reader.read(65536):
        yield data


def take_event(out: Stream, event: bytes, t0: float) -> None:
    for line in event.splitlines():
        if not line.startswith(b"data: "):
            continue  # comments (pings), event names
        if line == b"data: [DONE]":
            out.done = True
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            out.usage_tokens = int(chunk["usage"]["completion_tokens"])
        for choice in chunk.get("choices") or ():
            out.finish = choice.get("finish_reason") or out.finish
            if (choice.get("delta") or {}).get("content"):
                now = time.perf_counter()
                if not out.deltas:
                    out.ttft = now - t0
                out.deltas.append(now)


async def one_stream(t: Target, i: int) -> Stream:
    out = Stream()
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    try:
        t0 = time.perf_counter()
        writer.write(build_request(t, i))
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head[9:12]) != 200:
            return out
        buf = b""
        async for part in body_parts(reader, head):
            *events, buf = SSE_EVENT_END.split(buf + part)
            for event in events:
                take_event(out, event, t0)
        take_event(out, buf, t0)
        return out
    finally:
        writer.close()


# --------------------------------------------------------------------------- the cells


@dataclass
class Cell:
    server: str
    conc: int
    streams: list[Stream] = field(default_factory=list)
    errors: int = 0  # non-200 or stream without [DONE]
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    other_cores: float = 0.0
    rss_mb: float = 0.0

    def ttft_ms(self, p: float) -> float:
        lat = sorted(s.ttft for s in self.streams)
        return lat[max(0, math.ceil(p * len(lat)) - 1)] * 1000 if lat else math.nan

    @property
    def gaps(self) -> list[float]:
        return [b - a for s in self.streams for a, b in zip(s.deltas, s.deltas[1:], strict=False)]

    def itl_ms(self, p: float | None = None) -> float:
        gaps = sorted(self.gaps)
        if not gaps:
            return math.nan
        if p is None:
            return sum(gaps) / len(gaps) * 1000
        return gaps[max(0, math.ceil(p * len(gaps)) - 1)] * 1000

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else math.nan

    @property
    def tok_per_cpu_s(self) -> float:
        return self.tokens / self.server_cpu_s if self.server_cpu_s else math.nan

    @property
    def short(self) -> int:
        return sum(s.tokens < MAX_TOKENS for s in self.streams)


async def closed_loop(t: Target, first: int, total: int, conc: int) -> tuple[list[Stream], int]:
    """``conc`` workers share requests ``first .. first+total-1``; each sends the next when
    its last ended."""
    streams: list[Stream] = []
    errors = 0
    counter = iter(range(first, first + total))

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            s = await one_stream(t, i)
            if s.done and s.deltas:
                streams.append(s)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    return streams, errors


async def measure(t: Target, conc: int, first: int, n: int) -> Cell:
    cell = Cell(t.name, conc)
    cpu0, sys0, client0 = proc_cpu_s(t.pid), system_busy_s(), time.process_time()
    t0 = time.perf_counter()
    cell.streams, cell.errors = await closed_loop(t, first, n, conc)
    cell.wall_s = time.perf_counter() - t0
    cell.server_cpu_s = proc_cpu_s(t.pid) - cpu0
    cell.client_cpu_s = time.process_time() - client0
    other = system_busy_s() - sys0 - cell.server_cpu_s - cell.client_cpu_s
    cell.other_cores = max(0.0, other / cell.wall_s)  # ticks of /proc round separately
    cell.rss_mb = proc_mem_mb(t.pid)
    return cell


async def run_cells(t: Target, quick: bool, levels: tuple[int, ...] = CONCURRENCY) -> list[Cell]:
    warm = await one_stream(t, 0)
    if not (warm.done and warm.deltas):
        raise SystemExit(f"{t.name}: warm-up request failed")
    print(f"{t.name}: warm-up {warm.tokens} tokens, finish {warm.finish}", file=sys.stderr)
    cells = []
    first = 1  # request numbers never repeat within a run (0 was the warm-up)
    for conc in levels:
        n = request_count(conc, quick)
        cell = await measure(t, conc, first, n)
        first += n
        cells.append(cell)
        print(main_row(cell), file=sys.stderr, flush=True)
    return cells


# --------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def seekport_server(tmp: Path) -> Iterator[Target]:
    model = {
        "name": SEEKPORT_MODEL,
        "backend": "local",
        "path": "bundled",
        "n_threads": 1,
        "context_length": 1024,
        "max_num_seqs": 16,
        "max_waiting": 64,
    }
    config = write_config(tmp, [model], log_level="warning", access_log=False)
    with run_server(config) as server:
        yield Target("seekport", server.port, server.key, SEEKPORT_MODEL, server.proc.pid)


@contextlib.contextmanager
def seekport_default_server(tmp: Path, name: str, model: dict[str, object]) -> Iterator[Target]:
    """``seekport serve`` with the bundled model and only ``model``'s settings (none: all
    defaults; the config then lists no models at all)."""
    models = [{"name": SEEKPORT_MODEL, "backend": "local", **model}] if model else None
    config = write_config(tmp / name, models, log_level="warning", access_log=False)
    with run_server(config) as server:
        yield Target(name, server.port, server.key, SEEKPORT_MODEL, server.proc.pid)


DEFAULT_SERVERS: dict[str, dict[str, object]] = {
    "seekport-default": {},
    "seekport-old-default": {"max_num_seqs": 4},
}


def default_slots() -> str:
    """What the memory rule gives the bundled model now (the server sizes itself the same
    way a moment later)."""
    from seekport.engine.sizing import available_memory, default_max_num_seqs

    free = available_memory()
    model = bundled_model_path()
    n = default_max_num_seqs(
        kv_bytes_per_token=23_040, context_length=4096, available=free, weights=model.stat().st_size
    )
    return f"here {n} slots of 4096 tokens, from {free / (1 << 30):.1f} GiB available"


def llama_cpp_python_cmd(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(bundled_model_path()),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_ctx",
        "4096",
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextlib.contextmanager
def external_server(name: str, cmd: list[str], port: int, log: Path) -> Iterator[Target]:
    """Start an OpenAI-compatible server; its model id is the first one /v1/models lists."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/v1/models", proc=proc, timeout_s=120)
            model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
            yield Target(name, port, None, model, proc.pid)
        finally:
            stop_process(proc)


def llama_server_cmd(binary: str, port: int) -> list[str]:
    return [
        binary,
        *("--model", str(bundled_model_path()), "--threads", "1", "--threads-batch", "1"),
        *("--ctx-size", str(1024 * 16), "--parallel", "16", "--cont-batching"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


SERVERS = ("seekport", "llama_cpp.server", "llama-server", *DEFAULT_SERVERS)


def run(
    quick: bool,
    servers: tuple[str, ...] = SERVERS,
    levels: tuple[int, ...] = CONCURRENCY,
    default_levels: tuple[int, ...] = DEFAULT_LEVELS,
) -> tuple[list[Cell], str | None]:
    """Each server in turn (never two at once); returns the cells and the llama-server path."""
    binary = shutil.which("llama-server")
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="seekport-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "seekport" in servers:
            with seekport_server(tmp) as t:
                cells += _event_loop_run(run_cells(t, quick, levels))
        if "llama_cpp.server" in servers:
            port = free_port()
            cmd = llama_cpp_python_cmd(port)
            with external_server("llama_cpp.server", cmd, port, tmp / "llama_cpp.log") as t:
                cells += _event_loop_run(run_cells(t, quick, levels))
        if binary and "llama-server" in servers:
            port = free_port()
            cmd = llama_server_cmd(binary, port)
            with external_server("llama-server (C++)", cmd, port, tmp / "llama-server.log") as t:
                cells += _event_loop_run(run_cells(t, quick, levels))
        for name, model in DEFAULT_SERVERS.items():
            if name in servers:
                (tmp / name).mkdir()
                with seekport_default_server(tmp, name, model) as t:
                    cells += _event_loop_run(run_cells(t, quick, default_levels))
    return cells, binary


# --------------------------------------------------------------------------- report


MAIN_HEAD = (
    "| server | c | requests | TTFT p50 ms | TTFT p99 ms | mean ITL ms | output tok/s "
    "| tok per server CPU-s |\n|---|--:|--:|--:|--:|--:|--:|--:|"
)
DETAIL_HEAD = (
    "| server | c | wall s | completion tokens | short / errors | content deltas | ITL p99 ms "
    "| server cores busy | server RSS MB | load-gen CPU s | other CPU, cores |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def main_row(c: Cell) -> str:
    return (
        f"| {c.server} | {c.conc} | {len(c.streams) + c.errors} | {c.ttft_ms(0.5):,.0f} "
        f"| {c.ttft_ms(0.99):,.0f} | {c.itl_ms():.1f} | {c.tok_s:.1f} | {c.tok_per_cpu_s:.1f} |"
    )


def detail_row(c: Cell) -> str:
    deltas = sum(len(s.deltas) for s in c.streams)
    return (
        f"| {c.server} | {c.conc} | {c.wall_s:.1f} | {c.tokens} | {c.short} / {c.errors} "
        f"| {deltas} | {c.itl_ms(0.99):.1f} | {c.server_cpu_s / c.wall_s:.2f} "
        f"| {c.rss_mb:.0f} | {c.client_cpu_s:.2f} | {c.other_cores:.2f} |"
    )


def cell(cells: list[Cell], server: str, conc: int) -> Cell:
    return next(c for c in cells if c.server == server and c.conc == conc)


def ratios(cells: list[Cell]) -> list[str]:
    sp = "seekport"
    lc = "llama_cpp.server"
    s8, l8 = cell(cells, sp, 8), cell(cells, lc, 8)
    lines = [
        f"- TTFT p50 at c=8: seekport {s8.ttft_ms(0.5):,.0f} ms vs llama_cpp.server "
        f"{l8.ttft_ms(0.5):,.0f} ms: **{l8.ttft_ms(0.5) / s8.ttft_ms(0.5):.1f}× better** "
        "(llama_cpp.server ÷ seekport).",
        "- Aggregate output tok/s, seekport ÷ llama_cpp.server: "
        + ", ".join(
            f"c={c}: **{cell(cells, sp, c).tok_s / cell(cells, lc, c).tok_s:.2f}×**"
            for c in CONCURRENCY
        )
        + ".",
        "- Tokens per server CPU-second, seekport ÷ llama_cpp.server: "
        + ", ".join(
            f"c={c}: {cell(cells, sp, c).tok_per_cpu_s / cell(cells, lc, c).tok_per_cpu_s:.2f}×"
            for c in CONCURRENCY
        )
        + ".",
    ]
    cpp = "llama-server (C++)"
    if any(c.server == cpp for c in cells):
        s8, k8 = cell(cells, sp, 8), cell(cells, cpp, 8)
        lines += [
            f"- Against the C++ llama-server, TTFT p50 at c=8: seekport {s8.ttft_ms(0.5):,.0f} "
            f"ms vs {k8.ttft_ms(0.5):,.0f} ms (**{s8.ttft_ms(0.5) / k8.ttft_ms(0.5):.1f}×** its "
            "figure; the issue's aim is ≤ 1.2×).",
            "- Aggregate output tok/s, seekport ÷ C++ llama-server (aim ≥ 0.9×): "
            + ", ".join(
                f"c={c}: **{cell(cells, sp, c).tok_s / cell(cells, cpp, c).tok_s:.2f}×**"
                for c in CONCURRENCY
            )
            + "; tokens per server CPU-second: "
            + ", ".join(
                f"c={c}: {cell(cells, sp, c).tok_per_cpu_s / cell(cells, cpp, c).tok_per_cpu_s:.2f}×"  # noqa: E501
                for c in CONCURRENCY
            )
            + ".",
        ]
    short = sum(c.short for c in cells)
    by = sorted({c.server for c in cells if c.short})
    errors = sum(c.errors for c in cells)
    other = max(c.other_cores for c in cells)
    lines.append(
        f"- Streams shorter than {MAX_TOKENS} tokens: {short}"
        + (
            f" ({', '.join(by)}; counted by content deltas where a stream has no usage)"
            if by
            else ""
        )
        + f"; failed streams: {errors}. "
        f"Other CPU on the machine: at most {other:.2f} cores during a cell "
        + ("(quiet)." if other <= 0.3 else "(**disturbed run: other work shared the cores**).")
    )
    return lines


def reading(cells: list[Cell]) -> list[str]:
    """What the table says about the two scheduling policies, in numbers of this run."""

    def span(xs: list[float], fmt: str) -> str:
        return f"{min(xs):{fmt}}–{max(xs):{fmt}}"

    sp = [c for c in cells if c.server == "seekport"]
    lc = [c for c in cells if c.server == "llama_cpp.server"]
    s1, s16, l16 = sp[0], sp[-1], lc[-1]
    return [
        f"- seekport decodes all running streams in each step of its one thread: mean ITL "
        f"{s1.itl_ms():.1f} ms at c=1, {s16.itl_ms():.1f} ms at c=16 (ITL p99 "
        f"{s16.itl_ms(0.99):.0f} ms there: steps that also prefill newly admitted prompts).",
        f"- llama_cpp.server serves one request at a time: mean ITL stays "
        f"{span([c.itl_ms() for c in lc], '.1f')} ms while the others queue (TTFT p99 "
        f"{l16.ttft_ms(0.99):,.0f} ms at c=16).",
        f"- Aggregate output tok/s across c: seekport {span([c.tok_s for c in sp], '.0f')}, "
        f"llama_cpp.server {span([c.tok_s for c in lc], '.0f')}.",
    ]


def render(cells: list[Cell], binary: str | None, quick: bool, elapsed_s: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = ", ".join(f"{request_count(c, quick)} at c={c}" for c in CONCURRENCY)
    cpp = (
        f"C++ llama-server measured: `{binary}`, built from the llama.cpp sources vendored in "
        "the same llama-cpp-python sdist (`cmake -B build -DCMAKE_BUILD_TYPE=Release "
        "-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF` "
        "then `cmake --build build --target llama-server -j2`: about 4 minutes on 2 cores)."
        if binary
        else "**C++ llama-server not measured: not buildable within CI-sized time here** (no "
        "`llama-server` binary on this machine, and this script does not build one)."
    )
    lines = [
        START,
        "## Engine throughput (seekport's batching engine vs llama-cpp-python's server)",
        "",
        f"- Machine: {machine()}",
        f"- Date: {now}; seekport revision {revision()}; llama-cpp-python {llama_cpp_version()}",
        f"- Command: `{command_line()}` (from the repository root); whole run {elapsed_s:.0f} s",
        f"- Model: the bundled SmolLM2-135M-Instruct GGUF (`{bundled_model_path().name}`), "
        "1 llama.cpp thread in both servers.",
        f"- Load: streamed chat completions, closed loop, {counts} requests per cell, each "
        f"forced to {MAX_TOKENS} output tokens (`max_tokens: {MAX_TOKENS}`, "
        f'`logit_bias: {{"{EOS_TOKEN}": -100}}` bans `<|im_end|>`); '
        "one warm-up request per server.",
        f"- {cpp}",
        "",
        MAIN_HEAD,
        *(main_row(c) for c in cells),
        "",
        "Ratios:",
        "",
        *ratios(cells),
        *reading(cells),
        "",
        f"![aggregate output tok/s and TTFT p50 vs concurrency]({PLOT.name})",
        "",
        "Details:",
        "",
        DETAIL_HEAD,
        *(detail_row(c) for c in cells),
        "",
        METHOD,
        END,
    ]
    return "\n".join(lines)


def render_defaults(cells: list[Cell], quick: bool, elapsed_s: float, slots: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    levels = sorted({c.conc for c in cells})
    counts = ", ".join(f"{request_count(c, quick)} at c={c}" for c in levels)
    other = max(c.other_cores for c in cells)
    lines = [
        DEFAULTS_START,
        "## Engine with no configuration (the local model's defaults)",
        "",
        f"- Machine: {machine()}. **A shared, noisy machine**: other work (builds, other "
        "test runs) can run beside the benchmark on its 2 cores; *other CPU* below says how "
        f"much did (at most {other:.2f} cores during a cell here"
        + ("" if other <= 0.3 else ": **disturbed**")
        + "), so read the figures as indicative, and the two rows against each other.",
        f"- Date: {now}; seekport revision {revision()}",
        f"- Command: `{command_line()}` (from the repository root); whole run {elapsed_s:.0f} s",
        "- `seekport-default`: `seekport serve` whose config names no model, so the bundled "
        "SmolLM2-135M-Instruct runs with every default: `max_num_seqs` sized from available "
        f"memory ({slots}), `context_length` 4096, `n_threads` free cores − 1 (1 here). "
        "`seekport-old-default`: the same with `max_num_seqs: 4`, the fixed default before.",
        f"- Load: as in the engine throughput section (closed loop, unique prompts, "
        f"{MAX_TOKENS} forced output tokens, seed = request index), {counts} requests; one "
        "warm-up request per server.",
        "- Every slot's KV cache is allocated at start-up, busy or not: the *server RSS* "
        "column shows what the default's slots cost in memory. The C++ llama-server is not "
        "part of this run; the engine throughput section above (its own, earlier run) has it.",
        "",
        MAIN_HEAD,
        *(main_row(c) for c in cells),
        "",
    ]
    new, old = "seekport-default", "seekport-old-default"
    if {new, old} <= {c.server for c in cells}:
        lines += ["Default ÷ old default:", ""]
        for conc in levels:
            n, o = cell(cells, new, conc), cell(cells, old, conc)
            lines.append(
                f"- c={conc}: TTFT p50 {n.ttft_ms(0.5):,.0f} ms vs {o.ttft_ms(0.5):,.0f} ms "
                f"(**{o.ttft_ms(0.5) / n.ttft_ms(0.5):.1f}× better**), output tok/s "
                f"{n.tok_s:.1f} vs {o.tok_s:.1f} (**{n.tok_s / o.tok_s:.2f}×**), mean ITL "
                f"{n.itl_ms():.1f} vs {o.itl_ms():.1f} ms."
            )
        lines.append("")
    lines += ["Details:", "", DETAIL_HEAD, *(detail_row(c) for c in cells), DEFAULTS_END]
    return "\n".join(lines)


METHOD = (
    "Method: the servers run one at a time on 127.0.0.1 with the same GGUF and one llama.cpp "
    "thread each: `seekport serve` with one local model (`n_threads: 1`, `context_length: 1024`, "
    "`max_num_seqs: 16`, `max_waiting: 64`, `log_level: warning`, no access log) and "
    "`python -m llama_cpp.server --n_threads 1 --n_threads_batch 1 --n_ctx 4096 "
    "--interrupt_requests False --verbose False`, which runs one request at a time (the others "
    "wait for its lock), and the C++ `llama-server` with `--threads 1 --threads-batch 1 "
    "--ctx-size 16384 --parallel 16 --cont-batching`. Request i asks `Request i. ` + one of 8 "
    "fixed prompts, i counting on across the cells of a run (same sequence for every server; "
    "unique within the run, so prefix caches share only the chat template's system prefix), "
    "the same sampling (temperature 0.7, top_p 0.95, top_k 40, min_p 0.05, repeat_penalty 1.0, "
    "seed = request index) and `stream_options.include_usage`. *TTFT* = send → first content "
    "delta; *ITL* = gap between consecutive content deltas (mean over all gaps of the cell); "
    "*completion tokens* = `usage.completion_tokens` where the stream has it (seekport), else "
    "the content deltas (llama_cpp.server: one per token, no usage in streams); seekport's "
    "content deltas can be fewer than its tokens where a token's text is held back until the "
    "next (e.g. part of a UTF-8 character) and its delta is empty. *Output tok/s* "
    "= completion tokens of the cell ÷ its wall time; *tok per server CPU-s* = the same tokens ÷ "
    "utime+stime of the server process (all threads, `/proc/<pid>/stat`, 10 ms ticks) across the "
    "cell. Percentiles are nearest-rank; with 16–32 requests per cell, p99 is the slowest request. "
    "The load generator (raw asyncio HTTP/1.1, one connection per request) shares the 2 cores. "
    "Details: the docstring of `bench/engine_throughput.py`."
)


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for server in dict.fromkeys(c.server for c in cells):
        row = [c for c in cells if c.server == server]
        conc = [c.conc for c in row]
        left.plot(conc, [c.tok_s for c in row], marker="o", label=server)
        right.plot(conc, [c.ttft_ms(0.5) for c in row], marker="o", label=server)
    left.set(title="Aggregate output tokens/s", xlabel="concurrency", ylabel="tokens / s")
    right.set(title="TTFT p50", xlabel="concurrency", ylabel="ms (log scale)", yscale="log")
    for ax in (left, right):
        ax.set_xticks(CONCURRENCY)
        ax.grid(alpha=0.3)
        ax.legend()
    left.set_ylim(bottom=0)
    fig.suptitle(f"SmolLM2-135M Q4_1, 1 thread, {MAX_TOKENS} output tokens per request")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="max(2, c) requests per cell")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave the docs alone")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    parser.add_argument("--plot", type=Path, default=PLOT, help="PNG written beside the page")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of %(default)s; a subset only prints its rows",
    )
    parser.add_argument(
        "--concurrency",
        default=None,
        help=f"comma-separated levels (default {CONCURRENCY}, and {DEFAULT_LEVELS} for the "
        "default-config servers); other levels only print their rows",
    )
    args = parser.parse_args()
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {sorted(unknown)}")
    given = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency else None
    main_levels = given or CONCURRENCY
    default_levels = given or DEFAULT_LEVELS
    slots = default_slots()
    t0 = time.perf_counter()
    cells, binary = run(args.quick, servers, main_levels, default_levels)
    elapsed = time.perf_counter() - t0
    main_cells = [c for c in cells if c.server not in DEFAULT_SERVERS]
    default_cells = [c for c in cells if c.server in DEFAULT_SERVERS]
    write = []
    if set(SERVERS) - set(DEFAULT_SERVERS) <= set(servers) and main_levels == CONCURRENCY:
        section = render(main_cells, binary, args.quick, elapsed)
        print(section)
        write.append((section, START, END))
    elif main_cells:
        print(MAIN_HEAD)
        print("\n".join(main_row(c) for c in main_cells))
    if default_cells:
        section = render_defaults(default_cells, args.quick, elapsed, slots)
        print(section)
        if set(DEFAULT_SERVERS) <= set(servers) and default_levels == DEFAULT_LEVELS:
            write.append((section, DEFAULTS_START, DEFAULTS_END))
    if not args.no_docs:
        for section, start, end in write:
            write_section(args.docs, section, start, end)
        if any(start == START for _, start, _ in write):
            plot(main_cells, args.plot)
        if write:
            print(f"\nwrote {args.docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
