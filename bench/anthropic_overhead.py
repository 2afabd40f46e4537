"""Gateway CPU of an Anthropic Messages request against the chat route's, same upstream.

Issue 13 asks that an Anthropic request cost the gateway at most 1.5x the CPU of a chat request.
Method: ``bench/gateway_overhead.py``'s upstream, server and load generator (one chaos upstream
with 16-token answers, one ``seekport serve`` with only the remote model); the same prompt sent
as ``POST /v1/chat/completions`` and as ``POST /anthropic/v1/messages``, non-stream and stream,
at concurrency 16, in interleaved rounds (chat, anthropic, chat stream, anthropic stream, then
again) so a slow or busy moment of a shared host hits all four alike. Gateway CPU = utime +
stime of the server process across each run, divided by its requests.

Run: ``.venv/bin/python bench/anthropic_overhead.py [--rounds N] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.gateway_overhead as g  # noqa: E402
from tests.harness import run_chaos, run_server, write_config  # noqa: E402

PER_RUN = 400
CONCURRENCY = 16
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- anthropic_overhead:start -->", "<!-- anthropic_overhead:end -->"


def anthropic_request(port: int, key: str, stream: bool) -> bytes:
    body = orjson.dumps(
        {
            "model": g.MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": stream,
        }
    )
    head = [
        "POST /anthropic/v1/messages HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        f"x-api-key: {key}",
        "anthropic-version: 2023-06-01",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_chat_ok = g.body_ok


def body_ok(status: int, body: bytes, stream: bool) -> bool:
    """The load generator's check, taught the Anthropic endings."""
    if status == 200 and (b"event: message_stop" in body[-64:] or body.startswith(b'{"id":"msg_')):
        return True
    return _chat_ok(status, body, stream)


g.body_ok = body_ok


def measure(rounds: int) -> dict[tuple[str, bool], float]:
    """ms of gateway CPU per request for each (route, stream)."""
    with tempfile.TemporaryDirectory(prefix="seekport-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with run_chaos(tmp, "--tokens", str(g.TOKENS)) as chaos:
            config = write_config(
                tmp, [g.remote_model(chaos.url)], log_level="warning", access_log=False
            )
            with run_server(config) as server:
                requests = {
                    (route, stream): (
                        g.build_request(server.port, server.key, stream)
                        if route == "chat"
                        else anthropic_request(server.port, server.key, stream)
                    )
                    for stream in (False, True)
                    for route in ("chat", "anthropic")
                }
                for (_, stream), req in requests.items():  # warm-up
                    asyncio.run(g.run_load(server.port, req, stream, 200, 4))
                cpu = dict.fromkeys(requests, 0.0)
                done = dict.fromkeys(requests, 0)
                for _ in range(rounds):
                    for key, req in requests.items():
                        before = g.proc_cpu_s(server.proc.pid)
                        res = asyncio.run(
                            g.run_load(server.port, req, key[1], PER_RUN, CONCURRENCY)
                        )
                        if res.errors:
                            raise SystemExit(f"{key}: {res.errors} failed requests")
                        cpu[key] += g.proc_cpu_s(server.proc.pid) - before
                        done[key] += res.requests
                return {k: cpu[k] / done[k] * 1000 for k in requests}


def render(ms: dict[tuple[str, bool], float], rounds: int) -> str:
    rows = []
    for stream in (False, True):
        chat, anth = ms[("chat", stream)], ms[("anthropic", stream)]
        mode = "16-chunk stream" if stream else "non-stream"
        verdict = "ok" if anth <= 1.5 * chat else "over budget"
        rows.append(f"| {mode} | {chat:.3f} | {anth:.3f} | {anth / chat:.2f}x ({verdict}) |")
    return "\n".join(
        [
            START,
            "## Anthropic Messages route: gateway CPU against the chat route's",
            "",
            f"`bench/anthropic_overhead.py` at {g.revision()} on {g.machine()}: the same prompt "
            f"through `/v1/chat/completions` and `/anthropic/v1/messages` in front of one chaos "
            f"upstream, {rounds} interleaved rounds of {PER_RUN} requests per route and mode at "
            f"concurrency {CONCURRENCY}. Budget: at most 1.5x the chat route (issue 13).",
            "",
            "| mode | chat ms CPU/request | anthropic ms CPU/request | ratio |",
            "|---|---|---|---|",
            *rows,
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    section = render(measure(args.rounds), args.rounds)
    print(section)
    if not args.no_docs:
        g.write_section(DOCS, section, START, END)


if __name__ == "__main__":
    main()
