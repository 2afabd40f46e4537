"""Remote OpenAI-compatible upstreams: the DeepSeek API, OpenAI, vLLM, SGLang, Ollama.

Bodies are forwarded as the client sent them (unknown fields kept) with the upstream model id.
Responses come back verbatim, DeepSeek's extra fields included; only ``model`` is rewritten
to the public id when the two differ, and vLLM's (since late 2025) and OpenRouter's
``reasoning`` field becomes DeepSeek's ``reasoning_content``, the name our API promises. SSE
events are checked with one orjson parse each (to read usage and drop a broken event) but
passed on as the original bytes unless one of those rewrites applies.

Streams are metered from the upstream's usage; until it arrives (it comes last, so a stream
cut short by the client or the upstream never gets it) every output chunk passed on counts as
one completion token, so an aborted stream still bills at least what it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from seekport.config import OpenAIModelConfig
from seekport.errors import (
    InvalidRequestError,
    OverloadedError,
    SeekportError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from seekport.gateway.backends.base import BackendCall, CallStats
from seekport.protocol import sse
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
            retry_after=_retry_after(headers) or (1.0 if status != 402 else None),
        )
    return UpstreamError(f"upstream error (HTTP {status}): {text}"[:500])


@dataclass(slots=True)
class _StreamMeter:
    """Per-stream bookkeeping for ``_inspect``."""

    client_wants_usage: bool
    usage_seen: bool = False  # the upstream's usage is authoritative once it arrived


class OpenAICompatBackend:
    kind = "openai"

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
            total=None, sock_connect=cfg.connect_timeout_s, sock_read=cfg.read_timeout_s
        )
        key = cfg.upstream_api_key()
        self._headers = {"content-type": "application/json"}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._urls = {name: cfg.base_url + path for name, path in _PATHS.items()}
        self._beta_urls = {name: cfg.base_url + "/beta" + path for name, path in _PATHS.items()}
        self._in_flight = 0
        self._max_in_flight = cfg.max_connections + cfg.max_waiting

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._cfg.max_connections),
                timeout=self._timeout,
                auto_decompress=True,
            )

    async def aclose(self) -> None:
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
            raise UpstreamError(f"upstream for '{self.model}' is not started")
        try:
            resp = await self._session.post(
                (self._beta_urls if call.beta else self._urls)[call.endpoint],
                data=self._payload(call, stream),
                headers={**self._headers, "x-request-id": call.request_id},
                allow_redirects=False,
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

    async def complete(self, call: BackendCall) -> bytes:
        self._admit()
        try:
            return await self._complete(call)
        finally:
            self._done()

    async def _complete(self, call: BackendCall) -> bytes:
        resp = await self._send(call, stream=False)
        try:
            data = await _read_body(resp, _MAX_BODY, truncate=False)
        except TimeoutError as exc:
            self._fail("timeout")
            raise UpstreamTimeoutError(f"upstream for '{self.model}' stalled mid-response") from exc
        except aiohttp.ClientError as exc:
            self._fail("broken_body")
            raise UpstreamError(f"upstream for '{self.model}' broke off its response") from exc
        finally:
            resp.release()
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._fail("malformed")
            raise UpstreamError(f"upstream for '{self.model}' sent invalid JSON") from exc
        if not isinstance(parsed, dict):
            self._fail("malformed")
            raise UpstreamError(f"upstream for '{self.model}' sent an unexpected body")
        call.stats.first_token_at = time.perf_counter()
        _read_usage(parsed.get("usage"), call.stats)
        choices = parsed.get("choices") or [{}]
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            call.stats.finish_reason = choices[0].get("finish_reason")
        if _REASONING in data and _rename_reasoning(parsed, "message"):
            data = orjson.dumps(parsed)
        return self._fix_model(data)

    async def stream(self, call: BackendCall) -> AsyncIterator[bytes]:
        if call.endpoint not in _PATHS:
            raise InvalidRequestError(f"unsupported endpoint {call.endpoint}")
        self._admit()
        try:
            resp = await self._send(call, stream=True)
        except BaseException:
            self._done()
            raise
        return self._events(call, resp)

    async def _events(
        self, call: BackendCall, resp: aiohttp.ClientResponse
    ) -> AsyncIterator[bytes]:
        meter = _StreamMeter(
            client_wants_usage=bool((call.body.get("stream_options") or {}).get("include_usage"))
        )
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
                *events, buf = buf.split(b"\n\n")
                out, done = self._pass_on(events, call.stats, meter)
                if out:
                    yield out
                if done:
                    break
            else:  # the body ended: a last event may lack its blank line
                out, done = self._pass_on([buf.replace(b"\r\n", b"\n")], call.stats, meter)
                if out:
                    yield out
            if done:
                released = await self._drain(resp)
        except TimeoutError as exc:
            self._fail("stream_timeout")
            raise UpstreamTimeoutError(f"upstream for '{self.model}' stalled mid-stream") from exc
        except aiohttp.ClientError as exc:
            self._fail("stream_broken")
            raise UpstreamError(f"upstream for '{self.model}' broke off the stream") from exc
        finally:
            self._done()
            if not released:
                resp.close()  # sync: safe even while the task is being cancelled
        if not done:
            self._fail("stream_truncated")
            raise UpstreamError(f"upstream for '{self.model}' ended the stream without [DONE]")

    def _pass_on(
        self, events: list[bytes], stats: CallStats, meter: _StreamMeter
    ) -> tuple[bytes, bool]:
        """The SSE bytes to send on for these upstream events, and whether [DONE] was seen."""
        out: list[bytes] = []
        for ev in events:
            payload = _data_of(ev)
            if payload is None:
                # a comment (DeepSeek's ": keep-alive" while queued): pass one on, so the
                # client and proxies between us see the connection alive too
                if ev.startswith(b":") and sse.KEEP_ALIVE not in out:
                    out.append(sse.KEEP_ALIVE)
                continue
            if payload == b"[DONE]":
                return b"".join(out), True
            if self._inspect(payload, stats, meter):
                if _REASONING in payload:
                    obj = orjson.loads(payload)
                    if _rename_reasoning(obj, "delta"):
                        payload = orjson.dumps(obj)
                if b"\n" in payload:  # a multi-line data field: one line per SSE event
                    payload = orjson.dumps(orjson.loads(payload))
                out.append(sse.event(self._fix_model(payload)))
        return b"".join(out), False

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

    def _inspect(self, payload: bytes, stats: CallStats, meter: _StreamMeter) -> bool:
        """Read usage/finish from one event; False drops it (broken, or usage nobody asked for)."""
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail("malformed_event")
            log.warning(
                "dropped a malformed SSE event from the upstream",
                extra={"fields": {"model": self.model}},
            )
            return False
        if not isinstance(obj, dict):
            return False
        choices = obj.get("choices")
        if isinstance(obj.get("usage"), dict):
            _read_usage(obj["usage"], stats)
            meter.usage_seen = True
            if not choices and not meter.client_wants_usage:
                return False  # the usage-only chunk we asked for on the client's behalf
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            outputs = sum(1 for ch in choices if isinstance(ch, dict) and _has_output(ch))
            if outputs:
                if stats.first_token_at is None:
                    stats.first_token_at = time.perf_counter()
                if not meter.usage_seen:
                    stats.completion_tokens += outputs  # a lower bound until usage arrives
            ch = choices[0]
            if ch.get("finish_reason"):
                stats.finish_reason = ch["finish_reason"]
        return True


_REASONING = b'"reasoning"'


def _rename_reasoning(obj: Any, part: str) -> bool:
    """``choices[].<part>.reasoning`` → ``reasoning_content`` (vLLM since late 2025, OpenRouter);
    left alone where the upstream sends ``reasoning_content`` itself. True if changed."""
    changed = False
    choices = obj.get("choices") if isinstance(obj, dict) else None
    for ch in choices if isinstance(choices, list) else []:
        msg = ch.get(part) if isinstance(ch, dict) else None
        if isinstance(msg, dict) and "reasoning" in msg and "reasoning_content" not in msg:
            msg["reasoning_content"] = msg.pop("reasoning")
            changed = True
    return changed


def _has_output(choice: dict[str, Any]) -> bool:
    """Whether a stream choice carries generated output (content, reasoning, tool calls)."""
    delta = choice.get("delta") or {}
    return bool(
        (
            isinstance(delta, dict)
            and (
                delta.get("content")
                or delta.get("reasoning_content")
                or delta.get("reasoning")
                or delta.get("tool_calls")
            )
        )
        or choice.get("text")
    )


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


def _data_of(event: bytes) -> bytes | None:
    """The joined ``data:`` payload of one SSE event (comments and other fields dropped)."""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
    return b"\n".join(data) if data else None


def _read_usage(usage: Any, stats: CallStats) -> None:
    if not isinstance(usage, dict):
        return
    stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    stats.completion_tokens = int(usage.get("completion_tokens") or 0)
    cached = usage.get("prompt_cache_hit_tokens")
    if cached is None:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    stats.cached_tokens = int(cached or 0)
