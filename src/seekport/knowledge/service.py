"""Knowledge bases as a whole: what they hold, who may do what with them, ingestion's job body,
and search. Blocking (SQLite, the embedder): the gateway calls it from worker threads.

Roles on a knowledge base, from most to least:

    owner       everything: members, settings, delete
    editor      upload, re-ingest and delete documents; search; chat
    viewer      list documents; search; chat
    restricted  as viewer, but only documents tagged with one of its groups
    guest       chat with it only: not listed, no search, no documents

A tenant's admins (and superadmins) act as owners of the tenant's knowledge bases. Everyone
else needs a membership; whoever creates a knowledge base owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from seekport.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from seekport.knowledge.ingest import Ingestor, content_hash
from seekport.knowledge.retrieval import Hit, Mode, Retriever
from seekport.store.knowledge import (
    DocumentRecord,
    KnowledgeBaseRecord,
    MemberRecord,
)

log = logging.getLogger("seekport.knowledge")

Role = Literal["owner", "editor", "viewer", "restricted", "guest"]
ROLES: tuple[Role, ...] = ("owner", "editor", "viewer", "restricted", "guest")
Ability = Literal["manage", "write", "read", "chat"]
_ABILITIES: dict[str, frozenset[str]] = {
    "owner": frozenset(("manage", "write", "read", "chat")),
    "editor": frozenset(("write", "read", "chat")),
    "viewer": frozenset(("read", "chat")),
    "restricted": frozenset(("read", "chat")),
    "guest": frozenset(("chat",)),
}
_WHAT = {
    "manage": "manage it (members, settings, deletion)",
    "write": "change its documents",
    "read": "read or search it",
    "chat": "chat with it",
}
MAX_TOP_K = 100
MAX_QUERY_CHARS = 4000

if TYPE_CHECKING:
    from seekport.store.knowledge import KnowledgeStore


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: its tenant, its identity for memberships (its user, else its key), and
    whether it is the tenant's admin (or a superadmin: every tenant)."""

    tenant_id: str
    principal_id: str
    admin: bool = False
    superadmin: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    """An actor's standing on one knowledge base."""

    kb: KnowledgeBaseRecord
    role: Role
    groups: tuple[str, ...] = ()

    def can(self, ability: Ability) -> bool:
        return ability in _ABILITIES[self.role]

    @property
    def restricted(self) -> bool:
        return self.role == "restricted"


