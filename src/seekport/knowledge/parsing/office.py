"""PDF and DOCX: binary office formats, each behind a third-party library that can fail
anywhere on a malformed file.

So every call into pypdf or python-docx is fenced: a damaged file becomes a ``DocumentError``
naming it, one unreadable page or table row is logged and skipped, and a DOCX's zip directory is
checked for bombs (total unpacked size, per-member compression ratio) before python-docx inflates
anything. The libraries are imported inside the parsers, when a file of their kind arrives.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING, Any

from seekport.errors import DocumentError, PayloadTooLargeError
from seekport.knowledge.parsing.base import Parsed, ParseLimits, Section, _mib, log

if TYPE_CHECKING:
    from docx.text.paragraph import Paragraph


# --- PDF -------------------------------------------------------------------------------------


def _parse_pdf(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _decrypted(reader):
            raise DocumentError(f"{name}: the PDF is encrypted with a password")
        pages = len(reader.pages)
    except DocumentError:
        raise
    except PdfReadError as exc:
        raise DocumentError(f"{name}: the PDF is damaged or not a PDF ({exc})") from exc
    except Exception as exc:  # a malformed file can fail anywhere inside pypdf
        raise DocumentError(f"{name}: the PDF is damaged or not a PDF") from exc
    if pages > limits.max_pages:
        raise PayloadTooLargeError(f"{name}: {pages} pages; the limit is {limits.max_pages}")
    sections: list[Section] = []
    failed = chars = 0
    for number in range(1, pages + 1):
        try:
            text = reader.pages[number - 1].extract_text()
        except Exception:  # one broken page must not lose the others
            log.warning("%s: page %d could not be read", name, number, exc_info=True)
            failed += 1
            continue
        chars += len(text)
        if chars > limits.max_chars:
            raise PayloadTooLargeError(f"{name}: the text is longer than {limits.max_chars:,}")
        if text.strip():
            sections.append(Section((), text))
    if not sections:
        if failed and failed == pages:
            raise DocumentError(f"{name}: none of the PDF's {pages} pages could be read")
        raise DocumentError(f"{name}: the PDF has no text layer (scanned?); OCR is not supported")
    return _pdf_title(reader), sections


def _decrypted(reader: Any) -> bool:
    """Open a PDF that is encrypted without a user password (only editing restricted)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # an unsupported cipher (AES without `cryptography`) reads as locked
        return False


def _pdf_title(reader: Any) -> str | None:
    try:
        meta = reader.metadata
        title = meta.title if meta is not None else None
    except Exception:  # metadata is optional; a broken info dictionary is no reason to fail
        return None
    return title if isinstance(title, str) and title.strip() else None


# --- DOCX ------------------------------------------------------------------------------------

_RATIO_FLOOR = 2**20  # smaller members cannot bomb; tiny XML parts compress very well
_HEADING_ID = re.compile(r"^heading\s*(\d)$", re.I)
_HEADING_NAME = re.compile(r"^(?:heading|标题|標題|titre|überschrift|título|見出し)\s*(\d)$", re.I)


def _check_zip(name: str, data: bytes, limits: ParseLimits) -> None:
    """Refuse a zip bomb from its directory alone, before anything is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"{name}: not a DOCX file (not a valid zip archive)") from exc
    if not any(i.filename == "word/document.xml" for i in infos):
        raise DocumentError(f"{name}: not a Word document (no word/document.xml)")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unpacked_bytes:
        raise PayloadTooLargeError(
            f"{name}: unpacks to {_mib(total)}; the limit is {_mib(limits.max_unpacked_bytes)}"
        )
    for i in infos:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise DocumentError(
                f"{name}: refused, {i.filename} expands {ratio:,.0f}× (a zip bomb?)"
            )


def _parse_docx(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    _check_zip(name, data, limits)
    import docx
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors…
        raise DocumentError(f"{name}: the Word document is damaged") from exc
    title = (document.core_properties.title or "").strip() or None
    first_h1: str | None = None
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    blocks: list[str] = []
    for item in document.iter_inner_content():
        if not isinstance(item, Paragraph):
            blocks.append(_table_text(name, item))
            continue
        text = item.text.strip()
        level = _heading_level(item)
        if level and text:
            if blocks:
                sections.append(Section(tuple(h for _, h in path), "\n\n".join(blocks)))
                blocks = []
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, text))
            if level == 1 and first_h1 is None:
                first_h1 = text
        elif text and title is None and _style_id(item) == "title":
            title = text
        elif text:
            blocks.append(text)
    if blocks:
        sections.append(Section(tuple(h for _, h in path), "\n\n".join(blocks)))
    return title or first_h1, sections


def _table_text(name: str, table: Any) -> str:
    """A table's rows as "a | b" lines; a row python-docx cannot lay out is skipped."""
    out = []
    for r in table.rows:
        try:
            row = r.cells
        except Exception:  # an irregular grid in a hand-made file: lose the row, not the file
            log.warning("%s: a table row could not be read", name, exc_info=True)
            continue
        cells: list[str] = []
        elements: list[Any] = []
        for cell in row:  # a merged cell repeats once per grid column it spans
            if not any(cell._tc is e for e in elements):
                elements.append(cell._tc)
                cells.append(" ".join(cell.text.split()))
        if any(cells):
            out.append(" | ".join(cells))
    return "\n".join(out)


def _style_id(p: Paragraph) -> str:
    return (p.style.style_id if p.style is not None else "").lower()


def _outline_level(ppr: Any) -> int | None:
    """``w:outlineLvl`` 0..8 → heading 1..9; 9 is body text (0 here: not a heading)."""
    if ppr is None:
        return None
    lvl = ppr.find("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}outlineLvl")
    if lvl is None:
        return None
    val = lvl.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}val", "9")
    return int(val) + 1 if val.isdigit() and int(val) < 9 else 0


def _heading_level(p: Paragraph) -> int | None:
    """A paragraph's heading level: its own outline level, else its style's (by id "Heading2",
    by a name in any language, or the style's outline level), inherited through base styles."""
    level = _outline_level(p._p.pPr)
    if level is not None:
        return level or None
    style = p.style
    for _ in range(10):  # base styles chain; a cycle in a hostile file must end
        if style is None:
            return None
        m = _HEADING_ID.match(style.style_id or "") or _HEADING_NAME.match(style.name or "")
        if m:
            return int(m.group(1)) or None
        level = _outline_level(style.element.pPr)
        if level is not None:
            return level or None
        style = style.base_style
    return None
