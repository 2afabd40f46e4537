"""Knowledge bases on behalf of a caller: its key's role (the ``knowledge`` permission), its
standing on each knowledge base (``knowledge.service``: 404 for what it may not see), an audit
row for every change (committed before the answer), ingestion queued as a durable job, and the
blocking work (SQLite, the embedder) on worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seekport.gateway.audit import AuditLog, note_change
from seekport.gateway.auth import Principal
from seekport.knowledge.retrieval import Hit, Mode
from seekport.knowledge.service import Access, Actor, KnowledgeBases, Role
from seekport.store.knowledge import DocumentRecord, KnowledgeBaseRecord, MemberRecord

Enqueue = Callable[[str], None]  # queue the ingestion of a document (by id)


def actor_of(who: Principal) -> Actor:
    return Actor(
        tenant_id=who.tenant_id,
        principal_id=who.user_id or who.key_id,
        admin=who.role == "admin",
        superadmin=who.role == "superadmin",
    )


@dataclass(frozen=True, slots=True)
class Uploaded:
    document: DocumentRecord
    changed: bool  # False: the same bytes were there already; nothing to do


class KnowledgeDesk:
    def __init__(
        self, kbs: KnowledgeBases, enqueue: Enqueue, audit: AuditLog | None = None
    ) -> None:
        self.kbs = kbs
        self._enqueue = enqueue
        self._audit = audit

    async def _note(
        self,
        who: Principal,
        action: str,
        target_type: str,
        target_id: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await note_change(self._audit, who, action, target_type, target_id, who.tenant_id, detail)

    async def access(self, who: Principal, ref: str, ability: Any) -> Access:
        who.require("knowledge")
        return await asyncio.to_thread(self.kbs.access, actor_of(who), ref, ability)

    # ---- knowledge bases

    async def create(
        self, who: Principal, name: str, description: str, settings: dict[str, Any]
    ) -> KnowledgeBaseRecord:
        who.require("knowledge")
        kb = await asyncio.to_thread(
            lambda: self.kbs.create(actor_of(who), name, description=description, settings=settings)
        )
        await self._note(who, "kb.create", "knowledge_base", kb.id, {"name": name})
        return kb

    async def visible(self, who: Principal) -> list[tuple[KnowledgeBaseRecord, Role]]:
        who.require("knowledge")
        return await asyncio.to_thread(self.kbs.visible, actor_of(who))

    async def delete(self, who: Principal, ref: str) -> None:
        access = await self.access(who, ref, "manage")
        await asyncio.to_thread(self.kbs.delete, access)
        await self._note(who, "kb.delete", "knowledge_base", access.kb.id, {"name": access.kb.name})

    async def set_member(
        self, who: Principal, ref: str, principal_id: str, role: str, groups: Sequence[str]
    ) -> MemberRecord:
        access = await self.access(who, ref, "manage")
        m = await asyncio.to_thread(self.kbs.set_member, access, principal_id, role, groups)
        await self._note(
            who,
            "kb.member.set",
            "knowledge_base",
            access.kb.id,
            {"principal_id": principal_id, "role": role, "groups": list(groups)},
        )
        return m

    async def remove_member(self, who: Principal, ref: str, principal_id: str) -> bool:
        access = await self.access(who, ref, "manage")
        gone = await asyncio.to_thread(self.kbs.store.remove_member, access.kb.id, principal_id)
        await self._note(
            who, "kb.member.remove", "knowledge_base", access.kb.id, {"principal_id": principal_id}
        )
        return gone

    async def members(self, who: Principal, ref: str) -> list[MemberRecord]:
        access = await self.access(who, ref, "manage")
        return await asyncio.to_thread(self.kbs.store.members, access.kb.id)

    # ---- documents

    async def upload(
        self,
        who: Principal,
        ref: str,
        files: Sequence[tuple[str, bytes]],
        tags: Sequence[str],
    ) -> list[Uploaded]:
        """Keep each file and queue its ingestion; an unchanged file is reported as such
        and costs nothing."""
        access = await self.access(who, ref, "write")
        out = []
        for filename, data in files:
            doc, changed = await asyncio.to_thread(self.kbs.upload, access, filename, data, tags)
            if changed:
                self._enqueue(doc.id)
                await self._note(
                    who,
                    "kb.document.upload",
                    "document",
                    doc.id,
                    {"kb": access.kb.id, "filename": doc.filename, "size": doc.size},
                )
            out.append(Uploaded(doc, changed))
        return out

    async def documents(self, who: Principal, ref: str) -> list[DocumentRecord]:
        access = await self.access(who, ref, "read")
        return await asyncio.to_thread(self.kbs.documents, access)

    async def document(self, who: Principal, ref: str, doc_id: str) -> DocumentRecord:
        access = await self.access(who, ref, "read")
        return await asyncio.to_thread(self.kbs.document, access, doc_id)

    async def delete_document(self, who: Principal, ref: str, doc_id: str) -> None:
        access = await self.access(who, ref, "write")
        await asyncio.to_thread(self.kbs.delete_document, access, doc_id)
        await self._note(who, "kb.document.delete", "document", doc_id, {"kb": access.kb.id})

    async def reingest(self, who: Principal, ref: str, doc_id: str) -> DocumentRecord:
        access = await self.access(who, ref, "write")
        doc = await asyncio.to_thread(self.kbs.requeue, access, doc_id)
        self._enqueue(doc.id)
        await self._note(who, "kb.document.reingest", "document", doc_id, {"kb": access.kb.id})
        return doc

    # ---- search

    async def search(
        self,
        who: Principal,
        ref: str,
        query: str,
        *,
        top_k: int,
        mode: Mode,
        tags: Sequence[str] | None,
        filename: str | None,
    ) -> tuple[Access, list[Hit]]:
        access = await self.access(who, ref, "read")
        hits = await asyncio.to_thread(
            lambda: self.kbs.search(
                access, query, top_k=top_k, mode=mode, tags=tags, filename=filename
            )
        )
        return access, hits

    async def context(
        self, who: Principal, refs: Sequence[str], query: str, top_k: int
    ) -> list[tuple[Hit, str]]:
        """The best ``top_k`` chunks for ``query`` over the named knowledge bases (each read
        with the caller's standing on it), best first, with their knowledge base's name."""
        accesses = [await self.access(who, ref, "chat") for ref in refs]

        def run() -> list[tuple[Hit, str]]:
            vector = self.kbs.retriever.query_vectors([query])[0]  # embedded once for all
            found: list[tuple[Hit, str]] = []
            for a in accesses:
                docs = self.kbs.allowed_documents(a, None, None)
                hits = self.kbs.retriever.search(
                    a.kb, query, k=top_k, vector=vector, documents=docs
                )
                found += [(h, a.kb.name) for h in hits]
            found.sort(key=lambda pair: -pair[0].score)
            return found[:top_k]

        return await asyncio.to_thread(run)
