"""Knowledge bases over the real SQLite store, analyzer, chunker and retriever, with a small
hashing embedder standing in for the model (the e5 model itself is tested in
tests/unit/test_embedder_e5.py and end to end in tests/e2e/test_knowledge.py)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from seekport.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from seekport.knowledge.ingest import Ingestor
from seekport.knowledge.lexical import Analyzer
from seekport.knowledge.retrieval import Retriever
from seekport.knowledge.service import Actor, KnowledgeBases
from seekport.protocol.embeddings import InputType
from seekport.store.knowledge import SqliteKnowledgeStore

DIM = 64
_WORD = re.compile(r"\w")


class HashingEmbedder:
    """Bag of characters hashed into 64 dimensions: similar texts get similar vectors."""

    model = "hashing"
    max_tokens = 512

    def __init__(self) -> None:
        self.embedded = 0

    def token_ids(self, text: str) -> list[int]:
        return [ord(c) for c in text if _WORD.match(c)]

    def embed_texts(self, texts: Sequence[str], input_type: InputType) -> npt.NDArray[np.float32]:
        self.embedded += len(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            for c in t.lower():
                if _WORD.match(c):
                    out[i, hashlib.md5(c.encode()).digest()[0] % DIM] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


OWNER = Actor("ten_a", "usr_owner")
ADMIN = Actor("ten_a", "key_admin", admin=True)
OTHER_TENANT = Actor("ten_b", "usr_b", admin=True)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(words=["星澜智算平台"])  # jieba's dictionary loads once (~1 s)


@pytest.fixture
def kbs(tmp_path: Path, analyzer: Analyzer) -> KnowledgeBases:
    store = SqliteKnowledgeStore(tmp_path / "knowledge.db")
    emb = HashingEmbedder()
    return KnowledgeBases(
        store, Ingestor(store, emb, analyzer), Retriever(store, emb, analyzer), emb.model
    )


def _add(kbs: KnowledgeBases, kb: str, name: str, text: str, tags: Sequence[str] = ()) -> str:
    access = kbs.access(OWNER, kb, "write")
    doc, changed = kbs.upload(access, name, text.encode(), tags)
    if changed:
        assert kbs.ingest(doc.id) == "done"
    return doc.id


DOCS = {
    "gpu.md": "# 部署指南\n\n星澜智算平台支持 GPU 推理。错误码 ERR-4021 表示显存不足。\n",
    "hr.txt": "Employees accrue vacation days monthly. Vacation requests go to the manager.\n",
    "sales.md": "# Pricing\n\nThe enterprise plan costs 400 per seat per year.\n",
}


def _filled(kbs: KnowledgeBases) -> str:
    kb = kbs.create(OWNER, "docs")
    for name, text in DOCS.items():
        _add(kbs, kb.id, name, text, tags=["sales"] if name == "sales.md" else ["all"])
    return kb.id


def test_search_finds_exact_codes_and_whole_chinese_names(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    access = kbs.access(OWNER, kb, "read")
    hits = kbs.search(access, "ERR-4021", mode="bm25")
    assert hits and hits[0].chunk.filename == "gpu.md"
    hits = kbs.search(access, "星澜智算平台")
    assert hits[0].chunk.filename == "gpu.md"
    assert hits[0].lexical_rank == 1 and hits[0].dense_rank is not None
    assert hits[0].chunk.headings == ["部署指南"]
    hits = kbs.search(access, "how many vacation days do employees get")
    assert hits[0].chunk.filename == "hr.txt"


def test_an_unchanged_upload_does_no_work_and_a_changed_one_replaces_its_chunks(
    kbs: KnowledgeBases,
) -> None:
    kb = _filled(kbs)
    emb = kbs.ingestor._embedder  # type: ignore[attr-defined]
    before = emb.embedded
    access = kbs.access(OWNER, kb, "write")
    doc, changed = kbs.upload(access, "hr.txt", DOCS["hr.txt"].encode())
    assert not changed and doc.status == "done"
    assert emb.embedded == before
    _add(kbs, kb, "hr.txt", "Employees may work remotely on Fridays.\n")
    hits = kbs.search(access, "vacation", mode="bm25")
    assert all(h.chunk.filename != "hr.txt" for h in hits)
    assert kbs.search(access, "remotely Fridays", mode="bm25")[0].chunk.filename == "hr.txt"


def test_a_file_that_cannot_be_parsed_fails_alone_with_its_reason(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    access = kbs.access(OWNER, kb, "write")
    doc, _ = kbs.upload(access, "broken.pdf", b"%PDF-1.4 not really a pdf")
    assert kbs.ingest(doc.id) == "failed"
    failed = kbs.document(access, doc.id)
    assert failed.status == "failed" and failed.error and "broken.pdf" in failed.error
    assert {d.status for d in kbs.documents(access) if d.id != doc.id} == {"done"}


def test_deleting_a_document_takes_it_out_of_both_legs(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    access = kbs.access(OWNER, kb, "write")
    doc_id = next(d.id for d in kbs.documents(access) if d.filename == "gpu.md")
    kbs.delete_document(access, doc_id)
    for mode in ("bm25", "dense", "hybrid"):
        hits = kbs.search(access, "ERR-4021 星澜智算平台 GPU", mode=mode)  # type: ignore[arg-type]
        assert all(h.chunk.filename != "gpu.md" for h in hits)


def test_roles_decide_what_each_member_may_do(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    owner = kbs.access(OWNER, kb, "manage")
    for who, role in (("usr_ed", "editor"), ("usr_view", "viewer"), ("usr_guest", "guest")):
        kbs.set_member(owner, who, role)
    kbs.set_member(owner, "usr_sales", "restricted", ["sales"])
    with pytest.raises(InvalidRequestError):
        kbs.set_member(owner, "usr_x", "restricted")  # a restricted member needs groups
    kbs.access(Actor("ten_a", "usr_ed"), kb, "write")
    with pytest.raises(PermissionDeniedError):
        kbs.access(Actor("ten_a", "usr_view"), kb, "write")
    kbs.access(Actor("ten_a", "usr_guest"), kb, "chat")
    with pytest.raises(NotFoundError):  # a guest may chat, not search or list
        kbs.access(Actor("ten_a", "usr_guest"), kb, "read")
    assert kb not in [k.id for k, _ in kbs.visible(Actor("ten_a", "usr_guest"))]
    with pytest.raises(NotFoundError):  # no membership: nothing to see
        kbs.access(Actor("ten_a", "usr_stranger"), kb, "read")
    assert kbs.access(ADMIN, kb, "manage").role == "owner"  # the tenant's admin


def test_another_tenant_never_sees_a_knowledge_base(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    with pytest.raises(NotFoundError):
        kbs.access(OTHER_TENANT, kb, "read")
    with pytest.raises(NotFoundError):  # not by its name either
        kbs.access(OTHER_TENANT, "docs", "read")
    assert kbs.visible(OTHER_TENANT) == []
    mine = kbs.create(OTHER_TENANT, "docs")  # the same name in another tenant is its own
    assert mine.id != kb


def test_a_restricted_reader_gets_only_its_groups_documents(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    kbs.set_member(kbs.access(OWNER, kb, "manage"), "usr_sales", "restricted", ["sales"])
    access = kbs.access(Actor("ten_a", "usr_sales"), kb, "read")
    assert [d.filename for d in kbs.documents(access)] == ["sales.md"]
    for mode in ("bm25", "dense", "hybrid"):
        hits = kbs.search(access, "ERR-4021 vacation enterprise plan", mode=mode)  # type: ignore[arg-type]
        assert {h.chunk.filename for h in hits} == {"sales.md"}
    other = next(
        d.id for d in kbs.documents(kbs.access(OWNER, kb, "read")) if d.filename == "hr.txt"
    )
    with pytest.raises(NotFoundError):
        kbs.document(access, other)
    hits = kbs.search(access, "vacation", tags=["all"])  # its own filter cannot widen it
    assert hits == []


def test_metadata_filters_narrow_the_search(kbs: KnowledgeBases) -> None:
    kb = _filled(kbs)
    access = kbs.access(OWNER, kb, "read")
    hits = kbs.search(access, "plan vacation GPU", tags=["sales"])
    assert {h.chunk.filename for h in hits} == {"sales.md"}
    hits = kbs.search(access, "plan vacation GPU", filename="hr.txt")
    assert {h.chunk.filename for h in hits} == {"hr.txt"}


def test_documents_cut_by_a_crash_are_found_unfinished(kbs: KnowledgeBases) -> None:
    kb = kbs.create(OWNER, "k")
    access = kbs.access(OWNER, kb.id, "write")
    doc, _ = kbs.upload(access, "a.txt", b"some text")
    kbs.store.set_status(doc.id, "embedding")  # what a kill -9 mid-job leaves
    assert kbs.unfinished() == [doc.id]
    assert kbs.ingest(doc.id) == "done"
    assert kbs.unfinished() == []


def test_terms_an_older_analyzer_made_are_made_again(kbs: KnowledgeBases) -> None:
    kb_id = _filled(kbs)
    kb = kbs.store.get_kb(kb_id)
    assert kb is not None
    assert not kbs.refresh_terms(kb)  # made by this analyzer: nothing to do
    kbs.store.update_settings(kb_id, {**kb.settings, "lexical_version": 0})
    kbs.store.rewrite_terms(kb, [], {**kb.settings, "lexical_version": 0})  # words lost
    stale = kbs.store.get_kb(kb_id)
    assert stale is not None
    assert kbs.search(kbs.access(OWNER, kb_id, "read"), "ERR-4021", mode="bm25") == []
    assert kbs.refresh_terms(stale)
    hits = kbs.search(kbs.access(OWNER, kb_id, "read"), "ERR-4021", mode="bm25")
    assert hits[0].chunk.filename == "gpu.md"


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_both_fusions_rank_with_both_legs(kbs: KnowledgeBases, fusion: str) -> None:
    kb = kbs.create(OWNER, f"f-{fusion}", settings={"fusion": fusion})
    for name, text in DOCS.items():
        _add(kbs, kb.id, name, text)
    hits = kbs.search(kbs.access(OWNER, kb.id, "read"), "vacation days for employees")
    assert hits[0].chunk.filename == "hr.txt"
    assert hits[0].lexical_rank == 1 and hits[0].dense_rank is not None
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_new_user_words_rewrite_the_index_so_a_name_matches_whole(tmp_path: Path) -> None:
    store = SqliteKnowledgeStore(tmp_path / "knowledge.db")
    emb = HashingEmbedder()

    def bases(words: list[str]) -> KnowledgeBases:
        a = Analyzer(words=words)
        return KnowledgeBases(store, Ingestor(store, emb, a), Retriever(store, emb, a), "h")

    before = bases([])
    kb = before.create(OWNER, "k")
    _add(before, kb.id, "a.txt", "我们的云叫澜渊算力坊，部署很快。")
    after = bases(["澜渊算力坊"])
    assert after.ingestor.analyzer.version != before.ingestor.analyzer.version
    assert after.refresh_all() == 1
    assert after.refresh_all() == 0  # done once
    stored = store.get_kb(kb.id)
    assert stored is not None
    assert store.document_frequencies(stored, ["澜渊算力坊"]) == {"澜渊算力坊": 1}
