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
import json
import os
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel

from seekport.errors import SeekportError
from seekport.protocol.admin import Key, KeyWithSecret, ListOf, UsageReport
from seekport.protocol.balance import UserBalance
from seekport.protocol.chat import ChatCompletion
from seekport.protocol.completions import Completion
from seekport.protocol.embeddings import EmbeddingResponse
from seekport.protocol.knowledge import (
    Document,
    DocumentList,
    KnowledgeBase,
    KnowledgeBaseList,
    SearchResult,
)
from seekport.protocol.models import ModelCard, ModelList
from seekport.sdk.errors import error_from
from seekport.sdk.resilience import (
    Breakers,
    BreakerSettings,
    RetryPolicy,
    retryable,
    unhealthy,
)
from seekport.sdk.streaming import AsyncChatStream, AsyncCompletionStream, _transport

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
            policy = RetryPolicy(
                max_retries, policy.initial_delay, policy.max_delay, policy.max_retry_after
            )
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
        self.chat = _Chat(self)
        self.completions = _Completions(self)
        self.embeddings = _Embeddings(self)
        self.models = _Models(self)
        self.knowledge = _Knowledge(self)
        self.admin = _Admin(self)

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
            policy = RetryPolicy(
                max_retries, policy.initial_delay, policy.max_delay, policy.max_retry_after
            )
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


def _body(fields: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if v is not None}
    out.update(extra)
    return out


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class _ChatCompletions(_Resource):
    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> AsyncChatStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> ChatCompletion | AsyncChatStream:
        """``POST /v1/chat/completions``; any other body field as a keyword (``temperature``,
        ``tools``, ``thinking``, ``knowledge_bases`` …). ``stream=True``: an
        :class:`AsyncChatStream` (usage is asked for and read at its end)."""
        c = self._client
        body = _body({"model": model, "messages": [dict(m) for m in messages]}, params)
        path = "/v1/chat/completions"
        if not stream:
            data = await c._json("POST", path, body=body, timeout=timeout, max_retries=max_retries)
            return ChatCompletion.model_validate(data)
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        call = c._call(max_retries)
        response = await c._send(call, "POST", path, body=body, timeout=timeout, stream=True)
        return AsyncChatStream(response, c._reopener(call, path, body, timeout))


class _Chat(_Resource):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self.completions = _ChatCompletions(client)


class _Completions(_Resource):
    @overload
    async def create(
        self,
        *,
        model: str,
        prompt: str,
        stream: Literal[False] = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> Completion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        prompt: str,
        stream: Literal[True],
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> AsyncCompletionStream: ...

    async def create(
        self,
        *,
        model: str,
        prompt: str,
        stream: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> Completion | AsyncCompletionStream:
        """``POST /v1/completions`` (plain text continuation, FIM with ``suffix``)."""
        c = self._client
        body = _body({"model": model, "prompt": prompt}, params)
        path = "/v1/completions"
        if not stream:
            data = await c._json("POST", path, body=body, timeout=timeout, max_retries=max_retries)
            return Completion.model_validate(data)
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        call = c._call(max_retries)
        response = await c._send(call, "POST", path, body=body, timeout=timeout, stream=True)
        return AsyncCompletionStream(response, c._reopener(call, path, body, timeout))


class _Embeddings(_Resource):
    async def create(
        self,
        *,
        model: str,
        input: str | list[str],
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """``POST /v1/embeddings`` (``encoding_format``: float or base64)."""
        body = _body({"model": model, "input": input}, params)
        data = await self._client._json(
            "POST", "/v1/embeddings", body=body, timeout=timeout, max_retries=max_retries
        )
        return EmbeddingResponse.model_validate(data)


class _Models(_Resource):
    async def list(self) -> ModelList:
        return await self._client._model(ModelList, "GET", "/v1/models")

    async def retrieve(self, model: str) -> ModelCard:
        return await self._client._model(ModelCard, "GET", f"/v1/models/{model}")


class _Knowledge(_Resource):
    """Knowledge bases (``/v1/knowledge``)."""

    async def list(self) -> KnowledgeBaseList:
        return await self._client._model(KnowledgeBaseList, "GET", "/v1/knowledge")

    async def create(self, name: str, **fields: Any) -> KnowledgeBase:
        return await self._client._model(
            KnowledgeBase, "POST", "/v1/knowledge", body={"name": name, **fields}, retry_post=False
        )

    async def retrieve(self, kb: str) -> KnowledgeBase:
        return await self._client._model(KnowledgeBase, "GET", f"/v1/knowledge/{kb}")

    async def delete(self, kb: str) -> None:
        await self._client._json("DELETE", f"/v1/knowledge/{kb}")

    async def upload(
        self,
        kb: str,
        files: Iterable[str | Path | tuple[str, bytes]],
        *,
        timeout: float | None = None,
    ) -> DocumentList:
        """Upload files (paths, or ``(name, bytes)``); each is ingested in the background."""
        parts: list[tuple[str, tuple[str, bytes, str]]] = []
        for f in files:
            if isinstance(f, tuple):
                name, data = f
            else:
                name, data = Path(f).name, await asyncio.to_thread(Path(f).read_bytes)
            parts.append(("file", (name, data, "application/octet-stream")))
        return await self._client._model(
            DocumentList,
            "POST",
            f"/v1/knowledge/{kb}/documents",
            files=parts,
            timeout=timeout,
            retry_post=False,
        )

    async def documents(self, kb: str) -> DocumentList:
        return await self._client._model(DocumentList, "GET", f"/v1/knowledge/{kb}/documents")

    async def document(self, kb: str, doc: str) -> Document:
        return await self._client._model(Document, "GET", f"/v1/knowledge/{kb}/documents/{doc}")

    async def search(self, kb: str, query: str, **params: Any) -> SearchResult:
        """Ranked chunks with scores and why (``top_k``, ``mode``, ``filter`` …)."""
        return await self._client._model(
            SearchResult, "POST", f"/v1/knowledge/{kb}/search", body={"query": query, **params}
        )


class _Keys(_Resource):
    async def create(self, name: str, role: str = "user", **fields: Any) -> KeyWithSecret:
        """A new key; its secret is in the answer once (``limits``, ``budget``, ``tenant_id``…)."""
        return await self._client._model(
            KeyWithSecret,
            "POST",
            "/admin/keys",
            body={"name": name, "role": role, **fields},
            retry_post=False,
        )

    async def list(self, *, tenant_id: str | None = None, user_id: str | None = None) -> list[Key]:
        params = {k: v for k, v in {"tenant_id": tenant_id, "user_id": user_id}.items() if v}
        page = await self._client._model(ListOf[Key], "GET", "/admin/keys", params=params)
        return page.data

    async def retrieve(self, key_id: str) -> Key:
        return await self._client._model(Key, "GET", f"/admin/keys/{key_id}")

    async def revoke(self, key_id: str) -> Key:
        return await self._client._model(Key, "POST", f"/admin/keys/{key_id}/revoke")

    async def rotate(self, key_id: str, grace_s: float | None = None) -> KeyWithSecret:
        body = {"grace_s": grace_s} if grace_s is not None else None
        return await self._client._model(
            KeyWithSecret, "POST", f"/admin/keys/{key_id}/rotate", body=body, retry_post=False
        )


class _Admin(_Resource):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self.keys = _Keys(client)
