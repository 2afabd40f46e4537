"""Instruction data for LoRA fine-tuning: JSONL, one object per line, with ``instruction``,
optional ``input`` and ``output`` (Alpaca's fields), and optional ``"heldout": true`` for the
rows kept out of training and used for the before/after check.

Every problem is reported at once, by line number, before any model is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seekport.errors import InvalidRequestError

MAX_ROWS = 100_000
MAX_FIELD_CHARS = 32_000
MAX_ERRORS = 20


class DataError(InvalidRequestError):
    """The file cannot be trained on; the message lists the problems by line."""


@dataclass(frozen=True)
class Example:
    line: int
    instruction: str
    input: str
    output: str
    heldout: bool = False

    @property
    def prompt(self) -> str:
        """The user's turn: the instruction, then the input when there is one."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def load_examples(path: Path) -> list[Example]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({exc})") from exc
    examples: list[Example] = []
    errors: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        problem, example = _parse(n, raw)
        if problem is not None:
            errors.append(problem)
        elif example is not None:
            examples.append(example)
        if len(errors) >= MAX_ERRORS or len(examples) > MAX_ROWS:
            break
    if len(examples) > MAX_ROWS:
        errors.append(f"more than {MAX_ROWS} rows; split the file")
    if errors:
        raise DataError(f"{path}: {len(errors)} problem(s):\n" + "\n".join(errors))
    if not any(not e.heldout for e in examples):
        raise DataError(f"{path}: no rows to train on (every row is empty or held out)")
    return examples


def _parse(n: int, raw: str) -> tuple[str | None, Example | None]:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"line {n}: not JSON ({exc.msg} at column {exc.colno})", None
    if not isinstance(row, dict):
        return f"line {n}: a JSON object is expected, not {type(row).__name__}", None
    unknown = sorted(set(row) - {"instruction", "input", "output", "heldout"})
    if unknown:
        return f"line {n}: unknown field(s) {', '.join(unknown)}", None
    for name in ("instruction", "output"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"line {n}: '{name}' must be a non-empty string", None
    inp = row.get("input", "")
    if not isinstance(inp, str):
        return f"line {n}: 'input' must be a string", None
    if any(len(row.get(k) or "") > MAX_FIELD_CHARS for k in ("instruction", "input", "output")):
        return f"line {n}: a field is longer than {MAX_FIELD_CHARS} characters", None
    heldout = row.get("heldout", False)
    if not isinstance(heldout, bool):
        return f"line {n}: 'heldout' must be true or false", None
    return None, Example(n, row["instruction"], inp, row["output"], heldout)


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(training rows, rows for the before/after check): the rows marked held out; else,
    with 20 rows or more, every tenth; else the training prompts themselves."""
    marked = [e for e in examples if e.heldout]
    if marked:
        return [e for e in examples if not e.heldout], marked
    if len(examples) >= 20:
        return [e for i, e in enumerate(examples) if i % 10 != 9], examples[9::10]
    return examples, examples[:3]
