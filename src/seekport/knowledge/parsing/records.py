"""CSV and JSON: record-shaped data, where a value means little without its field name.

Each CSV row and each JSON object becomes its own section of ``key: value`` text that repeats the
column or key names, so a chunk cut from record 900 still says what every value is. Only the
standard library is needed; a malformed row or JSON Lines line is skipped, not the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from seekport.errors import DocumentError
from seekport.knowledge.parsing.base import Parsed, ParseLimits, Section, _decode, log

# --- CSV and JSON ----------------------------------------------------------------------------


def _parse_csv(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    """Each row a section of ``column: value`` pairs; the first row is the header."""
    text = _decode(name, data)
    dialect: type[csv.Dialect] | csv.Dialect
    try:
        dialect = csv.Sniffer().sniff(text[: 64 * 1024], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if name.lower().endswith(".tsv") else csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header: list[str] | None = None
    sections: list[Section] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:  # a malformed row (an unclosed quote, a huge field): skipped
            log.warning("%s: a malformed CSV row was skipped", name)
            continue
        if header is None:
            header = [" ".join(h.split()) for h in row]
            continue
        pairs = [
            f"{header[j] if j < len(header) and header[j] else f'column {j + 1}'}: {v}"
            for j, v in enumerate(" ".join(c.split()) for c in row)
            if v
        ]
        if pairs:
            sections.append(Section((), "; ".join(pairs)))
    if not sections and header:  # a header alone is still text
        sections.append(Section((), "; ".join(header)))
    return None, sections


def _parse_json(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    """An array of objects: a section per object (``key: value`` lines); JSON Lines: a section
    per line; any other value: pretty-printed."""
    text = _decode(name, data).strip()
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise DocumentError(f"{name}: the JSON is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        values = list(_json_lines(text))  # JSON Lines: objects as an array's
        if not values:
            msg = f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})"
            raise DocumentError(msg) from exc
    else:
        objects = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        values = value if objects else [json.dumps(value, ensure_ascii=False, indent=2)]
    return None, [Section((), _json_text(v)) for v in values]


def _json_lines(text: str) -> Iterable[Any]:
    for line in text.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # one bad line: skipped
                continue


def _json_text(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(
            f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
            for k, v in value.items()
        )
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
