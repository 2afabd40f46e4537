"""An uploaded file's bytes → its text as sections under their heading paths.

Structure matters to retrieval: a chunk that knows it sits under "Guide > Install" is found by
both, and chunks never straddle two headings. So every format is reduced to the same shape,
``Section(headings, text)``: Markdown by its heading tokens (markdown-it-py), HTML by its main
text only (trafilatura drops navigation, footers, scripts and cookie banners; its Markdown output
then takes the Markdown path), DOCX by heading styles or outline levels (python-docx; Chinese
templates name them 标题 1, so the style id and outline level count too), PDF by its text layer a
page at a time (pypdf; one section per page, headings ``()``: a PDF has no reliable heading
structure), CSV rows and JSON objects as ``key: value`` lines that repeat their column names (a
chunk of row 900 still says what each value is).

Uploads are untrusted: sizes are checked before any parser runs, a DOCX's zip directory is
checked for bombs before python-docx opens it, and every failure is a ``DocumentError`` whose
message names the file and the reason, never a library's traceback text. One bad row or page is
skipped; only a file with nothing readable left fails. The parsers are imported when a file of
their kind arrives (trafilatura alone takes ~0.3 s), not when seekport starts.

The package is split by concept: ``base`` holds the result types (``Section``,
``ParsedDocument``), the limits, text normalisation, decoding and the choice of parser from a
file's name, content type and first bytes; ``text`` parses plain text, Markdown and HTML;
``office`` parses PDF and DOCX (with the zip-bomb check); ``records`` parses CSV and JSON. This
module dispatches to them and applies what every format shares (the size and length limits,
normalised text, no empty document).
"""

from __future__ import annotations

from collections.abc import Callable

from seekport.errors import DocumentError, PayloadTooLargeError
from seekport.knowledge.parsing.base import (
    _TITLE_CHARS,
    DEFAULT_LIMITS,
    KINDS,
    Parsed,
    ParsedDocument,
    ParseLimits,
    Section,
    _kind,
    _mib,
    normalize_text,
)
from seekport.knowledge.parsing.office import _parse_docx, _parse_pdf
from seekport.knowledge.parsing.records import _parse_csv, _parse_json
from seekport.knowledge.parsing.text import (
    _parse_html,
    _parse_markdown,
    _parse_text,
    html_text,
    markdown_sections,
)

__all__ = [
    "DEFAULT_LIMITS",
    "KINDS",
    "ParseLimits",
    "Parsed",
    "ParsedDocument",
    "Section",
    "html_text",
    "markdown_sections",
    "normalize_text",
    "parse_document",
]

_PARSERS: dict[str, Callable[[str, bytes, ParseLimits], Parsed]] = {
    "text": _parse_text,
    "markdown": _parse_markdown,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "csv": _parse_csv,
    "json": _parse_json,
}


def parse_document(
    filename: str,
    data: bytes,
    *,
    content_type: str | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> ParsedDocument:
    """Parse an uploaded file. Raises ``PayloadTooLargeError`` past a limit and
    ``DocumentError`` for anything unreadable, both naming the file."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "document"
    if len(data) > limits.max_bytes:
        raise PayloadTooLargeError(
            f"{name}: the file is {_mib(len(data))}; the limit is {_mib(limits.max_bytes)}"
        )
    kind = _kind(name, data, content_type)
    title, raw = _PARSERS[kind](name, data, limits)
    sections: list[Section] = []
    chars = 0
    for s in raw:
        text = normalize_text(s.text)
        if text:
            chars += len(text)
            if chars > limits.max_chars:
                raise PayloadTooLargeError(
                    f"{name}: the text is longer than {limits.max_chars:,} characters"
                )
            sections.append(Section(tuple(normalize_text(h) for h in s.headings), text))
    if not sections:
        raise DocumentError(f"{name}: the document contains no text")
    title = normalize_text(title or "")[: _TITLE_CHARS * 2] or None
    return ParsedDocument(kind, title, tuple(sections))
