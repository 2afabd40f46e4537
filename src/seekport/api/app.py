"""The composition root: ``create_app(settings)`` chooses and wires every concrete class."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from seekport import __version__
from seekport.api.deps import Services
from seekport.api.errors import anthropic_error_response, error_response, install_error_handlers
from seekport.api.jobs import Jobs
from seekport.api.lane import SeekportApp
from seekport.api.reload import Reloader
from seekport.api.routes import (
    admin,
    anthropic,
    console,
    embeddings,
    inference,
    knowledge,
    models_admin,
    records,
    responses,
    system,
)
from seekport.api.scope import RequestScope
from seekport.config import (
    LocalModelConfig,
    ManagedModelConfig,
    ModelConfig,
    OpenAIModelConfig,
    Settings,
)
from seekport.errors import SeekportError
from seekport.gateway.accounting import UsageRecorder
from seekport.gateway.audit import AuditLog
from seekport.gateway.auth import KeyService
from seekport.gateway.backends.base import ChatBackend
from seekport.gateway.backends.local import LocalBackend
from seekport.gateway.backends.local_embeddings import LocalEmbeddingBackend
from seekport.gateway.backends.local_engines import LocalEngines
from seekport.gateway.backends.managed import ManagedBackend
from seekport.gateway.backends.openai_compat import OpenAICompatBackend
from seekport.gateway.backends.remote_embeddings import RemoteEmbeddingBackend
from seekport.gateway.budgets import Budgets
from seekport.gateway.cache import ResponseCacher
from seekport.gateway.content_log import ContentLogger
from seekport.gateway.directory import Directory
from seekport.gateway.embeddings import EmbeddingBackend, EmbeddingService
from seekport.gateway.guard.policy import Guard
from seekport.gateway.lifecycle import resolve_adapter, resolve_path
from seekport.gateway.routing.breaker import Breaker
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.gateway.service import ChatService
from seekport.gateway.sessions import Sessions
from seekport.store.kv import Limiter, limiter_for
from seekport.store.kv.cache import ResponseCache, cache_for
from seekport.store.registry import Registry
from seekport.store.sql import (
    AuditRepository,
    ContentRepository,
    Database,
    KeyRepository,
    TenantRepository,
    UsageRepository,
    UsageTotals,
    UserRepository,
)
from seekport.telemetry import tracing
from seekport.telemetry.audit_stream import AuditStream
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from seekport.gateway.knowledge import KnowledgeDesk
    from seekport.knowledge.ingest import Ingestor
    from seekport.knowledge.retrieval import Retriever
    from seekport.knowledge.service import KnowledgeBases
    from seekport.store.knowledge import KnowledgeStore

log = logging.getLogger("seekport")


def build_backend(
    cfg: ModelConfig, metrics: Metrics, settings: Settings, engines: LocalEngines
) -> ChatBackend:
    """``engines``: the server's local engines (entries over one base share one)."""
    if isinstance(cfg, LocalModelConfig):
        registry = Registry(settings.resolved_models_dir)
        path, version = resolve_path(cfg.path, registry)
        adapter = resolve_adapter(cfg.adapter, registry)
        resolved = cfg.model_copy(update={"path": path, "adapter": adapter})
        if cfg.adapter and cfg.adapter.startswith("registry:"):  # what /v1/models shows
            tuned = registry.get(cfg.adapter.removeprefix("registry:")).ref
            version = f"{version}+{tuned}" if version else tuned
        return LocalBackend(resolved, metrics, version=version, engines=engines)
    if isinstance(cfg, ManagedModelConfig):
        return ManagedBackend(cfg, metrics, log_dir=settings.data_dir / "logs")
    return OpenAICompatBackend(cfg, metrics)


def build_embedding_backend(
    cfg: ModelConfig, metrics: Metrics, settings: Settings
) -> EmbeddingBackend:
    if isinstance(cfg, LocalModelConfig):
        return LocalEmbeddingBackend(cfg, settings.resolved_models_dir)
    assert isinstance(cfg, OpenAIModelConfig)  # a managed engine serves chat only
    return RemoteEmbeddingBackend(cfg, metrics)


