"""``AsyncClient``: the SDK's core, written once (``Client`` wraps it for synchronous code).

The call shapes follow the official ``openai`` package — ``client.chat.completions.create``,
``client.completions.create``, ``client.embeddings.create``, ``client.models.list`` — and add
seekport's own endpoints (``balance``, ``usage``, ``knowledge``, ``admin``). Results are the
protocol models the server itself answers with.

Configuration: arguments, else the environment (``SEEKPORT_BASE_URL``, default
``http://127.0.0.1:8000``; ``SEEKPORT_API_KEY``) — the one place outside ``seekport.config``
that reads the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from seekport.errors import SeekportError
from seekport.protocol.admin import UsageReport
from seekport.protocol.balance import UserBalance
from seekport.sdk.errors import error_from
from seekport.sdk.resilience import (
    Breakers,
    BreakerSettings,
    RetryPolicy,
    retryable,
    unhealthy,
)
from seekport.sdk.resources import Admin, Chat, Completions, Embeddings, Knowledge, Models
from seekport.sdk.streaming import _transport

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 600.0
M = TypeVar("M", bound=BaseModel)
_NOT_GIVEN: Any = object()


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Passed to ``on_retry`` before each wait: what failed and how long the client waits."""

    method: str
    path: str
    model: str | None
    retry: int  # 1 for the first retry
    delay_s: float
    error: SeekportError


class _Call:
    """One logical call's retry budget (shared by a stream's reopenings)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0


class AsyncClient:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        breaker: BreakerSettings | Literal[False] | None = _NOT_GIVEN,
        fallbacks: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        http_client: httpx.AsyncClient | None = None,
        seed: int | None = None,
    ) -> None:
        """``fallbacks``: model -> backup model(s), used while the model's breaker is open.
        ``breaker``: its settings (default: 30 % errors over 60 s with at least 10 calls,
        open 30 s); ``False`` or ``None``: no breakers. ``retry``: backoff settings
        (``max_retries`` alone overrides the count)."""
        base = base_url or os.environ.get("SEEKPORT_BASE_URL") or DEFAULT_BASE_URL
        base = base.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        self.base_url = base
        self.api_key = api_key if api_key is not None else os.environ.get("SEEKPORT_API_KEY")
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        self.retry = policy
        settings = BreakerSettings() if breaker is _NOT_GIVEN else (breaker or None)
        self.breakers = Breakers(settings, dict(fallbacks or {}))
        self._on_retry = on_retry
        self._rng = random.Random(seed)  # noqa: S311 - backoff jitter, not secrets
        self._timeout = timeout
        default_headers = {"User-Agent": "seekport-python"}
        default_headers.update(headers or {})
        if self.api_key:
            default_headers["Authorization"] = f"Bearer {self.api_key}"
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._headers = default_headers
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)
        self.models = Models(self)
        self.knowledge = Knowledge(self)
        self.admin = Admin(self)

    # ---- seekport's own endpoints

    async def balance(self) -> UserBalance:
        """The key's balance in DeepSeek's shape, and each budget over it."""
        return await self._model(UserBalance, "GET", "/user/balance")

    async def usage(
        self,
        *,
        group_by: Literal["day", "model", "key"] | None = None,
        since: str | None = None,
        until: str | None = None,
        model: str | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
    ) -> UsageReport:
        """Requests, tokens and cost (``GET /admin/usage``; an admin or auditor key)."""
        params = {
            k: v
            for k, v in {
                "group_by": group_by,
                "since": since,
                "until": until,
                "model": model,
                "key_id": key_id,
                "user_id": user_id,
                "tenant_id": tenant_id,
            }.items()
            if v is not None
        }
        return await self._model(UsageReport, "GET", "/admin/usage", params=params)

    # ---- lifecycle

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the core: one request with retries, the breaker and fallbacks

    async def _model(self, cls: type[M], method: str, path: str, **kw: Any) -> M:
        return cls.model_validate(await self._json(method, path, **kw))

    async def _json(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_post: bool = True,
    ) -> Any:
        call = self._call(max_retries if retry_post or method == "GET" else 0)
        response = await self._send(
            call, method, path, body=body, params=params, files=files, timeout=timeout
        )
        try:
            if response.status_code == 204:
                return None
            return response.json()
        finally:
            await response.aclose()

    def _call(self, max_retries: int | None) -> _Call:
        policy = self.retry
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        return _Call(policy)

    async def _send(
        self,
        call: _Call,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        timeout: float | None = None,
        stream: bool = False,
        first_error: SeekportError | None = None,
    ) -> httpx.Response:
        """Send until an answer under 400 (returned open when ``stream``), retrying what a
        retry can fix; ``first_error``: a stream's failure that asks for a new attempt."""
        asked = body.get("model") if body is not None else None
        idempotency = uuid.uuid4().hex
        error = first_error
        while True:
            if error is not None:
                await self._wait(call, method, path, asked, error)
            sent = self.breakers.pick(asked) if isinstance(asked, str) else None
            breaker = self.breakers.of(sent) if sent is not None else None
            payload = {**body, "model": sent} if body is not None and sent is not None else body
            try:
                response = await self._once(
                    method, path, payload, params, files, timeout, stream, idempotency
                )
            except SeekportError as exc:
                error = exc
            else:
                if response.status_code < 400:
                    if breaker is not None:
                        breaker.record(True)
                    return response
                error = await self._error_of(response)
            if breaker is not None:
                if unhealthy(error):
                    breaker.record(False)
                else:
                    breaker.release()

    async def _wait(
        self, call: _Call, method: str, path: str, model: str | None, error: SeekportError
    ) -> None:
        """Sleep before the next attempt, or raise ``error`` when it is not to be retried."""
        delay = (
            call.policy.delay(call.retries, error.retry_after, self._rng)
            if retryable(error)
            else None
        )
        if delay is None:
            raise error
        call.retries += 1
        if self._on_retry is not None:
            self._on_retry(RetryEvent(method, path, model, call.retries, delay, error))
        await asyncio.sleep(delay)

    async def _once(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None,
        timeout: float | None,
        stream: bool,
        idempotency: str,
    ) -> httpx.Response:
        headers = dict(self._headers)
        if method != "GET":
            headers["Idempotency-Key"] = idempotency
        request = self._http.build_request(
            method,
            self.base_url + path,
            json=body if files is None else None,
            data={k: str(v) for k, v in (body or {}).items()} if files is not None else None,
            files=files,
            params=params,
            headers=headers,
            timeout=timeout if timeout is not None else self._timeout,
        )
        try:
            return await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise _transport(exc) from exc

    @staticmethod
    async def _error_of(response: httpx.Response) -> SeekportError:
        try:
            raw = await response.aread()
        except httpx.HTTPError as exc:
            return _transport(exc)
        finally:
            await response.aclose()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")[:500]
        return error_from(response.status_code, body, response.headers)

    def _reopener(
        self, call: _Call, path: str, body: dict[str, Any], timeout: float | None
    ) -> Callable[[SeekportError], Any]:
        async def reopen(error: SeekportError) -> httpx.Response:
            return await self._send(
                call, "POST", path, body=body, timeout=timeout, stream=True, first_error=error
            )

        return reopen
