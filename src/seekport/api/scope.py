"""The request scope: one object per API request, from its first byte to its last.

It owns the request id (ours, unique, and the client's ``X-Request-ID`` echoed), the principal,
the race with a client that hangs up (the backend is cancelled: the local engine drops the
sequence at its next step, a remote upstream is let go at its next read), exactly one usage
record (made at the end, or in a ``finally`` when the client is gone), the request metrics, and
the mapping of exceptions to responses (bodies from ``api/errors.py``). Nothing about a request
travels through the ASGI scope.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from seekport.api.encoders import StreamEncoder, encoded
from seekport.api.errors import error_response, internal_error
from seekport.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    OverloadedError,
    RateLimitError,
    SeekportError,
)
from seekport.gateway.accounting import UsageEvent
from seekport.gateway.service import ChatResult, RequestContext
from seekport.protocol.events import Event
from seekport.telemetry import tracing

if TYPE_CHECKING:
    from seekport.api.deps import Services

log = logging.getLogger("seekport.api")
T = TypeVar("T")
Renderer = Callable[[SeekportError, dict[str, str]], Response]

_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def new_request_id() -> str:
    """``req_`` and 128 random bits in hex (uuid4's randomness without building a UUID)."""
    return "req_" + os.urandom(16).hex()


def client_request_id(value: str | None) -> str | None:
    """A client's token header (X-Request-ID, x-seekport-region) if it is sane (printable
    ASCII, ≤ 128), else None."""
    return value if value is not None and _CLIENT_ID.match(value) else None


class RequestScope:
    def __init__(
        self,
        services: Services | None,
        request: Request,
        route: str,
        *,
        record: bool = True,
        render: Renderer = error_response,
    ) -> None:
        self._svc = services
        self._render = render  # the error response of this route's wire format
        self.request = request
        self.route = route
        self._record_usage = record
        client_id = client_request_id(request.headers.get("x-request-id"))
        self.ctx = RequestContext(
            request_id=new_request_id(),
            client_request_id=client_id,
            route=route,
            client_ip=request.client.host if request.client else None,
            started=time.perf_counter(),
            beta=request.scope["path"].startswith("/beta/"),
            region=client_request_id(request.headers.get("x-seekport-region")),
            cache_refresh="no-cache" in request.headers.get("cache-control", "").lower(),
        )
        self.echo_id = client_id or self.ctx.request_id
        self.model: str | None = None  # what the client asked for (the usage record's model)
        self.label: str | None = None  # metrics label: a served model only
        self.result: ChatResult | None = None
        # a route that is not a chat call (embeddings) makes its own usage record
        self.usage_of: Callable[[int, str | None], UsageEvent] | None = None
        self.stream = False
        self._recorded = not record
        self._observed = False
        self.span = tracing.request_span(route)  # None unless tracing is on

    # ---- services and headers

    @property
    def services(self) -> Services:
        if self._svc is None or self._svc.draining:
            raise OverloadedError("the server is starting or stopping; retry", retry_after=1)
        return self._svc

    def headers(self) -> dict[str, str]:
        out = {"x-request-id": self.echo_id}
        if self.result is not None:
            out.update(self.result.headers)
        return out

    # ---- running a request

    async def run(self, handler: Callable[[], Awaitable[Response]]) -> Response:
        """Run the route's handler; map what it raises to a response; record and observe."""
        try:
            with tracing.current(self.span):
                response = await handler()
        except SeekportError as exc:
            if not self._refused(exc):
                await self.record(exc.status_code, exc.code, quiet=True)
            response = self._render(exc, self.headers())
        except Exception:
            log.exception("request failed", extra={"fields": {"request_id": self.ctx.request_id}})
            err = internal_error(self.ctx.request_id)
            await self.record(err.status_code, err.code, quiet=True)
            response = self._render(err, self.headers())
        if not isinstance(response, StreamingResponse):
            self.observe(response.status_code)  # a stream is observed when it ends
        return response

    async def race(self, work: Awaitable[T]) -> T | Response:
        """Await ``work`` unless the client hangs up first: then cancel it, record 499 and
        answer 499. The request body must have been read already.

        The work runs in this task (a task of its own and ``asyncio.wait`` cost ~25 µs a
        request); a watcher task cancels this one if the client goes while the work is still
        under way. The watcher only runs while this task is suspended, so while ``racing`` is
        set the cancellation lands inside the work, and it cannot land after it."""
        current = asyncio.current_task()
        assert current is not None
        racing = True
        gone = False

        async def watch() -> None:
            nonlocal gone
            await self._wait_disconnect()
            if racing:
                gone = True
                current.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            return await work
        except asyncio.CancelledError:
            if not gone:
                raise
            current.uncancel()
            self.record_nowait(499, "client_closed")
            return Response(status_code=499, headers=self.headers())
        finally:
            racing = False
            watcher.cancel()

    async def _wait_disconnect(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                return

    def streaming(
        self, encoder: StreamEncoder, first: bytes, events: AsyncIterator[Event]
    ) -> Response:
        return StreamingResponse(
            self._stream_body(encoder, first, events),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **self.headers()},
        )

    async def _stream_body(
        self, enc: StreamEncoder, first: bytes, events: AsyncIterator[Event]
    ) -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            try:
                async for data in encoded(enc, events):
                    yield data
            except SeekportError as exc:
                await self.record(exc.status_code, exc.code, quiet=True)
                log.warning(
                    "stream failed after its first byte",
                    extra={"fields": {"request_id": self.ctx.request_id, "error": exc.code}},
                )
                yield enc.error(exc)
                return
            except Exception:
                log.exception(
                    "stream failed", extra={"fields": {"request_id": self.ctx.request_id}}
                )
                err = internal_error(self.ctx.request_id)
                await self.record(err.status_code, err.code, quiet=True)
                yield enc.error(err)
                return
            try:
                await self.record(200, None)
            except SeekportError as exc:  # fail closed: no [DONE] without a record
                yield enc.error(exc)
                return
            yield enc.done()
        finally:
            self.record_nowait(499, "client_closed")  # only if nothing was recorded: gone
            self.observe(200)
            await aclose(events)

    async def refuse(self, err: SeekportError) -> Response:
        """A request refused before any route ran (the edge's body limit)."""
        await self.record(err.status_code, err.code, quiet=True)
        self.observe(err.status_code)
        return self._render(err, self.headers())

    # ---- the one usage record, and the request metrics

    def _refused(self, exc: SeekportError) -> bool:
        """A refusal before any work: a bad key (401, or the failed-authentication
        throttle's 429) or a limit or budget at admission (429, 402). Floods of these must
        not cost a durable write each: they are counted into the audit log's aggregated rows
        (bad keys by the key service) and leave no usage record."""
        if isinstance(exc, AuthenticationError):
            return True
        if not isinstance(exc, RateLimitError | InsufficientBalanceError) or self.result:
            return False
        who = self.ctx.principal
        if who is None:
            return True  # the failed-authentication throttle
        audit = self._svc.audit if self._svc is not None else None
        if audit is not None:
            action = "budget.refused" if exc.status_code == 402 else "limit.refused"
            audit.count(
                action,
                client_ip=self.ctx.client_ip,
                key_id=who.key_id,
                tenant_id=who.tenant_id,
                role=who.role,
                reason=exc.code,
            )
        return True

    async def record(self, status: int, code: str | None, *, quiet: bool = False) -> None:
        """Make this request's usage record (once) and wait for its commit. A failure to store
        it raises OverloadedError (503) unless ``quiet`` (the request's own error wins)."""
        if self._recorded or self._svc is None:
            return
        self._recorded = True
        chat = self._svc.chat
        ev = self._usage_event(status, code)
        try:
            with tracing.span("seekport.accounting", self.span):
                await chat.record(ev)
        except SeekportError:
            if not quiet:
                raise
            log.warning(
                "usage record not stored", extra={"fields": {"request_id": self.ctx.request_id}}
            )

    def record_nowait(self, status: int, code: str | None) -> None:
        if self._recorded or self._svc is None:
            return
        self._recorded = True
        self._svc.chat.record_nowait(self._usage_event(status, code))

    def _usage_event(self, status: int, code: str | None) -> UsageEvent:
        assert self._svc is not None
        if self.usage_of is not None:
            return self.usage_of(status, code)
        return self._svc.chat.usage_event(
            self.ctx, self.result, self.model, status, code, stream=self.stream
        )

    def observe(self, status: int) -> None:
        if self._observed:
            return
        self._observed = True
        if self.span is not None:
            tracing.end(self.span, status, self._answer_attributes())
        if self._svc is None:
            return
        m, label = self._svc.metrics, self.label or "-"
        m.child(m.requests, self.route, label, str(status)).inc()
        m.child(m.latency, self.route, label).observe(time.perf_counter() - self.ctx.started)

    def _answer_attributes(self) -> dict[str, object]:
        """The answer's GenAI attributes for the request span."""
        result = self.result
        if result is None:
            return {"gen_ai.request.model": self.model}
        stats = result.call.stats
        return {
            "gen_ai.request.model": self.model,
            "gen_ai.response.model": result.call.model,
            "gen_ai.usage.input_tokens": stats.prompt_tokens,
            "gen_ai.usage.output_tokens": stats.completion_tokens,
            "gen_ai.response.finish_reasons": [stats.finish_reason]
            if stats.finish_reason
            else None,
            "seekport.cache": "hit" if result.cache_hit else result.headers.get("x-cache"),
            "seekport.request_id": self.ctx.request_id,
        }


async def aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