async def start_embeddings(
    settings: Settings, metrics: Metrics, parts: _Parts | None = None
) -> EmbeddingService:
    """The embedding models' backends, started, behind one service."""
    backends: dict[str, list[EmbeddingBackend]] = {}
    for cfg in settings.embedding_models():
        backend = build_embedding_backend(cfg, metrics, settings)
        await backend.start()
        backends.setdefault(cfg.name, []).append(backend)
    return EmbeddingService(
        backends,
        metrics,
        parts.limiter if parts else None,
        parts.budgets if parts else None,
        settings.model_limits,
    )


@dataclass(slots=True)
class KnowledgeParts:
    """The knowledge layer's pieces over the embedded store."""

    store: KnowledgeStore
    embedder: LocalEmbeddingBackend
    ingestor: Ingestor
    retriever: Retriever
    bases: KnowledgeBases


def build_knowledge(
    settings: Settings, embeddings: EmbeddingService | None = None
) -> KnowledgeParts | None:
    """Knowledge bases over ``data_dir/knowledge.db`` and the configured embedding model (the
    server's own backend when it has one, so the model loads once); None without a local
    embedding model (a remote one is not wired to knowledge bases yet)."""
    from seekport.knowledge.ingest import Ingestor
    from seekport.knowledge.lexical import Analyzer
    from seekport.knowledge.retrieval import Retriever
    from seekport.knowledge.service import KnowledgeBases
    from seekport.store.knowledge import SqliteKnowledgeStore

    cfg = settings.knowledge_embedder()
    if not isinstance(cfg, LocalModelConfig):
        return None
    embedder = next(
        (
            b
            for b in (embeddings.backends() if embeddings is not None else [])
            if isinstance(b, LocalEmbeddingBackend) and b.model == cfg.name
        ),
        None,
    ) or LocalEmbeddingBackend(cfg, settings.resolved_models_dir)
    store: KnowledgeStore
    if settings.knowledge.database_url:
        from seekport.store.knowledge.pg import PgKnowledgeStore

        store = PgKnowledgeStore(settings.knowledge.database_url)
    else:
        store = SqliteKnowledgeStore(settings.data_dir / "knowledge.db")
    analyzer = Analyzer(settings.knowledge.words)
    ingestor = Ingestor(store, embedder, analyzer)
    retriever = Retriever(store, embedder, analyzer)
    k = settings.knowledge
    bases = KnowledgeBases(
        store,
        ingestor,
        retriever,
        cfg.name,
        {"chunk_tokens": k.chunk_tokens, "chunk_overlap": k.chunk_overlap},
    )
    return KnowledgeParts(store, embedder, ingestor, retriever, bases)


def _embedding_users(
    settings: Settings, embeddings: EmbeddingService, parts: _Parts, chat: ChatService
) -> KnowledgeDesk | None:
    """What the embedding models serve besides /embeddings: knowledge bases (grounded chat
    included) and the semantic cache."""
    desk = _knowledge_desk(settings, embeddings, parts)
    chat.knowledge = desk
    _semantic_cache(settings, embeddings, parts)
    return desk


def _semantic_cache(settings: Settings, embeddings: EmbeddingService, parts: _Parts) -> None:
    """The semantic cache's index over the first local embedding model, whenever the cache is
    on (the config's `cache.semantic` or a key's own switch says whether it is used; the
    embedder loads only when it first is)."""
    from seekport.gateway.semantic_cache import SemanticIndex

    if not settings.cache.enabled:
        return
    local = next((b for b in embeddings.backends() if isinstance(b, LocalEmbeddingBackend)), None)
    if local is None:
        return
    c = settings.cache
    parts.cacher.semantic = SemanticIndex(
        local.query_vector,
        threshold=c.semantic_threshold,
        max_entries=c.semantic_max_entries,
        ttl_s=c.ttl_s,
    )


