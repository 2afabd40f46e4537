"""Remote OpenAI-compatible upstreams: the DeepSeek API, OpenAI, vLLM, SGLang, Ollama.

Bodies are forwarded as the client sent them (unknown fields kept) with the upstream model id;
streams always ask for usage (accounting needs it). Each upstream SSE event (or the whole body)
is parsed once with orjson into the typed events of ``protocol.events``; the first event of
each carries the upstream's own bytes as ``raw``, so the edge can pass an unchanged answer on,
DeepSeek's extra fields included. Two rewrites apply to those bytes: ``model`` back to the
public id when the two differ, and vLLM's (since late 2025) and OpenRouter's ``reasoning``
field to DeepSeek's ``reasoning_content``, the name our API promises.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import ValidationError

from seekport.config import OpenAIModelConfig
from seekport.errors import (
    InvalidRequestError,
    OverloadedError,
    SeekportError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from seekport.gateway.backends.base import BackendCall, OwnedEvents
from seekport.gateway.backends.openai_chunks import (
    REASONING,
    choice_events,
    data_of,
    rename_reasoning,
)
from seekport.protocol import sse
from seekport.protocol.common import Usage
from seekport.protocol.events import (
    Event,
    KeepAlive,
    UsageReport,
)
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.upstream")

_PATHS = {"chat": "/chat/completions", "completion": "/completions"}
_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024  # a non-stream answer larger than this is not a chat completion
_MAX_EVENT = 8 * 1024 * 1024  # one SSE event; an upstream that never ends one is cut off


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # an HTTP date or garbage: the caller falls back to its default
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(3600.0, max(1.0, seconds))


def _status_error(status: int, headers: CIMultiDictProxy[str], body: bytes) -> SeekportError:
    """Map an upstream error status to what our client should see."""
    message, etype, param, code = "", None, None, None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            etype, param, code = err.get("type"), err.get("param"), err.get("code")
        elif isinstance(err, str):
            message = err
    except (orjson.JSONDecodeError, AttributeError):
        pass
    text = message or f"upstream answered HTTP {status}"
    if status in (401, 403):
        # The client's key was fine (we checked it); the gateway's upstream credentials were not.
        return UpstreamError(f"the upstream rejected seekport's credentials (HTTP {status})")
    if status in (400, 404, 413, 422):
        return UpstreamStatusError(
            text,
            status_code=status,
            error_type=str(etype or "invalid_request_error"),
            param=param if isinstance(param, str) else None,
            code=str(code) if code else None,
        )
    if status in (402, 429, 503):
        return UpstreamStatusError(
            text,
            status_code=status,
            error_type=str(etype or "upstream_error"),
            code=str(code) if code else None,
            retry_after=_retry_after(headers),  # none sent: the edge still says 1 s on 429/503
        )
    return UpstreamError(f"upstream error (HTTP {status}): {text}"[:500])


class OpenAICompatBackend:
    kind = "openai"
    fingerprint: str | None = None  # the upstream's own is in its bytes
    reasoning = False

    def __init__(
        self, cfg: OpenAIModelConfig, metrics: Metrics, session: aiohttp.ClientSession | None = None
    ) -> None:
        """``session``: an aiohttp session to use instead of the backend's own (tests, sharing)."""
        assert cfg.base_url is not None
        self.model = cfg.name
        self._cfg = cfg
        self._metrics = metrics
        self._upstream_model = cfg.upstream_model or cfg.name
        self._rename = self._upstream_model != cfg.name
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=cfg.total_timeout_s,  # the whole call, to its last byte
            connect=cfg.pool_timeout_s,  # waiting for a pooled connection, and connecting
            sock_connect=cfg.connect_timeout_s,
            sock_read=cfg.read_timeout_s,
        )
        key = cfg.upstream_api_key()
        self._headers = {"content-type": "application/json"}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._urls = {name: cfg.base_url + path for name, path in _PATHS.items()}
        self._beta_urls = {name: cfg.base_url + "/beta" + path for name, path in _PATHS.items()}
        self._in_flight = 0
        self._closing = False
        self._open: set[aiohttp.ClientResponse] = set()  # responses being read
        self._max_in_flight = cfg.max_connections + cfg.max_waiting

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._cfg.max_connections),
                timeout=self._timeout,
                auto_decompress=True,
            )

    async def aclose(self) -> None:
        """Calls still reading end with 503 (server shutting down). Idempotent."""
        self._closing = True
        for resp in list(self._open):
            resp.close()  # wakes the call reading it, which ends with the 503 above
        if self._session is not None and self._own_session:
            await self._session.close()
            await asyncio.sleep(0)  # let the transports finish closing before the loop ends
        self._session = None

    def ready(self) -> bool:
        return True

    def _payload(self, call: BackendCall, stream: bool) -> bytes:
        body = dict(call.body)
        body["model"] = self._upstream_model
        if stream:
            # Ask for usage always: accounting needs it even when the client did not.
            opts = dict(body.get("stream_options") or {})
            opts["include_usage"] = True
            body["stream_options"] = opts
        return orjson.dumps(body)

    def _fix_model(self, data: bytes) -> bytes:
        if not self._rename:
            return data
        up = orjson.dumps(self._upstream_model)
        pub = orjson.dumps(self.model)
        return data.replace(b'"model":' + up, b'"model":' + pub).replace(
            b'"model": ' + up, b'"model": ' + pub
        )

    def _shutting_down(self) -> OverloadedError | None:
        """The error for a call cut because the server is shutting down, if it is."""
        if not self._closing:
            return None
        return OverloadedError("the server is shutting down; retry", retry_after=1)

    def _broken(self, reason: str, what: str) -> UpstreamError:
        self._fail(reason)
        return UpstreamError(f"upstream for '{self.model}' broke off {what}")

    def _fail(self, reason: str) -> None:
        self._metrics.upstream_errors.labels(self.kind, reason).inc()

    def _admit(self) -> None:
        """Bound the calls in flight to this upstream (connections + a waiting line)."""
        if self._in_flight >= self._max_in_flight:
            self._fail("overloaded")
            raise OverloadedError(
                f"model '{self.model}' is overloaded: {self._in_flight} calls are in flight; "
                "retry later",
                retry_after=1,
            )
        self._in_flight += 1

    def _done(self) -> None:
        self._in_flight -= 1

    async def _send(self, call: BackendCall, stream: bool) -> aiohttp.ClientResponse:
        if self._session is None:
            raise self._shutting_down() or UpstreamError(
                f"upstream for '{self.model}' is not started"
            )
        try:
            resp = await self._session.post(
                (self._beta_urls if call.beta else self._urls)[call.endpoint],
                data=self._payload(call, stream),
                headers={**self._headers, "x-request-id": call.request_id},
                allow_redirects=False,
                timeout=self._timeout,
            )
        except TimeoutError as exc:
            self._fail("timeout")
            raise UpstreamTimeoutError(
                f"upstream for '{self.model}' did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            self._fail("connect")
            raise UpstreamError(
                f"upstream for '{self.model}' is unreachable: {type(exc).__name__}"
            ) from exc
        if resp.status >= 400:
            call.stats.upstream_status = resp.status  # kept per attempt for retry decisions
            try:
                body = await self._read_bounded(resp)
            finally:
                resp.close()
            self._fail(f"http_{resp.status}")
            raise _status_error(resp.status, resp.headers, body)
        return resp

    async def _read_bounded(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await _read_body(resp, _MAX_ERROR_BODY, truncate=True)
        except (aiohttp.ClientError, TimeoutError):
            return b""  # an error body cut short still maps to the status

    async def generate(self, call: BackendCall) -> AsyncIterator[Event]:
        if call.endpoint not in _PATHS:
            raise InvalidRequestError(f"unsupported endpoint {call.endpoint}")
        self._admit()
        try:
            resp = await self._send(call, stream=call.stream)
        except BaseException:
            self._done()
            raise
        call.stats.upstream_status = resp.status
        self._open.add(resp)
        events = self._stream_events(call, resp) if call.stream else self._body_events(call, resp)

        def release() -> None:
            self._done()
            self._open.discard(resp)
            resp.close()

        return OwnedEvents(events, release)

    async def _body_events(
        self, call: BackendCall, resp: aiohttp.ClientResponse
    ) -> AsyncGenerator[Event, None]:
        try:
            data = await _read_body(resp, _MAX_BODY, truncate=False)
        except TimeoutError as exc:
            self._fail("timeout")
            raise UpstreamTimeoutError(f"upstream for '{self.model}' stalled mid-response") from exc
        except aiohttp.ClientError as exc:
            raise self._shutting_down() or self._broken("broken_body", "its response") from exc
        finally:
            resp.release()
            self._open.discard(resp)
            self._done()
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._fail("malformed")
            raise UpstreamError(f"upstream for '{self.model}' sent invalid JSON") from exc
        if not isinstance(parsed, dict):
            self._fail("malformed")
            raise UpstreamError(f"upstream for '{self.model}' sent an unexpected body")
        if REASONING in data and rename_reasoning(parsed, "message"):
            data = orjson.dumps(parsed)
        events = self._events_of(parsed, call.endpoint, "message")
        if events:
            events[0].raw = self._fix_model(data)
        for ev in events:
            yield ev

    async def _stream_events(
        self, call: BackendCall, resp: aiohttp.ClientResponse
    ) -> AsyncGenerator[Event, None]:
        done = False
        buf = b""
        released = False
        try:
            async for chunk in resp.content.iter_any():
                buf += chunk
                if b"\n\n" not in buf and b"\r\n\r\n" not in buf:
                    if len(buf) > _MAX_EVENT:
                        raise UpstreamError(f"upstream for '{self.model}' sent an oversized event")
                    continue
                buf = buf.replace(b"\r\n", b"\n")
                *raw_events, buf = buf.split(b"\n\n")
                events, done = self._parse_events(raw_events, call.endpoint)
                for ev in events:
                    yield ev
                if done:
                    break
            else:  # the body ended: a last event may lack its blank line
                events, done = self._parse_events([buf.replace(b"\r\n", b"\n")], call.endpoint)
                for ev in events:
                    yield ev
            if done:
                released = await self._drain(resp)
        except TimeoutError as exc:
            self._fail("stream_timeout")
            raise UpstreamTimeoutError(
                f"upstream for '{self.model}' stalled mid-stream or passed its total deadline"
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._shutting_down() or self._broken("stream_broken", "the stream") from exc
        finally:
            self._done()
            self._open.discard(resp)
            if not released:
                resp.close()  # sync: safe even while the task is being cancelled
        if not done:
            closing = self._shutting_down()
            if closing is not None:
                raise closing
            self._fail("stream_truncated")
            raise UpstreamError(f"upstream for '{self.model}' ended the stream without [DONE]")

    def _parse_events(self, raw_events: list[bytes], endpoint: str) -> tuple[list[Event], bool]:
        """The typed events of these upstream SSE events (one read), and whether [DONE] was
        seen. The upstream's bytes of consecutive chunks ride on the first event of the run
        (the others get ``b""``), so a passed-through read goes out as one write; a usage-only
        chunk keeps its own bytes (the encoder drops it when the client did not ask)."""
        out: list[Event] = []
        keep_alive = False
        lead: Event | None = None  # the first event of the current run of chunks
        parts: list[bytes] = []

        def flush() -> None:
            nonlocal lead
            if lead is not None:
                lead.raw = b"".join(parts)
                lead = None
                parts.clear()

        for raw in raw_events:
            payload = data_of(raw)
            if payload is None:
                # a comment (DeepSeek's ": keep-alive" while queued): pass one on per read, so
                # the client and the proxies between us see the connection alive too
                if raw.startswith(b":") and not keep_alive:
                    flush()
                    out.append(KeepAlive())
                    keep_alive = True
                continue
            if payload == b"[DONE]":
                flush()
                return out, True
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self._fail("malformed_event")
                log.warning(
                    "dropped a malformed SSE event from the upstream",
                    extra={"fields": {"model": self.model}},
                )
                continue
            if not isinstance(obj, dict):
                continue
            events = self._events_of(obj, endpoint, "delta")
            if not events:
                continue
            # a multi-line data field is re-serialised too: one line per SSE event
            if (REASONING in payload and rename_reasoning(obj, "delta")) or b"\n" in payload:
                payload = orjson.dumps(obj)
            data = sse.event(self._fix_model(payload))
            if isinstance(events[0], UsageReport):  # a usage-only chunk: bytes of its own
                flush()
                events[0].raw = data
            elif lead is None:
                lead = events[0]
                parts.append(data)
            else:
                events[0].raw = b""
                parts.append(data)
            out.extend(events)
        flush()
        return out, False

    def _events_of(self, obj: dict[str, Any], endpoint: str, part: str) -> list[Event]:
        """One upstream chunk (``part="delta"``) or body (``"message"``) as typed events; every
        event but the first gets ``raw=b""`` (the caller sets the first one's)."""
        events: list[Event] = []
        choices = obj.get("choices")
        for position, ch in enumerate(choices if isinstance(choices, list) else ()):
            if isinstance(ch, dict):  # n > 1: each choice's events carry its index
                index = ch.get("index")
                choice_events(
                    ch, endpoint, part, events, index if isinstance(index, int) else position
                )
        usage = obj.get("usage")
        if usage is not None:
            try:
                events.append(UsageReport(Usage.model_validate(usage)))
            except ValidationError as exc:
                self._fail("malformed_usage")
                raise UpstreamError(
                    f"upstream for '{self.model}' sent a malformed usage object"
                ) from exc
        for ev in events[1:]:
            ev.raw = b""
        return events

    async def _drain(self, resp: aiohttp.ClientResponse) -> bool:
        """Read what follows [DONE] (normally just the end of the body), so the connection
        goes back to the pool instead of being closed. Bounded: a lingering upstream is cut."""
        try:
            async with asyncio.timeout(1.0):
                await resp.content.read()
        except (TimeoutError, aiohttp.ClientError):
            return False
        resp.release()
        return True


async def _read_body(resp: aiohttp.ClientResponse, limit: int, *, truncate: bool) -> bytes:
    """The whole body, at most ``limit`` bytes (cut there, or an UpstreamError)."""
    if not truncate and (resp.content_length or 0) > limit:
        raise UpstreamError("the upstream sent an oversized body")
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            if truncate:
                parts.append(chunk[: len(chunk) - (size - limit)])
                break
            raise UpstreamError("the upstream sent an oversized body")
        parts.append(chunk)
    return b"".join(parts)
