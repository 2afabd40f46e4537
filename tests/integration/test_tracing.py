"""OpenTelemetry tracing, in process with the SDK's in-memory exporter: one trace per request,
its SERVER span named after the route with the answer's GenAI attributes, and a child span for
each step (auth → limits → cache → route → the upstream attempt → accounting); a cache hit has
no upstream span; off by default, nothing is traced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from seekport.api import create_app
from seekport.config import load_settings
from seekport.telemetry import tracing
from tests.harness import Chaos

BODY = {
    "model": "deepseek-chat",
    "messages": [{"role": "user", "content": "trace me"}],
    "temperature": 0,
    "max_tokens": 8,
}


async def served(
    tmp_path: Path, chaos: Chaos, exporter: InMemorySpanExporter | None, enabled: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "models": [{"name": "deepseek-chat", "backend": "openai", "base_url": chaos.url}],
            "routing": {"max_retries": 0},
            "cache": {"enabled": True},
            "tracing": {"enabled": enabled},
        }
    )
    app = create_app(settings, span_exporter=exporter)
    async with app.router.lifespan_context(app):
        _record, key = await app.state.services.keys.create("tracing", "superadmin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, key


@pytest.fixture
async def traced(
    tmp_path: Path, fresh_chaos: Chaos
) -> AsyncIterator[tuple[httpx.AsyncClient, str, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    async for client, key in served(tmp_path, fresh_chaos, exporter, enabled=True):
        yield client, key, exporter
    assert not tracing.enabled()  # stopped with the app


def by_trace(spans: tuple[ReadableSpan, ...]) -> dict[int, list[ReadableSpan]]:
    out: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        assert s.context is not None
        out.setdefault(s.context.trace_id, []).append(s)
    return out


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_request_is_one_trace_with_a_span_per_step(
    traced: tuple[httpx.AsyncClient, str, InMemorySpanExporter],
) -> None:
    client, key, exporter = traced
    r = await client.post(
        "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 200, r.text
    traces = by_trace(exporter.get_finished_spans())
    assert len(traces) == 1
    spans = next(iter(traces.values()))
    root = next(s for s in spans if s.parent is None)
    assert root.name == "chat.completions" and root.kind.name == "SERVER"
    a = attrs(root)
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "deepseek-chat"
    usage = r.json()["usage"]
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["gen_ai.response.finish_reasons"] == (r.json()["choices"][0]["finish_reason"],)
    names = [s.name for s in sorted(spans, key=lambda s: s.start_time or 0)]
    assert names == [
        "chat.completions",
        "seekport.auth",
        "seekport.limits",
        "seekport.cache",
        "seekport.route",
        "chat deepseek-chat",
        "seekport.accounting",
    ]
    assert all(s.parent is not None and s.parent.span_id for s in spans if s is not root)
    upstream = next(s for s in spans if s.name == "chat deepseek-chat")
    assert upstream.kind.name == "CLIENT" and upstream.parent is not None
    route = next(s for s in spans if s.name == "seekport.route")
    assert route.context is not None and upstream.parent.span_id == route.context.span_id
    u = attrs(upstream)
    assert u["gen_ai.operation.name"] == "chat" and u["gen_ai.request.model"] == "deepseek-chat"
    assert u["gen_ai.request.max_tokens"] == 8 and u["gen_ai.request.temperature"] == 0.0
    assert u["gen_ai.provider.name"] == "openai" and u["seekport.deployment"]
    # the same request again is a cache hit: no route, no upstream
    exporter.clear()
    again = await client.post(
        "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert again.headers["x-cache"] == "hit"
    spans = list(exporter.get_finished_spans())
    assert {s.name for s in spans} == {
        "chat.completions",
        "seekport.auth",
        "seekport.limits",
        "seekport.cache",
        "seekport.accounting",
    }
    root = next(s for s in spans if s.parent is None)
    assert attrs(root)["seekport.cache"] == "hit"


async def test_an_upstream_failure_is_an_error_span(
    traced: tuple[httpx.AsyncClient, str, InMemorySpanExporter], fresh_chaos: Chaos
) -> None:
    client, key, exporter = traced
    fresh_chaos.control(error_rate=1.0, error_codes=[500])
    try:
        r = await client.post(
            "/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        )
    finally:
        fresh_chaos.control(reset=True)
    assert r.status_code >= 500
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    assert root.status.status_code.name == "ERROR"
    assert attrs(root)["http.response.status_code"] == r.status_code
    upstream = next(s for s in spans if s.name == "chat deepseek-chat")
    assert upstream.status.status_code.name == "ERROR" and upstream.events  # the exception


async def test_off_by_default_nothing_is_traced(tmp_path: Path, fresh_chaos: Chaos) -> None:
    exporter = InMemorySpanExporter()
    async for client, key in served(tmp_path, fresh_chaos, exporter, enabled=False):
        assert not tracing.enabled()
        r = await client.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200
    assert exporter.get_finished_spans() == ()
