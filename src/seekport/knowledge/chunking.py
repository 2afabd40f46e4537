"""A parsed document → chunks that fit the embedder, counted in the embedder's own tokens.

Chunks follow the document's structure, coarsest first: a chunk never spans two heading paths
(consecutive sections under the same path, such as a PDF's pages, do join), a paragraph that
fits stays whole, a longer one is cut between sentences (Chinese 。！？； and their other
full-width forms, English . ! ? before a space, line ends), and only a sentence longer than a
chunk is cut hard, at a space when there is one, never inside a character sequence (combining
marks, emoji joined by ZWJ). Each chunk repeats about ``overlap × size`` tokens from the end of
the previous one, whole sentences where they fit, so a fact cut at a boundary is whole in one of
the two. Chunk texts are exact slices of the document's text: nothing is lost, nothing invented,
and headings stay metadata (the caller decides whether to prefix them).

Cost: every sentence is tokenised once and every chunk once more (its final count, which also
catches tokenisers whose counts do not add up across a join); the growing chunk is never
re-tokenised, so chunking is linear in the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seekport.errors import InvalidRequestError

if TYPE_CHECKING:
    from seekport.knowledge.parsing import ParsedDocument

TokenIds = Callable[[str], list[int]]

MAX_OVERLAP = 0.5


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    headings: tuple[str, ...]
    position: int  # 0-based index of the chunk in its document
    tokens: int  # tokens of `text` by the given tokenizer


@dataclass(frozen=True, slots=True)
class _Piece:
    """A sentence (or a hard-cut part of one) with its trailing whitespace, exactly as in the
    text, and its token count."""

    text: str
    tokens: int
    cut: bool = False  # a hard-cut part of a sentence: an overlap may start inside it


_PARAGRAPH_END = re.compile(r"\n[^\S\n]*\n\s*")
_SENTENCE_END = re.compile(
    r"(?:[。！？；｡．]+[”’」』）》\]\"')]*"  # Chinese: closing quotes stay with their sentence
    r"|[.!?]+[\"'”’)\]]*(?=\s)"  # English: only before a space (not 3.14, not e.g.x)
    r"|(?=\n))"  # a line end (lists, table rows, code)
    r"\s*"
)
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # ZWJ and emoji/text variation selectors


def chunk_document(
    doc: ParsedDocument, token_ids: TokenIds, *, size: int = 512, overlap: float = 0.2
) -> list[Chunk]:
    """Chunks of at most ``size`` tokens (the caller has taken the embedder's prefix off), each
    starting with about ``overlap * size`` tokens of its predecessor under the same headings."""
    if size < 1:
        raise InvalidRequestError(f"chunk size must be at least 1 token, not {size}")
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise InvalidRequestError(f"chunk overlap must be between 0 and {MAX_OVERLAP}")
    chunker = _Chunker(token_ids, size, int(overlap * size))
    chunks: list[Chunk] = []
    for headings, text in _runs(doc):
        for piece_text, tokens in chunker.chunks(text):
            chunks.append(Chunk(piece_text, headings, len(chunks), tokens))
    return chunks


def _runs(doc: ParsedDocument) -> Iterable[tuple[tuple[str, ...], str]]:
    """Consecutive sections under the same heading path, joined as paragraphs."""
    headings: tuple[str, ...] | None = None
    texts: list[str] = []
    for s in doc.sections:
        if s.headings != headings and texts:
            yield headings or (), "\n\n".join(texts)
            texts = []
        headings = s.headings
        if s.text.strip():
            texts.append(s.text.strip())
    if texts:
        yield headings or (), "\n\n".join(texts)


class _Chunker:
    def __init__(self, token_ids: TokenIds, size: int, overlap: int) -> None:
        self._token_ids = token_ids
        self._size = size
        self._overlap = overlap
        # a hard-cut part of an overlong sentence leaves room for the overlap before it
        self._hard = max(1, size - overlap)

    def _count(self, text: str) -> int:
        return len(self._token_ids(text))

    def chunks(self, text: str) -> Iterable[tuple[str, int]]:
        """(text, tokens) of the chunks of one run of text under one heading path."""
        current: list[_Piece] = []
        used = 0
        fresh = False  # whether `current` holds more than the overlap it started with
        for block in self._blocks(text):
            need = sum(p.tokens for p in block)
            if fresh and used + need > self._size:
                yield from self._emit(current)
                current = self._tail(current, self._size - need)
                used = sum(p.tokens for p in current)
            current.extend(block)
            used += need
            fresh = True
        if fresh:
            yield from self._emit(current)

    def _blocks(self, text: str) -> Iterable[list[_Piece]]:
        """What packs whole: a paragraph that fits, else each of its sentences (a sentence too
        long for a chunk already cut into parts)."""
        start = 0
        ends = [m.end() for m in _PARAGRAPH_END.finditer(text)]
        for end in [*ends, len(text)]:
            if end <= start:
                continue
            pieces = self._sentences(text, start, end)
            start = end
            if sum(p.tokens for p in pieces) <= self._size:
                yield pieces
            else:
                yield from ([p] for p in pieces)

    def _sentences(self, text: str, start: int, end: int) -> list[_Piece]:
        spans: list[str] = []
        at = start
        for m in _SENTENCE_END.finditer(text, start, end):
            if m.end() > at:
                spans.append(text[at : m.end()])
                at = m.end()
        if at < end:
            spans.append(text[at:end])
        pieces: list[_Piece] = []
        for span in spans:
            if not span.strip():  # only whitespace: belongs to the sentence before it
                if pieces:
                    pieces[-1] = _Piece(pieces[-1].text + span, pieces[-1].tokens)
                continue
            tokens = self._count(span)
            if tokens > self._size:
                pieces.extend(self._cut(span, self._hard, tokens))
            else:
                pieces.append(_Piece(span, tokens))
        return pieces

    def _cut(self, text: str, limit: int, tokens: int) -> list[_Piece]:
        """Hard cuts of a text longer than ``limit`` tokens. Without a decoder, a cut is guessed
        from the characters per token so far, snapped back to a space or a character boundary,
        and shrunk until its count fits."""
        parts: list[_Piece] = []
        start, left = 0, tokens
        while start < len(text):
            rest = len(text) - start
            guess = rest if left <= limit else max(1, rest * limit // max(left, 1))
            while True:
                end = _snap(text, start, start + guess)
                count = self._count(text[start:end])
                if count <= limit or end - start <= 1:
                    break
                guess = min(end - start - 1, max(1, (end - start) * limit * 9 // (count * 10)))
            parts.append(_Piece(text[start:end], count, cut=True))
            start, left = end, max(left - count, 1)
        return parts

    def _tail(self, pieces: list[_Piece], room: int) -> list[_Piece]:
        """The overlap, in at most ``room`` tokens: whole sentences from the end within the
        overlap budget (the nearest one even if it is up to half as long again); the end of a
        hard-cut part, cut at a space. A chunk never starts inside a sentence that fits."""
        budget = min(self._overlap, room)
        if budget <= 0 or not pieces:
            return []
        taken: list[_Piece] = []
        used = 0
        for p in reversed(pieces):
            if used + p.tokens > budget:
                if not taken and not p.cut and p.tokens <= min(budget * 3 // 2, room):
                    taken.append(p)
                break
            taken.append(p)
            used += p.tokens
        if taken or not pieces[-1].cut:
            return taken[::-1]
        last = pieces[-1].text
        keep = max(1, len(last) * budget // max(pieces[-1].tokens, 1))
        for _ in range(4):
            part = last[_snap_forward(last, len(last) - keep) :]
            count = self._count(part)
            if part.strip() and count <= budget:
                return [_Piece(part, count, cut=True)]
            keep = keep * budget * 9 // (max(count, 1) * 10)
            if keep < 1:
                break
        return []

    def _emit(self, pieces: list[_Piece]) -> Iterable[tuple[str, int]]:
        """The chunk's text and its real count. Should the joined text count more than its
        pieces did, past the limit (tokenisers that merge across a join), the pieces are split
        in two and each half emitted."""
        text = "".join(p.text for p in pieces).strip()
        if not text:
            return
        count = self._count(text)
        if count <= self._size:
            yield text, count
        elif len(pieces) > 1:
            half = len(pieces) // 2
            yield from self._emit(pieces[:half])
            yield from self._emit(pieces[half:])
        else:  # one piece whose stripped text counts more than the piece did
            for part in self._cut(text, self._size, count):
                if cut := part.text.strip():
                    yield cut, self._count(cut)


def _unbreakable(text: str, at: int) -> bool:
    """Whether a cut before ``text[at]`` would split a character sequence."""
    ch = text[at]
    return (
        ch in _JOINERS
        or text[at - 1] == "\u200d"
        or unicodedata.combining(ch) != 0
        or "\udc00" <= ch <= "\udfff"  # the low half of a surrogate pair (surrogateescape)
    )


def _snap(text: str, start: int, end: int) -> int:
    """A cut at or before ``end``: after the last space in the second half of the span, else at
    the nearest character boundary; always past ``start``."""
    if end >= len(text):
        return len(text)
    half = start + (end - start) // 2
    space = max(text.rfind(" ", half, end), text.rfind("\n", half, end))
    if space > start:
        return space + 1
    while end > start + 1 and _unbreakable(text, end):
        end -= 1
    return max(end, start + 1)


def _snap_forward(text: str, at: int) -> int:
    """A start at or after ``at``: after the next space if it is near, else a character
    boundary."""
    at = max(at, 1)
    space = text.find(" ", at, at + 16)
    if space != -1 and space + 1 < len(text):
        return space + 1
    while at < len(text) - 1 and _unbreakable(text, at):
        at += 1
    return at
