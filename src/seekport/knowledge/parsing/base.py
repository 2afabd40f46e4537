"""What every parser shares: the result types, the limits, text normalisation, decoding, and
the choice of parser for a file.

These live apart from the parsers so that each format module imports this one and nothing else
of the package (no cycles), and so that the rules every upload meets whatever its kind (the
size limits, one normal form for text, the same decoding of legacy Chinese encodings, the same
refusal of binaries) are written once. Deciding a file's kind sits here too: it reads only the
name, the declared content type and the first bytes, never a parser library.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass

from seekport.errors import DocumentError

log = logging.getLogger("seekport.knowledge")

KINDS = ("text", "markdown", "html", "pdf", "docx", "csv", "json")


@dataclass(frozen=True, slots=True)
class Section:
    headings: tuple[str, ...]  # the heading path above this text ("Guide", "Install"); ()
    text: str


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    kind: str  # one of KINDS
    title: str | None
    sections: tuple[Section, ...]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_bytes: int = 50 * 2**20  # a larger file is refused unread
    max_unpacked_bytes: int = 200 * 2**20  # DOCX: the zip's members, uncompressed, in all
    max_compression_ratio: float = 100.0  # DOCX: per member of over 1 MiB (a zip bomb)
    max_pages: int = 2000  # PDF
    max_chars: int = 20_000_000  # text extracted


DEFAULT_LIMITS = ParseLimits()
_TITLE_CHARS = 100

_EXTENSIONS = {
    "txt": "text", "text": "text", "log": "text",
    "md": "markdown", "markdown": "markdown", "mdx": "markdown",
    "html": "html", "htm": "html", "xhtml": "html",
    "pdf": "pdf", "docx": "docx",
    "csv": "csv", "tsv": "csv",
    "json": "json", "jsonl": "json", "ndjson": "json",
}  # fmt: skip
_CONTENT_TYPES = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "json",
    "application/x-ndjson": "json",
    "application/jsonl": "json",
}


# Control characters go (tab becomes a space, vertical breaks a newline); so do the BOM and soft
# hyphens. Every other kind of horizontal space collapses to one space; newlines stay.
_CONTROLS: dict[int, str | None] = {c: None for c in (*range(32), *range(127, 160))}
_CONTROLS |= {9: " ", 10: "\n", 11: "\n", 12: "\n", 0xFEFF: None, 0xAD: None}
_CONTROLS |= {0x2028: "\n", 0x2029: "\n"}
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"[^\S\n]+")
_LINE_EDGES = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line; Chinese punctuation
    (full-width forms) is kept, which NFKC would not."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)
    text = unicodedata.normalize("NFC", _SURROGATES.sub("", text))
    text = _LINE_EDGES.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _kind(name: str, data: bytes, content_type: str | None) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in ("doc", "xls", "xlsx", "ppt", "pptx", "rtf", "odt"):
        raise DocumentError(f"{name}: .{ext} files are not supported; convert to DOCX or PDF")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _CONTENT_TYPES:
        return _CONTENT_TYPES[ctype]
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" in zf.namelist():
                    return "docx"
        except (zipfile.BadZipFile, OSError, ValueError):
            pass  # a damaged archive is no document of ours: refused below
        raise DocumentError(f"{name}: an archive that is not a Word document is not supported")
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "html"
    if b"\x00" in data[:8192] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DocumentError(f"{name}: unsupported binary file (not PDF, DOCX or text)")
    return "text"


def _decode(name: str, data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else GB18030 (GBK's superset, which is
    what Chinese Windows saves), else a clear error."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name}: a binary file, not text")
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError(f"{name}: the text is neither UTF-8 nor GB18030; save it as UTF-8")


Parsed = tuple[str | None, list[Section]]
