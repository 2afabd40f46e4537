"""OpenAICompatBackend against an in-process aiohttp upstream (a fake of the network only):
typed events with the upstream's own bytes, the two rewrites, keep-alives, broken events,
malformed usage (502), error statuses kept per attempt, and the in-flight bound."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from seekport.config import OpenAIModelConfig
from seekport.errors import (
    OverloadedError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.openai_compat import OpenAICompatBackend
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    KeepAlive,
    ReasoningDelta,
    RoleDelta,
    UsageReport,
)
from seekport.telemetry.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "up-1", "model": "up-model", "choices": choices, **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def sse_handler(*parts: bytes) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for p in parts:
            await resp.write(p)
        return resp

    return handle


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[OpenAICompatBackend]]]:
    servers: list[TestServer] = []
    backends: list[OpenAICompatBackend] = []

    async def make(handler: Handler, **cfg: Any) -> OpenAICompatBackend:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        model = OpenAIModelConfig(
            name="public",
            backend="openai",
            base_url=f"http://127.0.0.1:{server.port}/v1",
            upstream_model="up-model",
            **cfg,
        )
        backend = OpenAICompatBackend(model, Metrics())
        await backend.start()
        backends.append(backend)
        return backend

    yield make
    for b in backends:
        await b.aclose()
    for s in servers:
        await s.close()


def call(stream: bool) -> BackendCall:
    body: dict[str, Any] = {
        "model": "public",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    req = ChatCompletionRequest.model_validate(body)
    return BackendCall("chat", "public", req, body, "req_1", stream=stream)


async def collect(backend: OpenAICompatBackend, c: BackendCall) -> list[Event]:
    return [ev async for ev in await backend.generate(c)]


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def test_stream_events_carry_upstream_bytes_with_model_and_reasoning_rewritten(
    upstream: Any,
) -> None:
    backend = await upstream(
        sse_handler(
            b": keep-alive\n\n",
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning": "think"}),
            b"data: {broken\n\n",
            chunk({"content": "你好"}),
            chunk({}, "stop"),
            chunk(None, usage=USAGE),
            b"data: [DONE]\n\n",
        )
    )
    events = await collect(backend, call(True))
    kinds = [type(e) for e in events]
    assert kinds == [KeepAlive, RoleDelta, ReasoningDelta, ContentDelta, Finish, UsageReport]
    assert events[0].raw is None  # our own keep-alive, not the upstream's bytes
    sent = b"".join(e.raw for e in events[1:5] if e.raw)  # what passthrough writes
    raw = [orjson.loads(ev[6:]) for ev in sent.split(b"\n\n") if ev]
    assert len(raw) == 4  # role, reasoning, content, finish: the broken event is dropped
    assert {r["model"] for r in raw} == {"public"}  # the upstream id never reaches clients
    assert raw[1]["choices"][0]["delta"] == {"reasoning_content": "think"}
    usage_raw = events[5].raw
    assert usage_raw is not None and b'"usage"' in usage_raw  # its own bytes: droppable
    assert isinstance(events[2], ReasoningDelta) and events[2].text == "think"
    assert isinstance(events[3], ContentDelta) and events[3].text == "你好"
    assert isinstance(events[5], UsageReport) and events[5].usage.total_tokens == 5


async def test_a_stream_without_done_is_an_upstream_error(upstream: Any) -> None:
    backend = await upstream(sse_handler(chunk({"content": "a"})))
    with pytest.raises(UpstreamError, match="without \\[DONE\\]"):
        await collect(backend, call(True))


@pytest.mark.parametrize("usage", [{"prompt_tokens": "many"}, "lots", {"total_tokens": -1}])
async def test_malformed_usage_is_a_502_not_a_500(upstream: Any, usage: object) -> None:
    backend = await upstream(
        sse_handler(chunk({}, "stop"), chunk(None, usage=usage), b"data: [DONE]\n\n")
    )
    with pytest.raises(UpstreamError, match="malformed usage") as exc:
        await collect(backend, call(True))
    assert exc.value.status_code == 502


async def test_non_stream_body_becomes_events_with_the_body_as_raw(upstream: Any) -> None:
    body = {
        "id": "up-1",
        "model": "up-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": USAGE,
    }

    async def handle(_r: web.Request) -> web.Response:
        return web.json_response(body)

    backend = await upstream(handle)
    events = await collect(backend, call(False))
    assert [type(e).__name__ for e in events] == [
        "RoleDelta",
        "ContentDelta",
        "ToolCallDelta",
        "Finish",
        "UsageReport",
    ]
    assert events[0].raw is not None and orjson.loads(events[0].raw)["model"] == "public"
    assert all(e.raw == b"" for e in events[1:])


async def test_several_choices_become_events_tagged_with_their_index(upstream: Any) -> None:
    """n > 1 upstream answers: every choice of a chunk or body is read, not just the first."""

    def two(delta0: dict[str, Any], delta1: dict[str, Any], finish: str | None = None) -> bytes:
        choices = [
            {"index": 0, "delta": delta0, "finish_reason": finish},
            {"index": 1, "delta": delta1, "finish_reason": finish},
        ]
        body = {"id": "up-1", "model": "up-model", "choices": choices}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    backend = await upstream(
        sse_handler(
            two({"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}),
            chunk({"content": "c"}),
            two({}, {}, "stop"),
            chunk(None, usage=USAGE),
            b"data: [DONE]\n\n",
        )
    )
    events = await collect(backend, call(True))
    text = {0: "", 1: ""}
    for e in events:
        if isinstance(e, ContentDelta):
            text[e.choice] += e.text
    assert text == {0: "ac", 1: "b"}
    assert sorted(e.choice for e in events if isinstance(e, RoleDelta)) == [0, 1]
    assert sorted(e.choice for e in events if isinstance(e, Finish)) == [0, 1]


async def test_error_status_maps_with_retry_after_and_is_kept_on_the_call(upstream: Any) -> None:
    async def handle(_r: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "slow down", "type": "rate_limit"}},
            status=429,
            headers={"retry-after": "7"},
        )

    backend = await upstream(handle)
    c = call(False)
    with pytest.raises(UpstreamStatusError) as exc:
        await backend.generate(c)
    assert (exc.value.status_code, exc.value.retry_after) == (429, 7.0)
    assert c.stats.upstream_status == 429


async def test_calls_beyond_connections_plus_waiting_are_refused(upstream: Any) -> None:
    import asyncio

    gate = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        await gate.wait()
        return await sse_handler(chunk({}, "stop"), b"data: [DONE]\n\n")(request)

    backend = await upstream(handle, max_connections=1, max_waiting=1)
    first = asyncio.ensure_future(backend.generate(call(True)))
    second = asyncio.ensure_future(backend.generate(call(True)))
    await asyncio.sleep(0.2)
    with pytest.raises(OverloadedError):
        await backend.generate(call(True))
    gate.set()
    for fut in (first, second):
        assert [type(e) for e in [e async for e in await fut]] == [Finish]


async def test_a_call_waits_for_a_pooled_connection_only_so_long(upstream: Any) -> None:
    import asyncio
    import time

    gate = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        await gate.wait()
        return await sse_handler(chunk({}, "stop"), b"data: [DONE]\n\n")(request)

    backend = await upstream(handle, max_connections=1, max_waiting=4, pool_timeout_s=0.3)
    holder = asyncio.ensure_future(backend.generate(call(True)))  # takes the one connection
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await backend.generate(call(True))
    assert time.monotonic() - t0 < 2
    gate.set()
    assert [type(e) async for e in await holder] == [Finish]


async def test_a_stream_past_its_total_deadline_ends_with_a_timeout(upstream: Any) -> None:
    import asyncio

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(100):  # 10 s in all, a byte every 0.1 s: never idle past read_timeout
            await resp.write(chunk({"content": f"t{i} "}))
            await asyncio.sleep(0.1)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    backend = await upstream(drip, total_timeout_s=0.6, read_timeout_s=5)
    got: list[Event] = []
    with pytest.raises(UpstreamTimeoutError, match="total deadline"):
        async for ev in await backend.generate(call(True)):
            got.append(ev)
    assert 2 <= len(got) < 20  # cut at the deadline, not at the end


async def test_an_answer_dropped_before_its_first_event_frees_its_connection(
    upstream: Any,
) -> None:
    backend = await upstream(sse_handler(chunk({}, "stop"), b"data: [DONE]\n\n"), max_waiting=0)
    for _ in range(3):  # max_connections 256 + 0 waiting: a leak would show as in flight
        events = await backend.generate(call(True))
        assert backend._in_flight == 1
        await events.aclose()  # never iterated (the client left before the first byte)
        assert backend._in_flight == 0
