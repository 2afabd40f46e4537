"""Uploads of every kind become sections under their heading paths; every document is generated
here (a hand-written PDF, a python-docx DOCX). Limits and zip bombs are refused before a parser
runs, and every failure is a project error that names the file."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from pypdf import PdfReader, PdfWriter

from seekport.errors import DocumentError, PayloadTooLargeError
from seekport.knowledge.parsing import (
    ParsedDocument,
    ParseLimits,
    Section,
    normalize_text,
    parse_document,
)


def make_pdf(pages: list[str | None]) -> bytes:
    """A minimal valid PDF, one Helvetica text line per page (None: a page with no text)."""
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>",
    ]
    font = 3 + 2 * n
    for i, text in enumerate(pages):
        stream = "" if text is None else f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_docx() -> bytes:
    d = docx.Document()
    d.add_paragraph("The Manual", style="Title")
    d.add_heading("Guide", 1)
    d.add_paragraph("Intro text.")
    d.add_heading("Install", 2)
    d.add_paragraph("Run the installer.")
    table = d.add_table(rows=3, cols=2)
    for (r, c), text in {(0, 0): "name", (0, 1): "value", (1, 0): "port", (1, 1): "8080"}.items():
        table.cell(r, c).text = text
    table.cell(2, 0).merge(table.cell(2, 1)).text = "spans both columns"
    localised = d.styles.add_style("标题 1", WD_STYLE_TYPE.PARAGRAPH)  # as WPS names it
    d.add_paragraph("部署", style=localised)
    d.add_paragraph("中文正文。")
    outlined = d.add_paragraph("By outline level")
    level = OxmlElement("w:outlineLvl")
    level.set(qn("w:val"), "1")  # 0-based: heading 2
    outlined._p.get_or_add_pPr().append(level)
    d.add_paragraph("Under the outline heading.")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def texts(doc: ParsedDocument) -> str:
    return "\n".join(s.text for s in doc.sections)


def test_plain_text_utf8_with_bom_and_its_first_line_as_title() -> None:
    doc = parse_document("notes.txt", "\ufeff会议纪要\n\n第一项：预算。\r\n第二项：人员。".encode())
    assert doc.kind == "text" and doc.title == "会议纪要"
    assert doc.sections == (Section((), "会议纪要\n\n第一项：预算。\n第二项：人员。"),)


def test_gb18030_text_decodes_and_undecodable_text_says_why() -> None:
    doc = parse_document("旧文件.txt", "这是用GBK保存的中文文件。".encode("gb18030"))
    assert texts(doc) == "这是用GBK保存的中文文件。"
    with pytest.raises(DocumentError, match=r"^old\.txt: .*neither UTF-8 nor GB18030"):
        parse_document("old.txt", "café au lait".encode("cp1252"))


def test_normalisation_composes_collapses_and_keeps_chinese_punctuation() -> None:
    assert normalize_text("Cafe\u0301\t\t ok\x07  \u3000x \n\n\n\n 你好，世界！（ＡＢ）") == (
        "Café ok x\n\n你好，世界！（ＡＢ）"
    )


def test_markdown_headings_become_the_path_and_markup_goes() -> None:
    md = (
        "Intro with **bold** and a [link](http://example.com).\n\n# Guide\n\nSome text\n"
        "continued.\n\n## Install\n\n- one\n- two\n\n| key | value |\n|---|---|\n| port | 8080 |"
        "\n\n```python\nprint('hi')\n```\n\n### Linux\n\n中文段落。\n\n# Other\n\nLast."
    )
    doc = parse_document("guide.md", md.encode())
    assert doc.kind == "markdown" and doc.title == "Guide"
    assert [s.headings for s in doc.sections] == [
        (),
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Other",),
    ]
    assert doc.sections[0].text == "Intro with bold and a link."
    assert doc.sections[1].text == "Some text continued."
    install = doc.sections[2].text
    assert "- one\n- two" in install and "port | 8080" in install and "print('hi')" in install


def test_markdown_front_matter_gives_the_title() -> None:
    doc = parse_document("a.md", b'---\ntitle: "Notes: \\"v2\\""\ndate: 2024\n---\n# v2\n\nFixed.')
    assert doc.title == 'Notes: "v2"'
    assert doc.sections == (Section(("v2",), "Fixed."),)


ARTICLE = """<!doctype html><html><head><title>部署指南 - Docs</title>
<script>var tracking = "SCRIPT-SECRET";</script><style>.x{color:red}</style></head><body>
<nav><a href="/">Home</a> <a href="/pricing">NAV-PRICING</a></nav>
<div class="cookie-banner">We use cookies. COOKIE-BANNER Accept all cookies.</div>
<article><h1>部署指南</h1>
<p>这是一个关于如何部署服务的详细指南。首先需要安装依赖，然后配置环境变量。整个过程大约需要十分钟。</p>
<h2>Install</h2>
<p>Run the installer with the default options and wait for it to finish. It downloads about
two hundred megabytes of packages, so a fast connection helps a great deal here.</p>
<p>After the installer finishes, restart the service and check its status page for errors.</p>
</article>
<footer>FOOTER-COPYRIGHT 2024 ACME Corp. All rights reserved.</footer>
<script>console.log("SCRIPT-TWO")</script></body></html>"""


def test_html_keeps_the_article_and_drops_boilerplate() -> None:
    doc = parse_document("page.html", ARTICLE.encode())
    assert doc.kind == "html" and doc.title == "部署指南"
    body = texts(doc)
    assert "首先需要安装依赖" in body and "restart the service" in body
    for junk in ("SCRIPT-SECRET", "SCRIPT-TWO", "NAV-PRICING", "COOKIE-BANNER", "FOOTER-COPYRIGHT"):
        assert junk not in body
    assert ("部署指南", "Install") in [s.headings for s in doc.sections]


def test_html_where_trafilatura_finds_nothing_falls_back_to_the_plain_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *_, **__: None)
    page = b"<html><head><title>Opening hours</title><script>SCRIPT</script></head><body>"
    page += b"<nav>NAV</nav><div>Mon-Fri 9-17</div><div>Sat 10-14</div></body></html>"
    doc = parse_document("hours.htm", page)
    assert doc.title == "Opening hours"
    assert doc.sections == (Section((), "Mon-Fri 9-17\n\nSat 10-14"),)


def test_pdf_text_layer_a_section_per_page_and_its_failures() -> None:
    doc = parse_document("report.pdf", make_pdf(["Hello page one.", None, "Second page text."]))
    assert doc.kind == "pdf"
    assert doc.sections == (Section((), "Hello page one."), Section((), "Second page text."))
    with pytest.raises(DocumentError, match=r"^scan\.pdf: the PDF has no text layer.*OCR"):
        parse_document("scan.pdf", make_pdf([None, None]))
    broken = make_pdf(["Hello"])[:150]
    with pytest.raises(DocumentError, match=r"^broken\.pdf: the PDF is damaged") as err:
        parse_document("broken.pdf", broken)
    assert "Traceback" not in err.value.message


def test_pdf_with_a_user_password_is_refused_one_with_only_an_owner_password_reads() -> None:
    def encrypted(user: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Locked text."]))))
        writer.encrypt(user, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    with pytest.raises(DocumentError, match=r"^secret\.pdf: the PDF is encrypted"):
        parse_document("secret.pdf", encrypted("pw"))
    assert texts(parse_document("open.pdf", encrypted(""))) == "Locked text."


def test_docx_heading_styles_localised_names_and_outline_levels_make_the_path() -> None:
    doc = parse_document("manual.docx", make_docx())
    assert doc.kind == "docx" and doc.title == "The Manual"
    assert doc.sections == (
        Section(("Guide",), "Intro text."),
        Section(
            ("Guide", "Install"),
            "Run the installer.\n\nname | value\nport | 8080\nspans both columns",
        ),
        Section(("部署",), "中文正文。"),
        Section(("部署", "By outline level"), "Under the outline heading."),
    )


def with_member(data: bytes, name: str, payload: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info, src.read(info))
        z.writestr(name, payload)
    return out.getvalue()


def test_docx_zip_bomb_and_unpacked_size_are_refused_before_python_docx_opens_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*_: object) -> None:
        raise AssertionError("python-docx must not open a refused file")

    valid = make_docx()
    bomb = with_member(valid, "word/media/bomb.bin", b"\0" * (8 * 2**20))
    monkeypatch.setattr(docx, "Document", never)
    assert len(bomb) < 100_000
    with pytest.raises(DocumentError, match=r"^bomb\.docx: refused, word/media/bomb\.bin"):
        parse_document("bomb.docx", bomb)
    with pytest.raises(PayloadTooLargeError, match=r"^big\.docx: unpacks to"):
        parse_document("big.docx", valid, limits=ParseLimits(max_unpacked_bytes=10_000))
    with pytest.raises(DocumentError, match=r"^fake\.docx: not a DOCX file"):
        parse_document("fake.docx", b"PK\x03\x04 not really a zip")


def test_oversized_files_are_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLargeError, match=r"^huge\.pdf: the file is"):
        parse_document("huge.pdf", b"not a pdf at all" * 100, limits=ParseLimits(max_bytes=1000))
    with pytest.raises(PayloadTooLargeError, match=r"^long\.txt: the text is longer than 10"):
        parse_document("long.txt", b"x" * 11, limits=ParseLimits(max_chars=10))
    with pytest.raises(PayloadTooLargeError, match=r"^pages\.pdf: 3 pages; the limit is 2"):
        parse_document("pages.pdf", make_pdf(["a", "b", "c"]), limits=ParseLimits(max_pages=2))


def test_csv_rows_carry_their_header_in_any_dialect() -> None:
    doc = parse_document("people.csv", "姓名;城市;备注\n张三;北京;\n李四;上海;VIP\n\n".encode())
    assert doc.sections == (
        Section((), "姓名: 张三; 城市: 北京"),
        Section((), "姓名: 李四; 城市: 上海; 备注: VIP"),
    )
    tsv = parse_document("t.tsv", b"id\tname\n1\tAda Lovelace\n2\tAlan Turing\textra\n")
    assert [s.text for s in tsv.sections] == [
        "id: 1; name: Ada Lovelace",
        "id: 2; name: Alan Turing; column 3: extra",
    ]


def test_json_objects_json_lines_and_other_json() -> None:
    array = parse_document(
        "faq.json", '[{"q": "退货？", "a": "七天内"}, {"q": "x", "n": [1]}]'.encode()
    )
    assert [s.text for s in array.sections] == ["q: 退货？\na: 七天内", "q: x\nn: [1]"]
    lines = parse_document("log.jsonl", b'{"level": "info"}\nnot json\n{"level": "error"}\n')
    assert [s.text for s in lines.sections] == ["level: info", "level: error"]
    other = parse_document("config.json", b'{"server": {"port": 8080}}')
    assert other.sections == (Section((), '{\n"server": {\n"port": 8080\n}\n}'),)
    assert parse_document("n.jsonl", b'"text"\n[1]').sections[0].text == "text"
    with pytest.raises(DocumentError, match=r"^bad\.json: not valid JSON"):
        parse_document("bad.json", b"{nope")


def test_kind_from_extension_then_content_type_then_sniffing() -> None:
    assert parse_document("upload", make_pdf(["Sniffed."])).kind == "pdf"
    assert parse_document("upload", make_docx()).kind == "docx"
    assert parse_document("upload", b"<html><body><p>Hi there.</p></body></html>").kind == "html"
    assert parse_document("upload", b"# T\n\nx", content_type="text/markdown").kind == "markdown"
    assert parse_document("upload.txt", b"# not a heading").kind == "text"
    with pytest.raises(DocumentError, match=r"^blob\.bin: unsupported binary file"):
        parse_document("blob.bin", b"\x00\x01\x02\x03binary")
    with pytest.raises(DocumentError, match=r"^old\.doc: \.doc files are not supported"):
        parse_document("old.doc", b"\xd0\xcf\x11\xe0")
    with pytest.raises(DocumentError, match=r"^empty\.md: the document contains no text"):
        parse_document("empty.md", b"  \n\n")


def test_parser_libraries_import_without_warnings() -> None:
    code = "import trafilatura, jieba, pypdf, docx, markdown_it"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
