"""Plain text, Markdown and HTML: the formats that are text already.

They share one path. Plain text is decoded and kept whole; Markdown is split at its headings by
walking markdown-it-py's token stream; HTML is reduced to its main text by trafilatura, whose
Markdown output then takes the Markdown path (so a page's headings become heading paths too),
with a small stdlib HTML-to-text parser as the fallback for pages trafilatura finds nothing in
and for raw HTML blocks inside Markdown. markdown-it-py and trafilatura are imported inside the
functions that use them, so seekport starts without them.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from seekport.errors import DocumentError
from seekport.knowledge.parsing.base import (
    _TITLE_CHARS,
    Parsed,
    ParseLimits,
    Section,
    _decode,
)

if TYPE_CHECKING:
    from markdown_it.token import Token


def _parse_text(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    text = _decode(name, data)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first if len(first) <= _TITLE_CHARS else None
    return title, [Section((), text)]


# --- Markdown (and HTML, through trafilatura's Markdown) ---------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.M)
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _parse_markdown(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    return markdown_sections(_decode(name, data))


def markdown_sections(text: str) -> Parsed:
    """Split Markdown at its headings (h1 > h2 > h3 kept as the path); title: front matter's
    ``title``, else the first h1. Emphasis and link syntax go; code, lists and tables stay."""
    from markdown_it import MarkdownIt

    walker = _MarkdownWalker()
    if m := _FRONT_MATTER.match(text):
        if t := _FRONT_TITLE.search(m.group(1)):
            walker.title = _yaml_scalar(t.group(1))
        text = text[m.end() :]
    for tok in MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text):
        walker.feed(tok)
    walker.flush_section()
    return walker.title, walker.sections


def _yaml_scalar(value: str) -> str | None:
    """A one-line YAML string as front matter writes it (trafilatura quotes as JSON does)."""
    if value.startswith('"'):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = value.strip('"')
        return loaded if isinstance(loaded, str) and loaded else None
    return value.strip("'") or None


class _MarkdownWalker:
    """markdown-it's flat token stream → sections. Lists and tables become one block each,
    an item or a row a line ("- item", "a | b")."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.blocks: list[str] = []  # paragraphs of the current section
        self.lines: list[str] = []  # lines of the open list or table
        self.lists: list[str] = []  # the open lists' kinds ("-" or "."), innermost last
        self.row: list[str] = []
        self.marker = ""  # a list item's marker, waiting for its first paragraph
        self.in_table = False
        self.heading_level = 0  # inside a heading: its level

    def feed(self, tok: Token) -> None:
        t = tok.type
        if t == "heading_open":
            self.flush_section()
            self.heading_level = int(tok.tag[1:])
        elif t == "heading_close":
            self.heading_level = 0
        elif t == "inline":
            self.inline(tok)
        elif t in ("bullet_list_open", "ordered_list_open"):
            self.lists.append("-" if t == "bullet_list_open" else ".")
        elif t in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
        elif t == "list_item_open":
            self.marker = "- " if self.lists[-1] == "-" else f"{tok.info}{tok.markup} "
        elif t in ("table_open", "table_close"):
            self.in_table = t == "table_open"
        elif t == "tr_close":
            self.emit(" | ".join(self.row))
            self.row = []
        elif t in ("fence", "code_block"):
            self.emit(tok.content.rstrip("\n"))
        elif t == "html_block":
            self.emit(html_text(tok.content))
        if self.lines and not self.lists and not self.in_table:
            self.blocks.append("\n".join(self.lines))
            self.lines = []

    def inline(self, tok: Token) -> None:
        content = _inline(tok)
        if self.heading_level:
            while self.path and self.path[-1][0] >= self.heading_level:
                self.path.pop()
            if content:
                self.path.append((self.heading_level, content))
                if self.heading_level == 1 and self.title is None:
                    self.title = content
        elif self.in_table:
            self.row.append(content.replace("\n", " "))
        elif self.lists:
            self.emit(f"{self.marker}{content}")
            self.marker = ""
        else:
            self.emit(content)

    def emit(self, text: str) -> None:
        if self.lists or self.in_table:
            self.lines.append(text)
        elif text.strip():
            self.blocks.append(text)

    def flush_section(self) -> None:
        if self.blocks:
            self.sections.append(Section(tuple(h for _, h in self.path), "\n\n".join(self.blocks)))
            self.blocks = []


def _inline(tok: Token) -> str:
    """An inline token's text: emphasis and link markup dropped, image alt text kept, a soft
    line break a space (none between two Chinese characters)."""
    out: list[str] = []
    pending_break = False
    for child in tok.children or ():
        if child.type in ("text", "code_inline", "image"):
            piece = child.content
            if pending_break and out and piece:
                both_cjk = _CJK.match(out[-1][-1:]) and _CJK.match(piece[:1])
                out.append("" if both_cjk else " ")
            pending_break = False
            out.append(piece)
        elif child.type == "softbreak":
            pending_break = True
        elif child.type == "hardbreak":
            out.append("\n")
    return "".join(out).strip()


class _HtmlText(HTMLParser):
    """The text of an HTML fragment or page, without its scripts, styles and page chrome: the
    fallback when trafilatura finds no main text (very short pages), and for HTML in Markdown."""

    SKIP = frozenset({
        "script", "style", "noscript", "template", "svg", "nav", "footer", "header", "aside",
        "form", "button", "iframe",
    })  # fmt: skip
    BLOCK = frozenset({
        "p", "div", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
        "section", "article", "table", "ul", "ol",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        elif not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _parse_html(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    """The main text by trafilatura, as Markdown with its metadata as front matter (the title);
    a page where it finds nothing falls back to all text outside scripts and page chrome."""
    import trafilatura

    html = _decode_lenient(data)
    main = trafilatura.extract(
        html,
        output_format="markdown",
        with_metadata=True,
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        include_images=False,
        include_links=False,
    )
    title, sections = markdown_sections(main) if main else (None, [])
    if sections and title:
        return title, sections
    page = _HtmlText()
    page.feed(html)
    page.close()
    return title or page.title, sections or [Section((), "".join(page.parts))]


def _decode_lenient(data: bytes) -> str:
    """A web page's text: a wrong guess loses a few characters, not the page."""
    try:
        return _decode("page", data)
    except DocumentError:
        return data.decode("utf-8", errors="replace")
