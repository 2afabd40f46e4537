"""The test suite's own upstream: an OpenAI/DeepSeek-compatible server that injects faults.

Run it as a child process (it imports nothing from the project; aiohttp serves the HTTP)::

    python tests/upstream.py --name primary --seed 1 --port-file /tmp/p.port
    python tests/upstream.py --port 8123 --latency-ms 50 --script error:503,ok

It binds 127.0.0.1 only. The first line on stdout is JSON naming the port
(``{"event": "listening", "port": ..., "pid": ..., "name": ..., "seed": ...}``); ``--port-file``
also gets the port, written atomically. SIGTERM/SIGINT or ``--max-runtime-s`` end it.

API routes (``/v1`` optional, as DeepSeek allows):

* ``POST /v1/chat/completions``: the answer is ``tok0 tok1 …`` (``tokens`` of them, cut by the
  request's ``max_tokens`` with ``finish_reason: "length"``); ``prompt_tokens`` is the word count
  of the messages. Streams send a role chunk, one chunk per token, a finish chunk, a usage-only
  chunk when ``stream_options.include_usage``, then ``data: [DONE]``.
* ``POST /v1/embeddings``: 8 floats per input from its SHA-256 (ok or error outcomes only).
* ``GET /v1/models``; ``GET /healthz`` (never faulty, never counted; it names the process id).
  Anything else is a 404 whose message names the method and path.

Each chat completion gets one outcome: the ``X-Chaos-Force`` request header, else the next item
of ``script``, else a draw from the seeded RNG over the ``*_rate`` settings:

=============  =======================================  ========================================
outcome        non-stream                               stream
=============  =======================================  ========================================
ok             200 + JSON                               the full event stream
error[:code]   that status (or one of ``error_codes``), OpenAI error body, ``Retry-After`` on
               429/503 when ``retry_after_s`` is set
timeout        never answers (until the client leaves or ``max_hang_s``)
reset          full Content-Length, half the body, then  ``stall_after_chunks`` content chunks,
               the connection is cut (``reset_mode``:   then the connection is cut
               ``rst`` = SO_LINGER 0, ``fin`` = close)
stall          as reset, then silence with the connection open (until the client leaves)
malformed      200 whose JSON is cut and garbled        one broken ``data:`` event at chunk K,
                                                        then the rest of a valid stream
=============  =======================================  ========================================

``reasoning_tokens`` puts ``think0 think1 …`` in ``reasoning_content`` before the answer (a
stream sends them as their own deltas first). ``latency_ms`` delays every outcome's first
byte, ``drip_ms`` spaces stream chunks and ``keepalives`` sends that many ``: keep-alive``
comments (``keepalive_ms`` apart) before the first event. ``require_key`` makes every API
route answer 401 without ``Authorization: Bearer <key>``.

Control routes (never faulty, never counted):

* ``GET /__chaos`` the settings; ``POST /__chaos`` a JSON object of settings to change (partial),
  plus ``reset`` (back to the start-up settings, script and seed), ``reset_stats`` and ``seed``;
  an invalid object is a 400 and changes nothing.
* ``GET /__stats`` the counters; ``POST /__reset`` zeroes them and the request log.
* ``GET /__requests?last=N`` the last requests, oldest first, each filed when its exchange ended:
  ``seq``, ``t``, ``path``, ``model``, ``stream``, ``planned``, ``outcome``, ``status``,
  ``chunks_sent``, ``client_closed``, ``request_id`` (its X-Request-ID), ``idempotency_key``,
  ``auth_sha256`` (first 16 hex digits of the SHA-256 of the Authorization header), ``body`` (the
  first ``record_body_bytes``) and ``body_sha256``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import random
import signal
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
OUTCOMES = ("ok", "error", "timeout", "reset", "stall", "malformed")
RATES = {
    "error_rate": "error",
    "timeout_rate": "timeout",
    "reset_rate": "reset",
    "stall_rate": "stall",
    "malformed_rate": "malformed",
}
RECENT_MAX = 1000
ERROR_KINDS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_balance"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    422: ("invalid_request_error", "invalid_parameters"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "gateway_timeout"),
}
MALFORMED_TAIL = b"\x00<<chaos-malformed>>"


# --------------------------------------------------------------------------- settings


class Invalid(ValueError):
    """A setting, script item or X-Chaos-Force value that cannot be used."""


def _number(lo: float, hi: float) -> Callable[[Any], float]:
    def convert(v: Any) -> float:
        if isinstance(v, bool):
            raise Invalid("expected a number")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise Invalid(f"expected a number, got {v!r}") from None
        if not lo <= f <= hi:
            raise Invalid(f"expected {lo:g}..{hi:g}, got {f:g}")
        return f

    return convert


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def convert(v: Any) -> int:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise Invalid(f"expected an integer, got {v!r}")
        try:
            i = int(v)
        except (TypeError, ValueError):
            raise Invalid(f"expected an integer, got {v!r}") from None
        if not lo <= i <= hi:
            raise Invalid(f"expected {lo}..{hi}, got {i}")
        return i

    return convert


def _optional_number(v: Any) -> float | None:
    return None if v is None or v == "" else _number(0, 86400)(v)


def _optional_text(v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise Invalid("expected a string or null")
    return v or None


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise Invalid("expected a non-empty string")
    return v


def _items(v: Any) -> list[Any]:
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, list):
        return v
    raise Invalid("expected a list or a comma-separated string")


def _codes(v: Any) -> list[int]:
    codes = [_integer(400, 599)(c) for c in _items(v)]
    if not codes:
        raise Invalid("expected at least one status")
    return codes


def _names(v: Any) -> list[str]:
    names = [_text(x) for x in _items(v)]
    if not names:
        raise Invalid("expected at least one name")
    return names


def _script(v: Any) -> list[str]:
    items = [str(x).strip().lower() for x in _items(v)]
    for item in items:
        parse_outcome(item)
    return items


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid("expected true or false")
    return v


def _reset_mode(v: Any) -> str:
    if v not in ("rst", "fin"):
        raise Invalid("expected 'rst' or 'fin'")
    return str(v)


# name: (start-up default, converter, help)
FIELDS: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "name": ("chaos", _text, "x-chaos-upstream header, fp_<name> fingerprint, chatcmpl-<name>-N"),
    "models": (["deepseek-chat", "deepseek-reasoner"], _names, "ids listed by /v1/models"),
    "tokens": (16, _integer(0, 1_000_000), "completion tokens per answer"),
    "reasoning_tokens": (
        0,
        _integer(0, 1_000_000),
        "reasoning_content tokens (think0 think1 …) before the answer, as DeepSeek's reasoner",
    ),
    "echo": (False, _flag, "answer with the last user message's text, 3 characters a token"),
    "latency_ms": (0.0, _number(0, 600_000), "delay before the first response byte"),
    "jitter_ms": (0.0, _number(0, 600_000), "plus a seeded uniform(0, jitter_ms)"),
    "drip_ms": (0.0, _number(0, 600_000), "delay between stream chunks"),
    "keepalives": (0, _integer(0, 10_000), "': keep-alive' comments before the first event"),
    "keepalive_ms": (100.0, _number(0, 600_000), "delay after each keep-alive comment"),
    "error_rate": (0.0, _number(0, 1), "probability of an error status"),
    "error_codes": ([500, 502, 503], _codes, "statuses drawn for error_rate / plain 'error'"),
    "retry_after_s": (None, _optional_number, "Retry-After on 429 and 503"),
    "timeout_rate": (0.0, _number(0, 1), "probability of never answering"),
    "reset_rate": (0.0, _number(0, 1), "probability of a cut connection"),
    "reset_mode": ("rst", _reset_mode, "rst (SO_LINGER 0) or fin (clean close mid-body)"),
    "stall_rate": (0.0, _number(0, 1), "probability of going silent mid-answer"),
    "malformed_rate": (0.0, _number(0, 1), "probability of a broken body / event"),
    "stall_after_chunks": (3, _integer(0, 1_000_000), "chunks before a stall/reset/bad event"),
    "max_hang_s": (300.0, _number(0.001, 86400), "longest a timeout or stall holds on"),
    "script": ([], _script, "outcomes used in order before any draw, e.g. error:503,ok"),
    "require_key": (None, _optional_text, "the only accepted Authorization: Bearer <key>"),
    "record_body_bytes": (4096, _integer(0, 1 << 20), "bytes of each body kept in /__requests"),
}
DEFAULTS = {k: default for k, (default, _, _) in FIELDS.items()}


def updated(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` applied and checked (raises Invalid, changes nothing)."""
    new = dict(current)
    for key, value in changes.items():
        if key not in FIELDS:
            raise Invalid(f"unknown setting {key!r}; known: {', '.join(sorted(FIELDS))}")
        try:
            new[key] = FIELDS[key][1](value)
        except Invalid as exc:
            raise Invalid(f"{key}: {exc}") from None
    total = sum(new[k] for k in RATES)
    if total > 1 + 1e-9:
        raise Invalid(f"the rates {', '.join(RATES)} add up to {total:g} > 1")
    return new