class KnowledgeBases:
    def __init__(
        self,
        store: KnowledgeStore,
        ingestor: Ingestor,
        retriever: Retriever,
        model: str,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.retriever = retriever
        self.model = model  # the embedding model new knowledge bases use
        self.defaults = defaults or {}  # settings of a new knowledge base (chunking)

    # ---- access

    def access(self, actor: Actor, kb_ref: str, ability: Ability) -> Access:
        """The actor's standing on a knowledge base (by id, or by name in its tenant), if it
        may ``ability``: 404 when it cannot see it at all (another tenant's, or no role),
        403 when its role does not reach."""
        kb = self.store.get_kb(kb_ref) or self.store.find_kb(actor.tenant_id, kb_ref)
        if kb is None or (kb.tenant_id != actor.tenant_id and not actor.superadmin):
            raise _missing(kb_ref)
        if actor.admin or actor.superadmin:
            found = Access(kb, "owner")
        else:
            m = self.store.member(kb.id, actor.principal_id)
            if m is None:
                raise _missing(kb_ref)
            found = Access(kb, m.role, tuple(m.groups))  # type: ignore[arg-type]
        if not found.can(ability):
            if ability != "chat" and not found.can("read"):
                raise _missing(kb_ref)  # a guest does not learn more than it may chat with it
            raise PermissionDeniedError(
                f"your role on the knowledge base '{kb.name}' ({found.role}) may not "
                f"{_WHAT[ability]}"
            )
        return found

    def visible(self, actor: Actor) -> list[tuple[KnowledgeBaseRecord, Role]]:
        """The knowledge bases the actor may list (a guest's are not listed)."""
        tenant = None if actor.superadmin else actor.tenant_id
        kbs = self.store.list_kbs(tenant)
        if actor.admin or actor.superadmin:
            return [(kb, "owner") for kb in kbs]
        mine = self.store.memberships(actor.principal_id)
        out: list[tuple[KnowledgeBaseRecord, Role]] = []
        for kb in kbs:
            m = mine.get(kb.id)
            if m is not None and m.role != "guest":
                out.append((kb, m.role))  # type: ignore[arg-type]
        return out

    # ---- knowledge bases

    def create(
        self,
        actor: Actor,
        name: str,
        *,
        description: str = "",
        settings: dict[str, Any] | None = None,
    ) -> KnowledgeBaseRecord:
        if self.store.find_kb(actor.tenant_id, name) is not None:
            raise InvalidRequestError(
                f"a knowledge base named '{name}' exists already", param="name", code="conflict"
            )
        kb = self.store.create_kb(
            actor.tenant_id,
            name,
            self.model,
            description=description,
            owner_id=actor.principal_id,
            settings={
                **self.defaults,
                **(settings or {}),
                "lexical_version": self.ingestor.analyzer.version,
            },
        )
        self.store.set_member(kb.id, actor.principal_id, "owner")
        return kb

    def delete(self, access: Access) -> None:
        self.store.delete_kb(access.kb.id)
        self.store.drop_unused_blobs()

    def set_member(
        self, access: Access, principal_id: str, role: str, groups: Sequence[str] = ()
    ) -> MemberRecord:
        if role not in ROLES:
            raise InvalidRequestError(
                f"role must be one of {', '.join(ROLES)}", param="role", code="invalid_role"
            )
        if role == "restricted" and not groups:
            raise InvalidRequestError(
                "a restricted member needs groups (the document tags it may read)",
                param="groups",
            )
        return self.store.set_member(access.kb.id, principal_id, role, groups)

    # ---- documents

    def upload(
        self, access: Access, filename: str, data: bytes, tags: Sequence[str] = ()
    ) -> tuple[DocumentRecord, bool]:
        """Keep the bytes and register the document: ``(record, changed)``; an unchanged
        re-upload does no work (its record as it is, ``changed`` False)."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
        if not name or len(name) > 255:
            raise InvalidRequestError("a document needs a file name of 1 to 255 characters")
        digest = content_hash(data)
        self.store.put_blob(digest, data)
        doc, changed = self.store.put_document(access.kb.id, name, digest, len(data), tags)
        return doc, changed

    def requeue(self, access: Access, doc_id: str) -> DocumentRecord:
        doc = self.document(access, doc_id)
        self.store.set_status(doc.id, "queued", progress=0.0)
        return self.document(access, doc_id)

    def documents(self, access: Access) -> list[DocumentRecord]:
        docs = self.store.list_documents(access.kb.id)
        if access.restricted:
            allowed = set(access.groups)
            docs = [d for d in docs if allowed.intersection(d.tags)]
        return docs

    def document(self, access: Access, doc_id: str) -> DocumentRecord:
        doc = self.store.get_document(doc_id)
        if doc is None or doc.kb_id != access.kb.id:
            raise NotFoundError(f"no document '{doc_id}' in this knowledge base", code="not_found")
        if access.restricted and not set(access.groups).intersection(doc.tags):
            raise NotFoundError(f"no document '{doc_id}' in this knowledge base", code="not_found")
        return doc

    def delete_document(self, access: Access, doc_id: str) -> None:
        doc = self.document(access, doc_id)
        self.store.delete_document(access.kb, doc.id)
        self.store.drop_unused_blobs()

    def ingest(self, doc_id: str) -> str:
        """The ingestion job's body: parse, chunk, embed and index one stored document. The
        outcome is in its status (done, or failed with the reason); returns it."""
        doc = self.store.get_document(doc_id)
        if doc is None:
            return "gone"  # deleted while it waited
        kb = self.store.get_kb(doc.kb_id)
        data = self.store.blob(doc.content_hash)
        if kb is None or data is None:
            self.store.set_status(doc_id, "failed", error="the uploaded bytes are gone")
            return "failed"
        parsed = self.ingestor.parse(doc_id, doc.filename, data)
        if parsed is None:
            return "failed"
        if not any(s.text.strip() for s in parsed.sections):
            self.store.set_status(doc_id, "failed", error=f"{doc.filename}: no text in it")
            return "failed"
        self.store.set_status(doc_id, "embedding", progress=0.0, title=parsed.title)
        self.ingestor.ingest(kb, [(doc_id, parsed)])
        return "done"

    # ---- search

    def allowed_documents(
        self, access: Access, tags: Sequence[str] | None, filename: str | None
    ) -> list[str] | None:
        """The documents a search may read: None for all of them; for a restricted reader,
        those tagged with its groups, narrowed by the request's own filters."""
        if access.restricted:
            groups = list(access.groups)
            tags = groups if tags is None else [t for t in tags if t in groups]
        if tags is None and filename is None:
            return None
        return self.store.document_ids(access.kb.id, tags, filename)

    def search(
        self,
        access: Access,
        query: str,
        *,
        top_k: int = 10,
        mode: Mode = "hybrid",
        tags: Sequence[str] | None = None,
        filename: str | None = None,
    ) -> list[Hit]:
        if not query.strip():
            raise InvalidRequestError("query must not be empty", param="query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidRequestError(
                f"query is longer than {MAX_QUERY_CHARS} characters", param="query"
            )
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequestError(f"top_k must be 1 to {MAX_TOP_K}", param="top_k")
        docs = self.allowed_documents(access, tags, filename)
        return self.retriever.search(access.kb, query, k=top_k, mode=mode, documents=docs)

    def refresh_terms(self, kb: KnowledgeBaseRecord) -> bool:
        """Rewrite a knowledge base's full-text rows if an older analyzer made them (True
        when it did): its chunks' words, not their vectors, are made again."""
        a = self.ingestor.analyzer
        if str(kb.settings.get("lexical_version")) == a.version:
            return False
        titles: dict[str, str] = {}
        rows = []
        for cid, text, headings, title in self.store.chunk_texts(kb):
            if title not in titles:
                titles[title] = a.document(title)
            rows.append((cid, titles[title], a.document(" ".join(headings)), a.document(text)))
        self.store.rewrite_terms(kb, rows, {**kb.settings, "lexical_version": a.version})
        return True

    def refresh_all(self) -> int:
        """At start: every knowledge base's terms as the current analyzer makes them."""
        return sum(self.refresh_terms(kb) for kb in self.store.list_kbs(None))

    def unfinished(self) -> list[str]:
        """Documents whose ingestion a crash may have cut: to queue again at start."""
        return [d.id for d in self.store.unfinished()]


def _missing(ref: str) -> NotFoundError:
    return NotFoundError(f"no knowledge base '{ref}'", code="knowledge_base_not_found")
