"""ChatService: authenticate → pick the backend → call → meter → record.

Framework-free: the API routes hand it validated requests and get back bytes (a JSON body or
SSE events). Rate limits, guards, cache and routing slot in here in later issues.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

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
T = TypeVar("T")


@dataclass(slots=True)
class RequestContext:
    """What the edge knows about one HTTP request."""

    request_id: str  # ours, unique; the usage record's key
    client_request_id: str | None  # X-Request-ID the client sent, if any
    route: str
    client_ip: str | None
    started: float  # time.perf_counter()
    principal: Principal | None = None
    beta: bool = False  # the request came in under /beta


def _internal(ctx: RequestContext) -> SeekportError:
    """What the client sees of an unexpected failure: no details, the id to find the log."""
    return SeekportError(f"internal error; see the server log for request {ctx.request_id}")


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
        call = BackendCall(endpoint, req.model, req, body, ctx.request_id, beta=ctx.beta)
        data = await self._guarded(ctx, call, backend, backend.complete(call), stream=False)
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
        call = BackendCall(endpoint, req.model, req, body, ctx.request_id, beta=ctx.beta)
        events = await self._guarded(ctx, call, backend, backend.stream(call), stream=True)
        return self._metered(ctx, call, backend, events)

    async def _guarded(
        self,
        ctx: RequestContext,
        call: BackendCall,
        backend: ChatBackend,
        work: Awaitable[T],
        *,
        stream: bool,
    ) -> T:
        """Await a backend call; whatever happens, the request leaves its usage record."""
        try:
            return await work
        except SeekportError as exc:
            await self._record_quietly(ctx, call, backend, exc.status_code, exc.code, stream)
            raise
        except asyncio.CancelledError:  # the client hung up; the backend stopped its work
            self._recorder.record_nowait(
                self._event(ctx, call, backend, 499, "client_closed", stream)
            )
            raise
        except Exception as exc:
            log.exception("backend failure", extra={"fields": {"request_id": ctx.request_id}})
            err = _internal(ctx)
            await self._record_quietly(ctx, call, backend, err.status_code, err.code, stream)
            raise err from exc

    async def _metered(
        self,
        ctx: RequestContext,
        call: BackendCall,
        backend: ChatBackend,
        events: AsyncIterator[bytes],
    ) -> AsyncIterator[bytes]:
        finished = False
        sent = False
        err: SeekportError | None = None
        try:
            try:
                async for ev in events:
                    sent = True
                    yield ev
            except SeekportError as exc:
                err = exc
            except Exception:
                log.exception("stream failed", extra={"fields": {"request_id": ctx.request_id}})
                err = _internal(ctx)
            finished = True
            if err is None:
                try:
                    await self.record(ctx, call, backend, 200, None, stream=True)
                except SeekportError as exc:  # fail closed: no [DONE] without a record
                    yield error_event(exc)
                    return
                yield sse.DONE
                return
            await self._record_quietly(ctx, call, backend, err.status_code, err.code, True)
            if not sent:
                raise err  # nothing sent yet: the route answers with the error's own status
            log.warning(
                "stream failed after its first byte",
                extra={"fields": {"request_id": ctx.request_id, "error": err.code}},
            )
            yield error_event(err)
        finally:
            if not finished:  # client went away (generator closed or task cancelled)
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
        """A request refused before any backend was chosen (bad key, bad body) is recorded too.

        Best effort: the refusal itself is the answer, a storage failure must not replace it.
        """
        ev = self._event(ctx, None, None, status, code, False)
        ev.model = model
        try:
            await self._recorder.record(ev)
        except SeekportError:
            log.warning("rejection not recorded", extra={"fields": {"request_id": ctx.request_id}})

    async def _record_quietly(
        self,
        ctx: RequestContext,
        call: BackendCall,
        backend: ChatBackend,
        status: int,
        code: str | None,
        stream: bool,
    ) -> None:
        """Record a failed call; the call's own error, not a storage error, goes to the client."""
        try:
            await self.record(ctx, call, backend, status, code, stream=stream)
        except SeekportError:
            log.warning("failure not recorded", extra={"fields": {"request_id": ctx.request_id}})
