"""OpenTelemetry spans of a request, off by default (``tracing.enabled``).

A request is one SERVER span named after its route (``chat.completions``), with a child span
for each step the gateway takes: ``seekport.auth``, ``seekport.limits`` (admission and budget
reservations), ``seekport.cache`` (the lookup), ``seekport.route`` (picking deployments,
retries), one CLIENT span per upstream or engine attempt (``chat MODEL``, with the GenAI
semantic conventions' ``gen_ai.*`` attributes), and ``seekport.accounting`` (the usage
record's commit). The request span gets the answer's ``gen_ai.usage.*``, response model and
finish reasons when it ends.

The spans are the OpenTelemetry SDK's, exported by its batch processor to an OTLP/HTTP
endpoint (or to the exporter a test gives). Off, ``span`` is a shared null context and
``request_span`` returns None: a check of one module global per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from seekport.config.tracing import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

_NULL = contextlib.nullcontext()


class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


_on = _State()  # the process's tracer while tracing is on


def start(config: TracingConfig, exporter: SpanExporter | None = None) -> None:
    """Trace from now on, when the config says so (``exporter``: instead of OTLP/HTTP)."""
    if not config.enabled:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(config.otlp_endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _on.provider = provider
    _on.tracer = provider.get_tracer("seekport")


def stop() -> None:
    """Export what is left and stop tracing."""
    if _on.provider is not None:
        _on.provider.shutdown()
    _on.tracer = _on.provider = None


def enabled() -> bool:
    return _on.tracer is not None


def request_span(route: str) -> Span | None:
    """A request's SERVER span, started (the caller ends it), or None when off."""
    tracer = _on.tracer
    if tracer is None:
        return None
    from opentelemetry.trace import SpanKind

    return tracer.start_span(route, kind=SpanKind.SERVER, attributes={"http.route": route})


@contextlib.contextmanager
def _child(name: str, parent: Span | None, kind: Any, attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry import trace

    tracer = _on.tracer
    assert tracer is not None
    context = trace.set_span_in_context(parent) if parent is not None else None
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes
    ) as span:
        yield span


def span(
    name: str, parent: Span | None = None, *, client: bool = False, **attributes: Any
) -> contextlib.AbstractContextManager[Any]:
    """A child span of ``parent`` (or of the current span), or a null context when off."""
    if _on.tracer is None:
        return _NULL
    from opentelemetry.trace import SpanKind

    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    clean = {k: v for k, v in attributes.items() if v is not None}
    return _child(name, parent, kind, clean)


def current(span_: Span | None) -> contextlib.AbstractContextManager[Any]:
    """Make ``span_`` the parent of the spans started inside (a null context without one)."""
    if span_ is None:
        return _NULL
    from opentelemetry.trace import use_span

    return use_span(span_, end_on_exit=False)


def end(span_: Span, status: int, attributes: dict[str, Any]) -> None:
    """End a request span with its HTTP status (5xx: an error) and the answer's attributes."""
    from opentelemetry.trace import Status, StatusCode

    span_.set_attribute("http.response.status_code", status)
    for k, v in attributes.items():
        if v is not None:
            span_.set_attribute(k, v)
    if status >= 500:
        span_.set_status(Status(StatusCode.ERROR))
    span_.end()


OPERATIONS = {"chat": "chat", "completion": "text_completion", "embeddings": "embeddings"}


def request_attributes(endpoint: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The GenAI semantic conventions' request attributes of a call."""
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return {
        "gen_ai.operation.name": OPERATIONS.get(endpoint, endpoint),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens if isinstance(max_tokens, int) else None,
        "gen_ai.request.temperature": _number(body.get("temperature")),
        "gen_ai.request.top_p": _number(body.get("top_p")),
        "gen_ai.request.seed": body.get("seed") if isinstance(body.get("seed"), int) else None,
    }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
