"""Hermes-style <tool_call> blocks become OpenAI tool calls; everything else stays content."""

from __future__ import annotations

import json

from seekport.engine.parsers.tools import HermesToolParser


def run(pieces: list[str]) -> tuple[str, list[tuple[str, dict[str, object]]]]:
    p = HermesToolParser()
    content, calls = [], []
    for piece in pieces:
        c, done = p.feed(piece)
        content.append(c)
        calls.extend(done)
    content.append(p.flush())
    return "".join(content), [(c.name, json.loads(c.arguments)) for c in calls]


def test_call_split_across_pieces() -> None:
    pieces = [
        "Checking.",
        "<tool_",
        "call>\n",
        '{"name": "get_weather", ',
        '"arguments": {"city": "杭州"}}',
        "\n</tool",
        "_call>",
    ]
    assert run(pieces) == ("Checking.", [("get_weather", {"city": "杭州"})])


def test_two_calls_in_a_row() -> None:
    text = (
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>'
    )
    assert run([text]) == ("", [("a", {}), ("b", {"x": 1})])


def test_broken_json_stays_content() -> None:
    text = "<tool_call>{not json}</tool_call> ok"
    assert run([text]) == (text, [])


def test_unfinished_call_is_returned_as_content() -> None:
    assert run(['hi <tool_call>{"name"']) == ('hi <tool_call>{"name"', [])


def test_plain_text_with_angle_brackets_is_untouched() -> None:
    assert run(["a < b and <tool> c"]) == ("a < b and <tool> c", [])
