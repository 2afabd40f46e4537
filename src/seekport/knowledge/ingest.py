"""A document's way in: parse → chunk (the embedder's tokens) → embed → index, with its status
kept in the store at each step (parsing, embedding, done, or failed with the reason).

Chunks whose text did not change keep their vectors (a re-uploaded file with one edited
paragraph embeds only that paragraph's chunks). Documents are embedded in batches across
documents, so a corpus of short texts does not pay one model call per text. A document that
fails is marked failed with its reason and never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from seekport.errors import SeekportError
from seekport.knowledge.chunking import Chunk, chunk_document
from seekport.knowledge.lexical import Analyzer
from seekport.knowledge.parsing import ParsedDocument, parse_document
from seekport.knowledge.protocols import Embedder
from seekport.store.knowledge import ChunkRow, KnowledgeBaseRecord

log = logging.getLogger("seekport.knowledge")

DEFAULT_CHUNK_TOKENS = 512
DEFAULT_OVERLAP = 0.2
EMBED_BATCH = 32
_TITLE_TOKENS = 64  # the most of a title that goes with each chunk into the embedder
_PREFIX_TOKENS = 8  # "passage: " and <s> </s>, with room to spare

Progress = Callable[[int, int], None]  # (chunks embedded, chunks in all)

if TYPE_CHECKING:
    from seekport.store.knowledge import KnowledgeStore


def content_hash(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


@dataclass(slots=True)
class Pending:
    """One document on its way: parsed, then chunked."""

    doc_id: str
    parsed: ParsedDocument
    chunks: list[Chunk]
    known: dict[str, npt.NDArray[np.float32]]  # vectors of its unchanged chunks, by hash


class Ingestor:
    def __init__(self, store: KnowledgeStore, embedder: Embedder, analyzer: Analyzer) -> None:
        self._store = store
        self._embedder = embedder
        self._analyzer = analyzer
        self.analyzer = analyzer

    def parse(self, doc_id: str, filename: str, data: bytes) -> ParsedDocument | None:
        """Parse a stored document's bytes; a failure marks it failed (None)."""
        self._store.set_status(doc_id, "parsing", progress=0.0)
        try:
            return parse_document(filename, data)
        except SeekportError as exc:
            self._store.set_status(doc_id, "failed", error=exc.message)
            return None

    def ingest(
        self,
        kb: KnowledgeBaseRecord,
        docs: Sequence[tuple[str, ParsedDocument]],
        progress: Progress | None = None,
    ) -> int:
        """Chunk, embed and index parsed documents ``(doc id, parsed)``; their chunks replace
        what they had. Returns the chunks written."""
        pending = [self._chunked(kb, doc_id, parsed) for doc_id, parsed in docs]
        todo: list[tuple[Pending, int, str]] = []  # (document, chunk index, text to embed)
        for p in pending:
            title = _title_prefix(p.parsed.title, self._embedder)
            for i, c in enumerate(p.chunks):
                if content_hash(c.text) not in p.known:
                    todo.append((p, i, f"{title}{c.text}"))
        vectors: dict[tuple[str, int], npt.NDArray[np.float32]] = {}
        total, done = len(todo), 0
        for start in range(0, total, EMBED_BATCH):
            batch = todo[start : start + EMBED_BATCH]
            for doc in {id(p): p for p, _, _ in batch}.values():
                self._store.set_status(doc.doc_id, "embedding", progress=done / max(total, 1))
            out = self._embedder.embed_texts([t for _, _, t in batch], "passage")
            for (p, i, _), v in zip(batch, out, strict=True):
                vectors[(p.doc_id, i)] = v
            done += len(batch)
            if progress is not None:
                progress(done, total)
        written = 0
        for p in pending:
            rows = []
            title_terms = self._analyzer.document(p.parsed.title or "")
            for i, c in enumerate(p.chunks):
                h = content_hash(c.text)
                v = p.known.get(h)
                if v is None:
                    v = vectors[(p.doc_id, i)]
                rows.append(
                    ChunkRow(
                        position=c.position,
                        text=c.text,
                        headings=list(c.headings),
                        tokens=c.tokens,
                        content_hash=h,
                        vector=v,
                        title_terms=title_terms,
                        heading_terms=self._analyzer.document(" ".join(c.headings)),
                        body_terms=self._analyzer.document(c.text),
                    )
                )
            self._store.replace_chunks(kb, p.doc_id, rows, p.parsed.title)
            written += len(rows)
        return written

    def _chunked(self, kb: KnowledgeBaseRecord, doc_id: str, parsed: ParsedDocument) -> Pending:
        size = int(kb.settings.get("chunk_tokens", DEFAULT_CHUNK_TOKENS))
        overlap = float(kb.settings.get("chunk_overlap", DEFAULT_OVERLAP))
        title = _title_prefix(parsed.title, self._embedder)
        room = self._embedder.max_tokens - _PREFIX_TOKENS - len(self._embedder.token_ids(title))
        chunks = chunk_document(
            parsed, self._embedder.token_ids, size=max(16, min(size, room)), overlap=overlap
        )
        return Pending(doc_id, parsed, chunks, self._store.chunk_hashes(doc_id))


def _title_prefix(title: str | None, embedder: Embedder) -> str:
    """The title as it precedes each chunk of its document in the embedder (cut to a few
    dozen tokens: a chunk's own text matters more)."""
    if not title:
        return ""
    title = title.strip()
    if len(embedder.token_ids(title)) > _TITLE_TOKENS:
        title = title[: _TITLE_TOKENS * 2]
    return title + "\n"
