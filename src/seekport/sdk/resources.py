"""The AsyncClient's resources: ``chat.completions``, ``completions``, ``embeddings``,
``models`` (the openai package's shapes) and seekport's ``knowledge`` and ``admin.keys``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from seekport.protocol.admin import Key, KeyWithSecret, ListOf, Tenant, User
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
from seekport.sdk.streaming import AsyncChatStream, AsyncCompletionStream

if TYPE_CHECKING:
    from seekport.sdk.aio import AsyncClient


def _body(fields: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if v is not None}
    out.update(extra)
    return out


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class ChatCompletions(_Resource):
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


class Chat(_Resource):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self.completions = ChatCompletions(client)


class Completions(_Resource):
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


class Embeddings(_Resource):
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


class Models(_Resource):
    async def list(self) -> ModelList:
        return await self._client._model(ModelList, "GET", "/v1/models")

    async def retrieve(self, model: str) -> ModelCard:
        return await self._client._model(ModelCard, "GET", f"/v1/models/{model}")


class Knowledge(_Resource):
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


class Keys(_Resource):
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


class Tenants(_Resource):
    async def create(self, name: str, **fields: Any) -> Tenant:
        """A tenant (``limits``); a superadmin key."""
        return await self._client._model(
            Tenant, "POST", "/admin/tenants", body={"name": name, **fields}, retry_post=False
        )

    async def list(self) -> list[Tenant]:
        return (await self._client._model(ListOf[Tenant], "GET", "/admin/tenants")).data

    async def retrieve(self, tenant_id: str) -> Tenant:
        return await self._client._model(Tenant, "GET", f"/admin/tenants/{tenant_id}")

    async def update(self, tenant_id: str, **fields: Any) -> Tenant:
        """``limits``, ``disabled``."""
        return await self._client._model(
            Tenant, "PATCH", f"/admin/tenants/{tenant_id}", body=fields, retry_post=False
        )


class Users(_Resource):
    async def create(self, name: str, **fields: Any) -> User:
        """A user (``tenant_id``, ``limits``)."""
        return await self._client._model(
            User, "POST", "/admin/users", body={"name": name, **fields}, retry_post=False
        )

    async def list(self, *, tenant_id: str | None = None) -> list[User]:
        params = {"tenant_id": tenant_id} if tenant_id else None
        return (await self._client._model(ListOf[User], "GET", "/admin/users", params=params)).data

    async def retrieve(self, user_id: str) -> User:
        return await self._client._model(User, "GET", f"/admin/users/{user_id}")

    async def update(self, user_id: str, **fields: Any) -> User:
        """``limits``, ``disabled``."""
        return await self._client._model(
            User, "PATCH", f"/admin/users/{user_id}", body=fields, retry_post=False
        )


class LocalModels(_Resource):
    """Switching a local model between registry versions (superadmin)."""

    async def use(self, model: str, version: str) -> dict[str, Any]:
        """Serve ``model`` from ``version`` (NAME@VERSION); calls under way finish on the old."""
        data: dict[str, Any] = await self._client._json(
            "POST", f"/admin/models/{model}/use", body={"version": version}
        )
        return data

    async def rollback(self, model: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._client._json("POST", f"/admin/models/{model}/rollback")
        return data

    async def versions(self, model: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._client._json("GET", f"/admin/models/{model}/versions")
        return data


class Admin(_Resource):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self.keys = Keys(client)
        self.tenants = Tenants(client)
        self.users = Users(client)
        self.models = LocalModels(client)