def _knowledge_desk(
    settings: Settings, embeddings: EmbeddingService, parts: _Parts
) -> KnowledgeDesk | None:
    """Knowledge bases with their ingestion on the job queue; documents a crash left half
    ingested are queued again."""
    from seekport.gateway.knowledge import KnowledgeDesk

    kb = build_knowledge(settings, embeddings)
    if kb is None:
        return None
    parts.jobs.ingest_handler = kb.bases.ingest
    kb.bases.refresh_all()  # full-text words an older analyzer made are made again
    for doc_id in kb.bases.unfinished():
        parts.jobs.enqueue_ingest(doc_id)
    return KnowledgeDesk(kb.bases, parts.jobs.enqueue_ingest, parts.audit)


async def _start_chat(
    settings: Settings, metrics: Metrics, started: list[ChatBackend], engines: LocalEngines
) -> list[Deployment]:
    """The chat models' deployments, their backends started (and added to ``started``)."""
    deployments = []
    for dep_id, cfg in zip(settings.deployment_ids(), settings.models, strict=True):
        if cfg.kind != "chat":
            continue
        # a managed engine's start returns at once: it comes up in the background
        backend = build_backend(cfg, metrics, settings, engines)
        await backend.start()
        started.append(backend)
        deployments.append(build_deployment(dep_id, cfg, backend, settings))
    return deployments


def build_deployment(
    dep_id: str, cfg: ModelConfig, backend: ChatBackend, settings: Settings
) -> Deployment:
    return Deployment(
        dep_id,
        cfg.name,
        backend,
        weight=cfg.weight,
        tags=dict(cfg.tags),
        # the local engine restarts itself after a failure and refuses work meanwhile: it
        # has no breaker to trip (one engine crash ends every stream on it at once)
        breaker=None if cfg.backend == "local" else Breaker(settings.routing.breaker),
        first_token_timeout_s=getattr(cfg, "first_token_timeout_s", None),
        config=cfg,
    )


def _on_sighup(handler: Callable[[], None] | None) -> None:
    """Install (or remove) the SIGHUP handler; a loop outside the main thread (an app served
    by a test client) has no signals, and reloads through ``POST /admin/reload`` only."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        if handler is None:
            loop.remove_signal_handler(signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, handler)


def _drainer(services: Services, backends: list[ChatBackend], grace_s: float) -> Callable[[], None]:
    """What SIGTERM starts (from the signal handler, hence thread-safe): new requests get 503
    at once; answers under way get ``grace_s`` to finish, then the backends are closed, which
    ends each one with a 503 (in-band in a stream) and its usage record, before the server's
    own graceful timeout would cut connections with nothing said."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    async def drain() -> None:
        services.draining = True
        await asyncio.sleep(grace_s)
        log.info("shutdown grace over: ending the answers still open")
        for backend in backends:
            await backend.aclose()

    def start() -> None:
        if not tasks:
            tasks.append(loop.create_task(drain(), name="drain"))

    def begin() -> None:
        loop.call_soon_threadsafe(start)

    return begin


@dataclass(slots=True)
class _Parts:
    """What the services stand on: the limiter, keys, accounting, the audit log, the jobs."""

    limiter: Limiter
    audit_store: AuditRepository
    audit: AuditLog
    keys: KeyService
    recorder: UsageRecorder
    budgets: Budgets
    jobs: Jobs
    cache: ResponseCache
    cacher: ResponseCacher
    content: ContentLogger
    content_store: ContentRepository
    # the local models' engines: entries over one base file share one
    engines: LocalEngines = field(default_factory=LocalEngines)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        db: Database,
        metrics: Metrics,
        span_exporter: SpanExporter | None = None,
    ) -> _Parts:
        tracing.start(settings.tracing, span_exporter)
        limiter = limiter_for(settings)
        audit_store = AuditRepository(db)
        audit = AuditLog(audit_store, AuditStream.of(settings.audit_stream))
        keys = KeyService(
            KeyRepository(db),
            cache_ttl_s=settings.auth_cache_ttl_s,
            limiter=limiter,
            failures_per_minute=settings.auth_failures_per_minute,
            metrics=metrics,
            audit=audit,
        )
        usage = UsageRepository(db)
        recorder = UsageRecorder(usage, metrics, batch_max=settings.usage_batch_max)
        await recorder.start()
        await audit.start()
        loop = asyncio.get_running_loop()
        jobs = Jobs(settings, audit_store, ContentRepository(db), loop, metrics)
        jobs.start()
        budgets = Budgets(limiter, usage, settings.pricing)
        cache = cache_for(settings.redis_url, settings.cache.max_bytes)
        cacher = ResponseCacher(cache, settings.cache, metrics)
        content_store = ContentRepository(db)
        content = ContentLogger(content_store, settings.content_log)
        await content.start()
        return cls(
            limiter,
            audit_store,
            audit,
            keys,
            recorder,
            budgets,
            jobs,
            cache,
            cacher,
            content,
            content_store,
        )

    async def stop(self) -> None:
        """Commit what is queued (usage, aggregated audit rows), then let go."""
        tracing.stop()
        await self.recorder.stop()
        await self.content.stop()
        await asyncio.to_thread(self.jobs.stop)
        await self.audit.stop()
        await self.limiter.aclose()
        await self.cache.aclose()


