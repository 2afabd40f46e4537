"""ChatService: authenticate → pick the backend → call → meter → record.

Framework-free: the API routes hand it validated requests and get back bytes (a JSON body or
SSE events). Rate limits, guards, cache and routing slot in here in later issues.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from seekport.errors import ModelNotFoundError, SeekportError
from seekport.gateway.accounting import UsageEvent, UsageRecorder
from seekport.gateway.auth import Principal
from seekport.gateway.backends.base import BackendCall, ChatBackend, Endpoint
from seekport.protocol import sse
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.service")


@dataclass(slots=True)
class RequestContext:
    """What the edge knows about one HTTP request."""

    request_id: str  # ours, unique; the usage record's key
    client_request_id: str | None  # X-Request-ID the client sent, if any
    route: str
    client_ip: str | None
    started: float  # time.perf_counter()
    principal: Principal | None = None


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def error_event(exc: SeekportError) -> bytes:
    """The in-band error a stream ends with after its first byte (no [DONE] follows)."""
    return sse.event(orjson.dumps(exc.to_body()))


class ChatService:
    def __init__(
        self, backends: dict[str, list[ChatBackend]], recorder: UsageRecorder, metrics: Metrics
    ) -> None:
        self._backends = backends
        self._recorder = recorder
        self._metrics = metrics

    def model_ids(self) -> list[str]:
        return list(self._backends)

    def backend_for(self, model: str) -> ChatBackend:
        group = self._backends.get(model)
        if not group:
            raise ModelNotFoundError(
                f"Model Not Exist: the model '{model}' does not exist; "
                "GET /v1/models lists the models served here",
                param="model",
            )
        return group[0]  # routing across a group arrives with #4

    def ready(self) -> bool:
        return all(b.ready() for group in self._backends.values() for b in group)

    # ---- non-stream

    async def complete(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, object],
    ) -> bytes:
        backend = self.backend_for(req.model)
        call = BackendCall(endpoint, req.model, req, body, ctx.request_id)
        try:
            data = await backend.complete(call)
        except SeekportError as exc:
            await self.record(ctx, call, backend, exc.status_code, exc.code, stream=False)
            raise
        except asyncio.CancelledError:  # the client hung up; the backend stopped its work
            self._recorder.record_nowait(
                self._event(ctx, call, backend, 499, "client_closed", False)
            )
            raise
        await self.record(ctx, call, backend, 200, None, stream=False)
        return data

    # ---- stream

    async def stream(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        body: dict[str, object],
    ) -> AsyncIterator[bytes]:
        """Admit the call; errors before the first byte raise here (and are recorded)."""
        backend = self.backend_for(req.model)
        call = BackendCall(endpoint, req.model, req, body, ctx.request_id)
        try:
            events = await backend.stream(call)
        except SeekportError as exc:
            await self.record(ctx, call, backend, exc.status_code, exc.code, stream=True)
            raise
        except asyncio.CancelledError:  # the client hung up before the backend answered
            self._recorder.record_nowait(
                self._event(ctx, call, backend, 499, "client_closed", True)
            )
            raise
        return self._metered(ctx, call, backend, events)

    async def _metered(
        self,
        ctx: RequestContext,
        call: BackendCall,
        backend: ChatBackend,
        events: AsyncIterator[bytes],
    ) -> AsyncIterator[bytes]:
        recorded = False
        sent = False
        try:
            async for ev in events:
                sent = True
                yield ev
            recorded = True
            await self.record(ctx, call, backend, 200, None, stream=True)
            yield sse.DONE
        except SeekportError as exc:
            recorded = True
            await self.record(ctx, call, backend, exc.status_code, exc.code, stream=True)
            if not sent:
                raise  # nothing sent yet: the route answers with the error's own status
            log.warning(
                "stream failed after its first byte",
                extra={"fields": {"request_id": ctx.request_id, "error": exc.code}},
            )
            yield error_event(exc)
        except Exception:
            recorded = True
            log.exception("stream failed", extra={"fields": {"request_id": ctx.request_id}})
            await self.record(ctx, call, backend, 500, "internal_error", stream=True)
            yield error_event(
                SeekportError(f"internal error; see the server log for request {ctx.request_id}")
            )
        finally:
            if not recorded:  # client went away (generator closed or task cancelled)
                self._recorder.record_nowait(
                    self._event(ctx, call, backend, 499, "client_closed", True)
                )
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    # ---- accounting

    def _event(
        self,
        ctx: RequestContext,
        call: BackendCall | None,
        backend: ChatBackend | None,
        status: int,
        code: str | None,
        stream: bool,
    ) -> UsageEvent:
        now = time.perf_counter()
        stats = call.stats if call else None
        ttft = (
            (stats.first_token_at - ctx.started) * 1000 if stats and stats.first_token_at else None
        )
        return UsageEvent(
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            key_id=ctx.principal.key_id if ctx.principal else None,
            route=ctx.route,
            model=call.model if call else None,
            backend=backend.kind if backend else None,
            stream=int(stream),
            status=status,
            error_code=code,
            prompt_tokens=stats.prompt_tokens if stats else 0,
            completion_tokens=stats.completion_tokens if stats else 0,
            cached_tokens=stats.cached_tokens if stats else 0,
            latency_ms=(now - ctx.started) * 1000,
            ttft_ms=ttft,
            client_ip=ctx.client_ip,
            created_at=dt.datetime.now(dt.UTC),
        )

    async def record(
        self,
        ctx: RequestContext,
        call: BackendCall | None,
        backend: ChatBackend | None,
        status: int,
        code: str | None,
        *,
        stream: bool,
    ) -> None:
        ev = self._event(ctx, call, backend, status, code, stream)
        m = self._metrics
        model = ev.model or "-"
        if call is not None:
            if ev.prompt_tokens:
                m.tokens.labels(model, "prompt").inc(ev.prompt_tokens)
            if ev.completion_tokens:
                m.tokens.labels(model, "completion").inc(ev.completion_tokens)
            if ev.cached_tokens:
                m.tokens.labels(model, "cached").inc(ev.cached_tokens)
            if ev.ttft_ms is not None:
                m.ttft.labels(model).observe(ev.ttft_ms / 1000)
        await self._recorder.record(ev)

    async def record_rejection(
        self, ctx: RequestContext, model: str | None, status: int, code: str | None
    ) -> None:
        """A request refused before any backend was chosen (bad key, bad body) is recorded too."""
        ev = self._event(ctx, None, None, status, code, False)
        ev.model = model
        await self._recorder.record(ev)