def parse_outcome(text: str) -> tuple[str, int | None]:
    """``ok`` | ``error`` | ``error:503`` | ``503`` | ``timeout`` | ``reset`` | ``stall`` |
    ``malformed`` as (kind, status)."""
    text = str(text).strip().lower()
    if text.isdigit():
        return "error", _integer(400, 599)(text)
    kind, _, code = text.partition(":")
    if kind not in OUTCOMES:
        raise Invalid(f"unknown outcome {text!r}; use {', '.join(OUTCOMES)} or error:<status>")
    if code and kind != "error":
        raise Invalid(f"{text!r}: only error takes a status")
    return kind, _integer(400, 599)(code) if code else None


# --------------------------------------------------------------------------- answers


def _words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_words(p.get("text") if isinstance(p, dict) else p) for p in content)
    return 0


@dataclass
class Answer:
    id: str
    model: str
    fingerprint: str
    created: int
    tokens: list[str]  # token i > 0 carries its leading space: they concatenate to the text
    finish: str
    prompt_tokens: int
    reasoning: list[str] = field(default_factory=list)  # before the answer

    @property
    def usage(self) -> dict[str, int]:
        n = len(self.tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": self.prompt_tokens + n,
        }

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.tokens)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}
        return {**self._envelope("chat.completion", [choice]), "usage": self.usage}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope("chat.completion.chunk", [choice])

    def usage_chunk(self) -> dict[str, Any]:
        return {**self._envelope("chat.completion.chunk", []), "usage": self.usage}

    def _envelope(self, kind: str, choices: list[Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }


def sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sha16(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


# --------------------------------------------------------------------------- the server


@dataclass
class Exchange:
    """One API request while it is served."""

    request: web.Request
    record: dict[str, Any]
    response: web.StreamResponse | None = None
    holding: tuple[str, int | None] | None = None  # (outcome, status) while waiting for the client
    done: bool = False


class Upstream:
    def __init__(self, settings: dict[str, Any], seed: int) -> None:
        self.start_settings = dict(settings)
        self.start_seed = seed
        self.settings = dict(settings)
        self.seed = seed
        self.rng = random.Random(seed)
        self.script: deque[str] = deque(settings["script"])
        self.started = time.monotonic()
        self.seq = 0
        self.in_flight = 0
        self.zero()

    # -- state

    def zero(self) -> None:
        """Zero the counters and the request log (the in-flight gauge stays true)."""
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self.requests_total = 0
        self.stream_requests = 0
        self.max_in_flight = self.in_flight
        self.by_outcome: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.tokens_out = 0
        self.client_closed = 0

    def change(self, changes: dict[str, Any]) -> list[str]:
        """Apply a POST /__chaos object: all of it, or nothing (raises Invalid)."""
        changes = dict(changes)
        reset = changes.pop("reset", False)
        reset_stats = changes.pop("reset_stats", False)
        seed = changes.pop("seed", None)
        for flag, value in (("reset", reset), ("reset_stats", reset_stats)):
            if not isinstance(value, bool):
                raise Invalid(f"{flag}: expected true or false")
        base = self.start_settings if reset else self.settings
        new = updated(base, changes)
        new_seed = self.start_seed if reset else self.seed
        if seed is not None:
            new_seed = _integer(0, 2**63 - 1)(seed)
        self.settings = new
        if reset or "script" in changes:
            self.script = deque(new["script"])
        if reset or seed is not None:
            self.seed = new_seed
            self.rng = random.Random(new_seed)
        if reset_stats:
            self.zero()
        flags = [f for f, on in (("reset", reset), ("reset_stats", reset_stats)) if on]
        return flags + (["seed"] if seed is not None else []) + sorted(changes)

    def public_settings(self) -> dict[str, Any]:
        shown = dict(self.settings)
        shown["require_key"] = "<set>" if shown["require_key"] else None
        return {**shown, "script_remaining": list(self.script), "seed": self.seed}

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.settings["name"],
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests_total": self.requests_total,
            "stream_requests": self.stream_requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_outcome": dict(self.by_outcome),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "tokens_out": self.tokens_out,
            "client_closed": self.client_closed,
            "script_remaining": len(self.script),
        }

    # -- routing

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        r = app.router
        for prefix in ("/v1", ""):
            r.add_post(prefix + "/chat/completions", self.chat)
            r.add_post(prefix + "/embeddings", self.embeddings)
            r.add_get(prefix + "/models", self.models)
        r.add_get("/healthz", self.healthz)
        r.add_get("/health", self.healthz)
        r.add_get("/__chaos", self.get_settings)
        r.add_post("/__chaos", self.post_settings)
        r.add_get("/__stats", self.get_stats)
        r.add_get("/__requests", self.get_requests)
        r.add_post("/__reset", self.post_reset)
        r.add_route("*", "/{tail:.*}", self.no_route)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "name": self.settings["name"], "pid": os.getpid()}
        )

    async def no_route(self, request: web.Request) -> web.Response:
        return self.error_response(request, 404, f"no route for {request.method} {request.path}")

    # -- control

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.public_settings())

    async def post_settings(self, request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read() or b"{}")
            if not isinstance(changes, dict):
                raise Invalid("expected a JSON object")
            applied = self.change(changes)
        except ValueError as exc:  # Invalid, or JSON that does not parse
            return self.error_response(request, 400, f"chaos: {exc}")
        return web.json_response({"applied": applied, "config": self.public_settings()})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def get_requests(self, request: web.Request) -> web.Response:
        items = list(self.recent)
        try:
            last = int(request.query.get("last", "0"))
        except ValueError:
            last = 0
        if last > 0:
            items = items[-last:]
        return web.json_response({"count": len(items), "requests": items})

    async def post_reset(self, request: web.Request) -> web.Response:
        self.zero()
        return web.json_response({"reset": True})

    # -- API requests: bookkeeping

    async def models(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._models)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._chat)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._embeddings)

    async def _embeddings(self, ex: Exchange) -> web.StreamResponse:
        """8 floats per input from the SHA-256 of its text (the same text, the same vector),
        L2-normalised; ``prompt_tokens`` is the word count. Outcomes: ok or error only."""
        request, record = ex.request, ex.record
        raw = await request.read()
        if self.settings["record_body_bytes"] and raw:
            record["body"] = raw[: self.settings["record_body_bytes"]].decode("utf-8", "replace")
        if not self.authorized(ex):
            return self.refuse(ex, 401, "chaos: invalid or missing API key", "unauthorized")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        inputs = body.get("input") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return self.refuse(ex, 400, "chaos: 'input' must be a string or a list", "bad_request")
        assert isinstance(body, dict)
        record.update(model=body.get("model"))
        try:
            kind, code = self.decide(request)
        except Invalid as exc:
            return self.refuse(ex, 400, f"chaos: bad X-Chaos-Force: {exc}", "bad_request")
        record["planned"] = kind if code is None else f"{kind}:{code}"
        if kind == "error":
            status = code or self.rng.choice(self.settings["error_codes"])
            return self.refuse(ex, status, f"chaos: injected {status}", "error")
        data, words = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            words += len(text.split())
            raw8 = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:8]]
            norm = math.sqrt(sum(x * x for x in raw8)) or 1.0
            vec = [x / norm for x in raw8]
            if body.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(struct.pack("<8f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        answer = {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        self.finish(ex, "ok", 200)
        return web.json_response(answer, headers=self.headers(request))

    async def serve(
        self,
        request: web.Request,
        handler: Callable[[Exchange], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Count the request, run ``handler`` and file the request's record when it ends.

        The server runs with handler cancellation: a client that hangs up cancels the handler,
        which is how a timeout, a stall or a slow stream learns that the client left."""
        self.requests_total += 1
        self.by_path[request.path] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        auth = request.headers.get("Authorization")
        record: dict[str, Any] = {
            "seq": self.seq,
            "t": round(time.time(), 3),
            "path": request.path,
            "model": None,
            "stream": False,
            "planned": None,
            "outcome": None,
            "status": None,
            "chunks_sent": 0,
            "client_closed": False,
            "request_id": request.headers.get("X-Request-ID"),
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "auth_sha256": sha16(auth) if auth else None,
        }
        self.seq += 1
        ex = Exchange(request, record)
        try:
            return await handler(ex)
        except asyncio.CancelledError:
            self.client_left(ex)
            raise
        except ConnectionError:
            self.client_left(ex)
            return ex.response or web.Response(status=499)  # nothing more reaches the client
        finally:
            self.in_flight -= 1
            if not ex.done:  # a bug here: make it visible in the record
                self.finish(ex, "internal_error", 500)
            self.recent.append(record)

    def finish(
        self, ex: Exchange, outcome: str, status: int | None, *, client_closed: bool = False
    ) -> None:
        if ex.done:
            return
        ex.done = True
        ex.record.update(outcome=outcome, status=status, client_closed=client_closed)
        self.by_outcome[outcome] += 1
        if status is not None:
            self.by_status[status] += 1
        if client_closed:
            self.client_closed += 1

    def client_left(self, ex: Exchange) -> None:
        if ex.holding is not None:
            outcome, status = ex.holding
        else:
            outcome = "client_closed"
            status = 200 if ex.response is not None and ex.response.prepared else None
        self.finish(ex, outcome, status, client_closed=True)

    # -- responses

    def headers(self, request: web.Request) -> dict[str, str]:
        h = {"x-chaos-upstream": self.settings["name"]}
        rid = request.headers.get("X-Request-ID")
        if rid:
            h["x-request-id"] = rid[:200]
        return h

    def error_response(self, request: web.Request, status: int, message: str) -> web.Response:
        kind, code = ERROR_KINDS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", str(status))
        )
        headers = self.headers(request)
        wait = self.settings["retry_after_s"]
        if wait is not None and status in (429, 503):
            headers["Retry-After"] = str(int(wait)) if float(wait).is_integer() else str(wait)
        error = {"message": message, "type": kind, "param": None, "code": code}
        return web.json_response({"error": error}, status=status, headers=headers)

    def refuse(self, ex: Exchange, status: int, message: str, outcome: str) -> web.Response:
        self.finish(ex, outcome, status)
        return self.error_response(ex.request, status, message)

    def authorized(self, ex: Exchange) -> bool:
        key = self.settings["require_key"]
        return not key or ex.request.headers.get("Authorization") == f"Bearer {key}"

    async def _models(self, ex: Exchange) -> web.StreamResponse:
        if not self.authorized(ex):
            return self.refuse(ex, 401, "chaos: invalid or missing API key", "unauthorized")
        owner = self.settings["name"]
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": owner}
            for m in self.settings["models"]
        ]
        self.finish(ex, "ok", 200)
        return web.json_response({"object": "list", "data": data}, headers=self.headers(ex.request))

    async def _chat(self, ex: Exchange) -> web.StreamResponse:
        request, record, s = ex.request, ex.record, self.settings
        raw = await request.read()
        if s["record_body_bytes"] and raw:
            record["body"] = raw[: s["record_body_bytes"]].decode("utf-8", "replace")
            record["body_sha256"] = sha16(raw)
        if not self.authorized(ex):
            return self.refuse(ex, 401, "chaos: invalid or missing API key", "unauthorized")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            message = "chaos: the body must be a JSON object with a 'messages' list"
            return self.refuse(ex, 400, message, "bad_request")
        model = body["model"] if isinstance(body.get("model"), str) else s["models"][0]
        stream = bool(body.get("stream"))
        record.update(model=model, stream=stream)
        self.by_model[model] += 1
        self.stream_requests += stream
        try:
            kind, code = self.decide(request)
        except Invalid as exc:
            return self.refuse(ex, 400, f"chaos: bad X-Chaos-Force: {exc}", "bad_request")
        record["planned"] = kind if code is None else f"{kind}:{code}"

        delay = s["latency_ms"] + (self.rng.uniform(0, s["jitter_ms"]) if s["jitter_ms"] else 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if kind == "error":
            status = code or self.rng.choice(s["error_codes"])
            return self.refuse(ex, status, f"chaos: injected {status}", "error")
        if kind == "timeout":
            return await self.hold(ex, "timeout", None)
        answer = self.answer(body, model, record["seq"])
        if stream:
            return await self.stream(ex, body, answer, kind)
        return await self.plain(ex, answer, kind)

    def decide(self, request: web.Request) -> tuple[str, int | None]:
        forced = request.headers.get("X-Chaos-Force")
        if forced:
            return parse_outcome(forced)
        if self.script:
            return parse_outcome(self.script.popleft())
        draw = self.rng.random()
        edge = 0.0
        for rate, kind in RATES.items():
            edge += self.settings[rate]
            if draw < edge:
                return kind, None
        return "ok", None

    def answer(self, body: dict[str, Any], model: str, seq: int) -> Answer:
        n = self.settings["tokens"]
        finish = "stop"
        if self.settings["echo"]:
            return self.echo(body, model, seq)
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < n:
            n, finish = limit, "length"
        prompt = sum(_words(m.get("content")) for m in body["messages"] if isinstance(m, dict))
        name = self.settings["name"]
        return Answer(
            id=f"chatcmpl-{name}-{seq}",
            model=model,
            fingerprint=f"fp_{name}",
            created=int(time.time()),
            tokens=[f"tok{i}" if i == 0 else f" tok{i}" for i in range(n)],
            finish=finish,
            prompt_tokens=max(1, prompt),
            reasoning=[
                f"think{i}" if i == 0 else f" think{i}"
                for i in range(self.settings["reasoning_tokens"])
            ],
        )

    def echo(self, body: dict[str, Any], model: str, seq: int) -> Answer:
        """The last user message again, cut into 3-character tokens (so that any word or
        number in it is split across stream chunks)."""
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        text = users[-1].get("content") if users else ""
        text = text if isinstance(text, str) else ""
        tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
        name = self.settings["name"]
        return Answer(
            id=f"chatcmpl-{name}-{seq}",
            model=model,
            fingerprint=f"fp_{name}",
            created=int(time.time()),
            tokens=tokens,
            finish="stop",
            prompt_tokens=max(1, _words(text)),
        )

    async def plain(self, ex: Exchange, answer: Answer, kind: str) -> web.StreamResponse:
        full = dumps(answer.completion())
        headers = self.headers(ex.request)
        if kind in ("ok", "malformed"):
            self.tokens_out += len(answer.tokens)
            if kind == "malformed":  # a complete HTTP message with a broken JSON body
                full = full[: len(full) // 2] + MALFORMED_TAIL
            self.finish(ex, kind, 200)
            return web.Response(body=full, content_type="application/json", headers=headers)
        # reset / stall: announce the whole body, send half of it
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.content_length = len(full)
        response.force_close()
        ex.response = response
        await response.prepare(ex.request)
        await response.write(full[: len(full) // 2])
        return await self.break_off(ex, kind)

    async def stream(
        self, ex: Exchange, body: dict[str, Any], answer: Answer, kind: str
    ) -> web.StreamResponse:
        s = self.settings
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        after, drip = s["stall_after_chunks"], s["drip_ms"] / 1000
        broken = b'data: {"id":"' + answer.id.encode() + b'","choices":[{"delta":{"content":\n\n'
        response = web.StreamResponse(headers=self.headers(ex.request))
        response.content_type = "text/event-stream"
        response.headers["Cache-Control"] = "no-cache"
        response.enable_chunked_encoding()
        ex.response = response
        await response.prepare(ex.request)
        for _ in range(s["keepalives"]):
            await response.write(b": keep-alive\n\n")
            await asyncio.sleep(s["keepalive_ms"] / 1000)
        await response.write(sse(answer.chunk({"role": "assistant", "content": ""})))
        if answer.reasoning:
            await response.write(
                b"".join(sse(answer.chunk({"reasoning_content": t})) for t in answer.reasoning)
            )

        pending: list[bytes] = []
        sent = 0

        async def flush() -> None:
            nonlocal sent
            if pending:
                await response.write(b"".join(pending))
                n = sum(1 for p in pending if p is not broken)
                sent += n
                self.tokens_out += n
                ex.record["chunks_sent"] = sent
                pending.clear()

        for i, token in enumerate(answer.tokens):
            if i == after and kind in ("stall", "reset"):
                break
            if drip and i:
                await asyncio.sleep(drip)
            if i == after and kind == "malformed":
                pending.append(broken)
            pending.append(sse(answer.chunk({"content": token})))
            if drip or len(pending) >= 64:  # without drip, big writes: events split across reads
                await flush()
        await flush()
        if kind in ("stall", "reset"):
            return await self.break_off(ex, kind)
        if kind == "malformed" and after >= len(answer.tokens):
            pending.append(broken)
        pending.append(sse(answer.chunk({}, answer.finish)))
        if include_usage:
            pending.append(sse(answer.usage_chunk()))
        pending.append(sse("[DONE]"))
        await response.write(b"".join(pending))
        self.finish(ex, kind, 200)
        await response.write_eof()
        return response

    async def break_off(self, ex: Exchange, kind: str) -> web.StreamResponse:
        """After part of an answer: cut the connection (reset) or go silent (stall)."""
        transport = ex.request.transport
        while transport is not None and transport.get_write_buffer_size():
            await asyncio.sleep(0.005)  # what was sent must be on the wire before the cut
        if kind == "stall":
            return await self.hold(ex, "stall", 200)
        self.finish(ex, "reset", 200)
        await asyncio.sleep(0.02)  # let the client read it: an RST discards unread data
        self.cut(ex, self.settings["reset_mode"])
        assert ex.response is not None
        return ex.response

    async def hold(self, ex: Exchange, outcome: str, status: int | None) -> web.StreamResponse:
        """Say nothing until the client leaves (the handler is cancelled: ``client_left``
        files ``outcome`` with client_closed) or until max_hang_s, then drop the connection."""
        ex.holding = (outcome, status)
        await asyncio.sleep(self.settings["max_hang_s"])
        self.finish(ex, outcome, status)
        self.cut(ex, "rst")
        return ex.response or web.Response(status=504)  # never reaches the client

    def cut(self, ex: Exchange, mode: str) -> None:
        transport = ex.request.transport
        if transport is None:
            return
        if mode == "fin":
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    p.add_argument("--port-file", help="also write the port to this file")
    p.add_argument("--seed", type=int, help="RNG seed (default: random, printed at start)")
    p.add_argument("--max-runtime-s", type=float, default=0, help="exit after this (0: never)")
    for key, (default, _, text) in FIELDS.items():
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        p.add_argument("--" + key.replace("_", "-"), dest=key, help=f"{text} ({shown})")
    return p


async def run(args: argparse.Namespace, settings: dict[str, Any], seed: int) -> int:
    upstream = Upstream(settings, seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, args.port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        print(f"upstream: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.setblocking(False)
    port = int(sock.getsockname()[1])
    runner = web.AppRunner(
        upstream.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.2
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    hello = {"event": "listening", "host": HOST, "port": port, "pid": os.getpid()}
    print(json.dumps({**hello, "name": settings["name"], "seed": seed}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.max_runtime_s or None)
    await runner.cleanup()
    print(json.dumps({"event": "stopped", "port": port, "stats": upstream.stats()}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in FIELDS and v is not None}
    try:
        settings = updated(DEFAULTS, given)
    except Invalid as exc:
        print(f"upstream: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return asyncio.run(run(args, settings, seed))


if __name__ == "__main__":
    sys.exit(main())
