"""``/v1/knowledge``: knowledge bases, their documents (multipart uploads, bounded by
``knowledge.max_upload_bytes``), members, and search.

Thin: authorize (the ``knowledge`` permission), parse, hand the work to the gateway's
``KnowledgeDesk`` (roles per knowledge base, audit, jobs), encode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from seekport.api.deps import Services
from seekport.api.routes.admin import _admin, _json, body
from seekport.api.routes.inference import _parse as parse_body
from seekport.api.scope import RequestScope
from seekport.errors import InvalidRequestError, OverloadedError
from seekport.gateway.auth import Principal
from seekport.gateway.knowledge import KnowledgeDesk, Uploaded
from seekport.protocol.knowledge import (
    Document,
    DocumentList,
    KnowledgeBase,
    KnowledgeBaseCreate,
    KnowledgeBaseList,
    Member,
    MemberList,
    MemberSet,
    SearchHit,
    SearchRequest,
    SearchResult,
)
from seekport.store.knowledge import DocumentRecord, KnowledgeBaseRecord, MemberRecord

router = APIRouter()
MAX_FILES = 100
Work = Callable[[KnowledgeDesk, Principal, RequestScope], Awaitable[Response]]


async def _kb(request: Request, route: str, work: Work) -> Response:
    async def run(svc: Services, who: Principal, scope: RequestScope) -> Response:
        if svc.knowledge is None:
            raise OverloadedError(
                "knowledge bases are off: they need a local embedding model (a models[] entry "
                "with kind: embedding)",
                code="knowledge_unavailable",
            )
        return await work(svc.knowledge, who, scope)

    return await _admin(request, route, "knowledge", run)


def _base(kb: KnowledgeBaseRecord, role: str) -> KnowledgeBase:
    return KnowledgeBase(
        id=kb.id,
        name=kb.name,
        description=kb.description,
        embedding_model=kb.embedding_model,
        role=role,
        settings=dict(kb.settings),
        created_at=kb.created_at,
    )


def _document(d: DocumentRecord, changed: bool | None = None) -> Document:
    return Document(
        id=d.id,
        knowledge_base=d.kb_id,
        filename=d.filename,
        size=d.size,
        title=d.title,
        tags=d.tags,
        status=d.status,
        error=d.error,
        progress=round(d.progress, 4),
        chunks=d.chunks,
        created_at=d.created_at,
        updated_at=d.updated_at,
        changed=changed,
    )


def _member(m: MemberRecord) -> Member:
    return Member(
        principal_id=m.principal_id, role=m.role, groups=m.groups, created_at=m.created_at
    )


@router.post(
    "/v1/knowledge",
    response_model=KnowledgeBase,
    status_code=201,
    openapi_extra=body(KnowledgeBaseCreate),
)
async def create_kb(request: Request) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, KnowledgeBaseCreate)
        assert isinstance(spec, KnowledgeBaseCreate)
        settings: dict[str, Any] = {
            "lexical_weight": spec.lexical_weight,
            "dense_weight": spec.dense_weight,
            "fusion": spec.fusion,
        }
        if spec.chunk_tokens is not None:
            settings["chunk_tokens"] = spec.chunk_tokens
        if spec.chunk_overlap is not None:
            settings["chunk_overlap"] = spec.chunk_overlap
        kb = await desk.create(who, spec.name.strip(), spec.description, settings)
        return _json(_base(kb, "owner"), scope, 201)

    return await _kb(request, "knowledge.create", work)


@router.get("/v1/knowledge", response_model=KnowledgeBaseList)
async def list_kbs(request: Request) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        found = await desk.visible(who)
        return _json(KnowledgeBaseList(data=[_base(kb, role) for kb, role in found]), scope)

    return await _kb(request, "knowledge.list", work)


@router.get("/v1/knowledge/{kb}", response_model=KnowledgeBase)
async def get_kb(request: Request, kb: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        access = await desk.access(who, kb, "read")
        return _json(_base(access.kb, access.role), scope)

    return await _kb(request, "knowledge.get", work)


@router.delete("/v1/knowledge/{kb}", status_code=204)
async def delete_kb(request: Request, kb: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        await desk.delete(who, kb)
        return Response(status_code=204, headers=scope.headers())

    return await _kb(request, "knowledge.delete", work)


# ---- documents


def _tags(values: list[Any]) -> list[str]:
    tags = [str(t).strip() for v in values for t in str(v).split(",") if str(t).strip()]
    if any(len(t) > 64 for t in tags) or len(tags) > 32:
        raise InvalidRequestError("at most 32 tags of at most 64 characters", param="tags")
    return tags


@router.post(
    "/v1/knowledge/{kb}/documents",
    response_model=DocumentList,
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "tags": {"type": "string", "description": "comma-separated"},
                        },
                        "required": ["file"],
                    }
                }
            },
        }
    },
)
async def upload(request: Request, kb: str) -> Response:
    """Upload one or more files (field ``file``, repeated); each is ingested in the background.
    202 with each document's status; an unchanged file comes back with ``changed: false``."""

    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        await desk.access(who, kb, "write")  # before reading the body
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequestError(
                "upload files as multipart/form-data, in the field 'file'", param="file"
            )
        form = await request.form(max_files=MAX_FILES, max_fields=64)
        try:
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise InvalidRequestError("no file in the field 'file'", param="file")
            read = [(f.filename or "document", await f.read()) for f in files]
        finally:
            await form.close()
        done: list[Uploaded] = await desk.upload(who, kb, read, _tags(form.getlist("tags")))
        out = DocumentList(data=[_document(u.document, u.changed) for u in done])
        return _json(out, scope, 202)

    return await _kb(request, "knowledge.upload", work)


