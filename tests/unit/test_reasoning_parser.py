"""The R1 parser splits <think>…</think> into reasoning and content, incrementally."""

from __future__ import annotations

import pytest

from seekport.engine.parsers.reasoning import ReasoningParser


def run(pieces: list[str], **kw: bool) -> tuple[str, str]:
    p = ReasoningParser(**kw)
    r, c = [], []
    for piece in pieces:
        a, b = p.feed(piece)
        r.append(a)
        c.append(b)
    a, b = p.flush()
    return "".join(r) + a, "".join(c) + b


@pytest.mark.parametrize(
    "pieces",
    [
        ["<think>", "plan", "</think>", "answer"],
        ["<thi", "nk>pl", "an</th", "ink>ans", "wer"],
        ["<think>\nplan</think>\n\nanswer"],
    ],
)
def test_split_wherever_tags_fall(pieces: list[str]) -> None:
    assert run(pieces) == ("plan", "answer")


def test_no_think_block_is_all_content() -> None:
    assert run(["Hello", " there"]) == ("", "Hello there")


def test_template_opened_think_starts_in_reasoning() -> None:
    assert run(["step 1", "</think>", "42"], start_in_reasoning=True) == ("step 1", "42")


def test_unterminated_think_is_reasoning() -> None:
    assert run(["<think>still thinking"]) == ("still thinking", "")


def test_reasoning_arrives_before_content_in_stream_order() -> None:
    p = ReasoningParser()
    assert p.feed("<think>a") == ("a", "")
    assert p.feed("b</think>c") == ("b", "c")
