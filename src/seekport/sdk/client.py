"""``Client``: the synchronous face of :class:`AsyncClient`.

It owns one event loop in a daemon thread and runs the async client's calls there, so the
retries, breakers and streams are the async code's, written once. Streams are iterated from
the caller's thread one delta at a time. Safe to share between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

from seekport.protocol.admin import Key, KeyWithSecret, Tenant, UsageReport, User
from seekport.protocol.balance import UserBalance
from seekport.protocol.chat import ChatCompletion
from seekport.protocol.common import Usage
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
from seekport.sdk.aio import AsyncClient
from seekport.sdk.streaming import AsyncChatStream, AsyncCompletionStream, ChatDelta, TextDelta

T = TypeVar("T")
D = TypeVar("D", ChatDelta, TextDelta)


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="seekport-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller's thread stops the call too
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def settle() -> None:
            # what async generators left (an error in a stream's reader), and the transports'
            # last callbacks (closing their sockets) run before the loop stops
            await self.loop.shutdown_asyncgens()
            for _ in range(5):
                await asyncio.sleep(0)

        done = asyncio.run_coroutine_threadsafe(settle(), self.loop)
        with contextlib.suppress(Exception):
            done.result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _SyncStream(Generic[D]):
    def __init__(self, inner: AsyncChatStream | AsyncCompletionStream, loop: _Loop) -> None:
        self._inner = inner
        self._loop = loop

    def __iter__(self) -> Iterator[D]:
        return self

    def __next__(self) -> D:
        async def step() -> Any:
            return await anext(self._inner)

        try:
            return self._loop.run(step())  # type: ignore[no-any-return]
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    @property
    def finish_reason(self) -> str | None:
        return self._inner.finish_reason

    @property
    def model(self) -> str | None:
        return self._inner.model

    @property
    def request_id(self) -> str | None:
        return self._inner.request_id

    def close(self) -> None:
        self._loop.run(self._inner.aclose())

    def __enter__(self) -> _SyncStream[D]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChatStream(_SyncStream[ChatDelta]):
    """``for delta in stream``: :class:`ChatDelta` steps; ``content``, ``reasoning_content``
    and ``usage`` after the loop."""

    _inner: AsyncChatStream

    @property
    def content(self) -> str:
        return self._inner.content

    @property
    def reasoning_content(self) -> str:
        return self._inner.reasoning_content

    @property
    def citations(self) -> list[dict[str, Any]] | None:
        return self._inner.citations

    def collect(self) -> ChatStream:
        for _ in self:
            pass
        return self


class CompletionStream(_SyncStream[TextDelta]):
    _inner: AsyncCompletionStream

    @property
    def text(self) -> str:
        return self._inner.text

    def collect(self) -> CompletionStream:
        for _ in self:
            pass
        return self


class Client:
    """Same arguments as :class:`AsyncClient`."""

    def __init__(self, **options: Any) -> None:
        self._loop = _Loop()

        async def make() -> AsyncClient:
            return AsyncClient(**options)

        try:
            self.aio = self._loop.run(make())
        except BaseException:
            self._loop.close()
            raise
        self.chat = _Chat(self)
        self.completions = _Completions(self)
        self.embeddings = _Embeddings(self)
        self.models = _Models(self)
        self.knowledge = _Knowledge(self)
        self.admin = _Admin(self)

    @property
    def base_url(self) -> str:
        return self.aio.base_url

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

    def balance(self) -> UserBalance:
        return self._run(self.aio.balance())

    def usage(self, **filters: Any) -> UsageReport:
        return self._run(self.aio.usage(**filters))

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._run(self.aio.close())
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Client) -> None:
        self._c = client


class _ChatCompletions(_Resource):
    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        **params: Any,
    ) -> ChatStream: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        **params: Any,
    ) -> ChatCompletion | ChatStream:
        create = self._c.aio.chat.completions.create
        if stream:
            inner = self._c._run(create(model=model, messages=messages, stream=True, **params))
            return ChatStream(inner, self._c._loop)
        answer: ChatCompletion = self._c._run(create(model=model, messages=messages, **params))
        return answer


class _Chat(_Resource):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.completions = _ChatCompletions(client)


class _Completions(_Resource):
    @overload
    def create(
        self, *, model: str, prompt: str, stream: Literal[False] = False, **params: Any
    ) -> Completion: ...

    @overload
    def create(
        self, *, model: str, prompt: str, stream: Literal[True], **params: Any
    ) -> CompletionStream: ...

    def create(
        self, *, model: str, prompt: str, stream: bool = False, **params: Any
    ) -> Completion | CompletionStream:
        create = self._c.aio.completions.create
        if stream:
            inner = self._c._run(create(model=model, prompt=prompt, stream=True, **params))
            return CompletionStream(inner, self._c._loop)
        answer: Completion = self._c._run(create(model=model, prompt=prompt, **params))
        return answer


class _Embeddings(_Resource):
    def create(self, *, model: str, input: str | list[str], **params: Any) -> EmbeddingResponse:
        return self._c._run(self._c.aio.embeddings.create(model=model, input=input, **params))


class _Models(_Resource):
    def list(self) -> ModelList:
        return self._c._run(self._c.aio.models.list())

    def retrieve(self, model: str) -> ModelCard:
        return self._c._run(self._c.aio.models.retrieve(model))


class _Knowledge(_Resource):
    def list(self) -> KnowledgeBaseList:
        return self._c._run(self._c.aio.knowledge.list())

    def create(self, name: str, **fields: Any) -> KnowledgeBase:
        return self._c._run(self._c.aio.knowledge.create(name, **fields))

    def retrieve(self, kb: str) -> KnowledgeBase:
        return self._c._run(self._c.aio.knowledge.retrieve(kb))

    def delete(self, kb: str) -> None:
        self._c._run(self._c.aio.knowledge.delete(kb))

    def upload(
        self, kb: str, files: Iterable[str | Path | tuple[str, bytes]], **kw: Any
    ) -> DocumentList:
        return self._c._run(self._c.aio.knowledge.upload(kb, list(files), **kw))

    def documents(self, kb: str) -> DocumentList:
        return self._c._run(self._c.aio.knowledge.documents(kb))

    def document(self, kb: str, doc: str) -> Document:
        return self._c._run(self._c.aio.knowledge.document(kb, doc))

    def search(self, kb: str, query: str, **params: Any) -> SearchResult:
        return self._c._run(self._c.aio.knowledge.search(kb, query, **params))


class _Keys(_Resource):
    def create(self, name: str, role: str = "user", **fields: Any) -> KeyWithSecret:
        return self._c._run(self._c.aio.admin.keys.create(name, role, **fields))

    def list(self, **filters: Any) -> list[Key]:
        return self._c._run(self._c.aio.admin.keys.list(**filters))

    def retrieve(self, key_id: str) -> Key:
        return self._c._run(self._c.aio.admin.keys.retrieve(key_id))

    def revoke(self, key_id: str) -> Key:
        return self._c._run(self._c.aio.admin.keys.revoke(key_id))

    def rotate(self, key_id: str, grace_s: float | None = None) -> KeyWithSecret:
        return self._c._run(self._c.aio.admin.keys.rotate(key_id, grace_s))


class _Tenants(_Resource):
    def create(self, name: str, **fields: Any) -> Tenant:
        return self._c._run(self._c.aio.admin.tenants.create(name, **fields))

    def list(self) -> list[Tenant]:
        return self._c._run(self._c.aio.admin.tenants.list())

    def retrieve(self, tenant_id: str) -> Tenant:
        return self._c._run(self._c.aio.admin.tenants.retrieve(tenant_id))

    def update(self, tenant_id: str, **fields: Any) -> Tenant:
        return self._c._run(self._c.aio.admin.tenants.update(tenant_id, **fields))


class _Users(_Resource):
    def create(self, name: str, **fields: Any) -> User:
        return self._c._run(self._c.aio.admin.users.create(name, **fields))

    def list(self, *, tenant_id: str | None = None) -> list[User]:
        return self._c._run(self._c.aio.admin.users.list(tenant_id=tenant_id))

    def retrieve(self, user_id: str) -> User:
        return self._c._run(self._c.aio.admin.users.retrieve(user_id))

    def update(self, user_id: str, **fields: Any) -> User:
        return self._c._run(self._c.aio.admin.users.update(user_id, **fields))


class _LocalModels(_Resource):
    def use(self, model: str, version: str) -> dict[str, Any]:
        return self._c._run(self._c.aio.admin.models.use(model, version))

    def rollback(self, model: str) -> dict[str, Any]:
        return self._c._run(self._c.aio.admin.models.rollback(model))

    def versions(self, model: str) -> dict[str, Any]:
        return self._c._run(self._c.aio.admin.models.versions(model))


class _Admin(_Resource):
    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.keys = _Keys(client)
        self.tenants = _Tenants(client)
        self.users = _Users(client)
        self.models = _LocalModels(client)