def create_app(
    settings: Settings,
    reload_settings: Callable[[], Settings] | None = None,
    span_exporter: SpanExporter | None = None,
) -> SeekportApp:
    """The app for ``settings``; ``reload_settings`` re-reads the same sources for a hot reload
    (SIGHUP, ``POST /admin/reload``); ``span_exporter``: where spans go when ``tracing`` is on,
    instead of its OTLP endpoint."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        await db.open()
        parts = await _Parts.start(settings, db, metrics, span_exporter)
        deployments: list[Deployment] = []
        started: list[ChatBackend] = []
        embeddings: EmbeddingService | None = None
        try:
            embeddings = await start_embeddings(settings, metrics, parts)
            deployments = await _start_chat(settings, metrics, started, parts.engines)
            table = RoutingTable.of(deployments, settings.routing)
            chat = ChatService(
                table,
                parts.recorder,
                metrics,
                settings.aliases,
                parts.limiter,
                parts.budgets,
                settings.model_limits,
                parts.cacher,
                Guard(settings.guard, metrics),
                parts.content,
            )
            services = Services(
                settings,
                parts.keys,
                chat,
                metrics,
                int(time.time()),
                Directory(TenantRepository(db), UserRepository(db), parts.keys, parts.audit),
                parts.budgets,
                parts.audit,
                parts.audit_store,
                UsageTotals(db),
                parts.jobs,
                parts.content_store,
                embeddings=embeddings,
                knowledge=_embedding_users(settings, embeddings, parts, chat),
                sessions=Sessions.of(settings.console) if settings.console.enabled else None,
            )
            if reload_settings is not None:
                services.reloader = Reloader(
                    services,
                    reload_settings,
                    lambda _id, cfg, s: build_backend(cfg, metrics, s, parts.engines),
                    build_deployment,
                    started,
                    metrics,
                )
                _on_sighup(services.reloader.on_signal)
            app.state.services = services
            app.state.db = db
            app.state.begin_shutdown = _drainer(services, started, settings.shutdown_grace_s)
            yield
        finally:
            _on_sighup(None)
            app.state.begin_shutdown = None
            app.state.services = None
            for backend in started:
                await backend.aclose()
            if embeddings is not None:
                for eb in embeddings.backends():
                    await eb.aclose()
            await parts.stop()
            await db.close()

    app = SeekportApp(
        title="seekport",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # our metrics are Prometheus (telemetry/metrics.py); FastAPI's own OpenTelemetry hooks
        # would look up a tracer provider on every request (~4 % of the gateway's CPU)
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.services = None
    install_error_handlers(app)
    for routes in (inference, embeddings, knowledge, anthropic, responses, system, admin):
        app.include_router(routes.router)
    app.include_router(models_admin.router)
    app.include_router(records.router)
    console.install(app, settings.console.enabled)

    async def refuse(
        scope: Scope, receive: Receive, send: Send, route: str, err: SeekportError
    ) -> None:
        """A request the edge refused (oversized body) gets its usage record like any other."""
        render = anthropic_error_response if route.startswith("anthropic.") else error_response
        rs = RequestScope(app.state.services, Request(scope), route, render=render)
        await (await rs.refuse(err))(scope, receive, send)

    app.add_edge(  # the API routes skip the framework's stack (lane.py)
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.knowledge.max_upload_bytes,
        on_refusal=refuse,
    )
    return app