@router.get("/v1/knowledge/{kb}/documents", response_model=DocumentList)
async def list_documents(request: Request, kb: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        docs = await desk.documents(who, kb)
        return _json(DocumentList(data=[_document(d) for d in docs]), scope)

    return await _kb(request, "knowledge.documents", work)


@router.get("/v1/knowledge/{kb}/documents/{doc}", response_model=Document)
async def get_document(request: Request, kb: str, doc: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        return _json(_document(await desk.document(who, kb, doc)), scope)

    return await _kb(request, "knowledge.document", work)


@router.delete("/v1/knowledge/{kb}/documents/{doc}", status_code=204)
async def delete_document(request: Request, kb: str, doc: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        await desk.delete_document(who, kb, doc)
        return Response(status_code=204, headers=scope.headers())

    return await _kb(request, "knowledge.document.delete", work)


@router.post(
    "/v1/knowledge/{kb}/documents/{doc}/reingest", response_model=Document, status_code=202
)
async def reingest(request: Request, kb: str, doc: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        return _json(_document(await desk.reingest(who, kb, doc)), scope, 202)

    return await _kb(request, "knowledge.reingest", work)


# ---- members


@router.get("/v1/knowledge/{kb}/members", response_model=MemberList)
async def list_members(request: Request, kb: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        found = await desk.members(who, kb)
        return _json(MemberList(data=[_member(m) for m in found]), scope)

    return await _kb(request, "knowledge.members", work)


@router.post("/v1/knowledge/{kb}/members", response_model=Member, openapi_extra=body(MemberSet))
async def set_member(request: Request, kb: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, MemberSet)
        assert isinstance(spec, MemberSet)
        m = await desk.set_member(who, kb, spec.principal_id, spec.role, spec.groups)
        return _json(_member(m), scope)

    return await _kb(request, "knowledge.members.set", work)


@router.delete("/v1/knowledge/{kb}/members/{principal_id}", status_code=204)
async def remove_member(request: Request, kb: str, principal_id: str) -> Response:
    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        await desk.remove_member(who, kb, principal_id)
        return Response(status_code=204, headers=scope.headers())

    return await _kb(request, "knowledge.members.remove", work)


# ---- search


@router.post(
    "/v1/knowledge/{kb}/search", response_model=SearchResult, openapi_extra=body(SearchRequest)
)
async def search(request: Request, kb: str) -> Response:
    """Ranked chunks, each with why it ranked: its rank and score in the lexical (BM25) and
    dense (embedding) legs, and the fused score."""

    async def work(desk: KnowledgeDesk, who: Principal, scope: RequestScope) -> Response:
        spec, _ = await parse_body(request, SearchRequest)
        assert isinstance(spec, SearchRequest)
        access, hits = await desk.search(
            who,
            kb,
            spec.query,
            top_k=spec.top_k,
            mode=spec.mode,
            tags=spec.filter.tags,
            filename=spec.filter.filename,
        )
        data = [
            SearchHit(
                id=h.chunk.id,
                score=round(h.score, 6),
                text=h.chunk.text,
                document_id=h.chunk.document_id,
                filename=h.chunk.filename,
                title=h.chunk.title,
                position=h.chunk.position,
                headings=h.chunk.headings,
                lexical_rank=h.lexical_rank,
                lexical_score=None if h.lexical_score is None else round(h.lexical_score, 6),
                dense_rank=h.dense_rank,
                dense_score=None if h.dense_score is None else round(h.dense_score, 6),
            )
            for h in hits
        ]
        return _json(SearchResult(knowledge_base=access.kb.id, mode=spec.mode, data=data), scope)

    return await _kb(request, "knowledge.search", work)
