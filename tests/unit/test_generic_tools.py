"""Generic tool calls for local models without a native tool format: the schema (and the
llama.cpp grammar compiled from it), the system prompt, the history rendered as text, the
parser, and the backend's events over a scripted runner."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from seekport.config import LocalModelConfig
from seekport.engine.parsers.tools import GenericToolParser
from seekport.engine.runners.llamacpp import grammar_for
from seekport.errors import InvalidRequestError
from seekport.gateway.backends.local import LocalBackend
from seekport.gateway.backends.local_requests import template_message
from seekport.gateway.backends.local_tools import (
    render_history,
    tool_prompt,
    tool_schema,
    with_tool_prompt,
)
from seekport.protocol.chat import ChatCompletionRequest
from tests.fakes import FakeRunner
from tests.unit.test_local_backend_shapes import call, complete, stream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
TOOLS = [WEATHER, TIME]


def req(**extra: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}
    return ChatCompletionRequest.model_validate({**body, **extra})


def test_auto_schema_allows_calls_of_any_tool_or_a_response_and_compiles() -> None:
    schema = tool_schema(req())
    calls, response = schema["anyOf"]
    assert response["properties"] == {"response": {"type": "string"}}
    items = calls["properties"]["tool_calls"]["items"]["anyOf"]
    assert [i["properties"]["name"] for i in items] == [
        {"const": "get_weather"},
        {"const": "get_time"},
    ]
    # each call's arguments follow its tool's parameters; no parameters: any object
    assert items[0]["properties"]["arguments"] == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert items[1]["properties"]["arguments"] == {"type": "object"}
    assert calls["properties"]["tool_calls"]["minItems"] == 1
    assert calls["properties"]["tool_calls"]["maxItems"] == 1  # parallel calls: on request
    grammar = grammar_for(schema)
    assert grammar is not None and '"\\"response\\""' in grammar


def test_required_named_and_parallel_off_narrow_the_schema() -> None:
    required = tool_schema(req(tool_choice="required"))
    assert set(required["properties"]) == {"tool_calls"}  # no response branch
    named = tool_schema(req(tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    item = named["properties"]["tool_calls"]["items"]
    assert item["properties"]["name"] == {"const": "get_weather"}
    grammar = grammar_for(named)
    assert grammar is not None
    assert "get_weather" in grammar and "get_time" not in grammar and "response" not in grammar
    many = tool_schema(req(parallel_tool_calls=True))
    assert "maxItems" not in many["anyOf"][0]["properties"]["tool_calls"]
    assert "one or more calls" in tool_prompt(req(parallel_tool_calls=True))
    for off in (req(parallel_tool_calls=False), req()):
        assert tool_schema(off)["anyOf"][0]["properties"]["tool_calls"]["maxItems"] == 1
        assert "exactly one call" in tool_prompt(off)
    # a named choice is one call, even with parallel calls on
    named_many = tool_schema(
        req(
            parallel_tool_calls=True,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    )
    assert named_many["properties"]["tool_calls"]["maxItems"] == 1


def test_grammar_keeps_the_schema_property_order() -> None:
    """Each call's name comes before its arguments (so the call can start before its
    arguments stream), and a response_format's properties come in the order given."""
    grammar = grammar_for(tool_schema(req()))
    assert grammar is not None
    calls = [r for r in grammar.splitlines() if "-name-kv" in r and "-arguments-kv" in r]
    assert len(calls) == 2  # a rule per tool
    assert all(r.index("-name-kv") < r.index("-arguments-kv") for r in calls)
    schema = {
        "type": "object",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}},
        "required": ["zeta", "alpha"],
    }
    grammar = grammar_for(schema)
    assert grammar is not None
    (root,) = [r for r in grammar.splitlines() if r.startswith("root ::=")]
    assert root.index("zeta-kv") < root.index("alpha-kv")


@pytest.mark.parametrize(
    "choice",
    [{"type": "function", "function": {"name": "nope"}}, {"type": "function"}, "sometimes"],
)
def test_a_tool_choice_naming_no_tool_is_a_400(choice: Any) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        tool_schema(req(tool_choice=choice))
    assert exc.value.param == "tool_choice"


def test_prompt_describes_the_tools_and_merges_into_the_system_message() -> None:
    auto = tool_prompt(req())
    assert "get_weather" in auto and "Weather in a city" in auto and '"response"' in auto
    assert '"response"' not in tool_prompt(req(tool_choice="required"))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    merged = with_tool_prompt(msgs, "TOOLS")
    assert merged == [
        {"role": "system", "content": "Be brief.\n\nTOOLS"},
        {"role": "user", "content": "hi"},
    ]
    assert msgs[0]["content"] == "Be brief."  # not mutated
    assert with_tool_prompt(msgs[1:], "TOOLS")[0] == {"role": "system", "content": "TOOLS"}


def test_history_renders_tool_calls_and_results_as_text() -> None:
    r = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
            ],
        }
    )
    user, assistant, tool = render_history([template_message(m) for m in r.messages])
    assert user == {"role": "user", "content": "weather in Paris?"}
    assert assistant["role"] == "assistant" and "tool_calls" not in assistant
    assert json.loads(assistant["content"]) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    }
    assert tool["role"] == "user"
    assert json.loads(tool["content"]) == {
        "tool_response": {"name": "get_weather", "tool_call_id": "call_1", "content": "sunny, 21 C"}
    }


def feed_all(pieces: list[str]) -> tuple[list[str], list[tuple[str, Any]]]:
    p = GenericToolParser()
    out, calls = [], []
    for piece in pieces:
        c, done = p.feed(piece)
        out.append(c)
        calls.extend(done)
    c, done = p.flush()
    out.append(c)
    calls.extend(done)
    return out, [(d.name, json.loads(d.arguments)) for d in calls]


def test_parser_streams_a_response_as_it_arrives_escapes_kept_whole() -> None:
    pieces = ['{ "resp', 'onse": "Hel', "lo \\", "n w\\u00e9", "\\ud83d", '\\ude00 \\"q\\"', '"}']
    out, calls = feed_all(pieces)
    assert calls == []
    assert out == ["", "Hel", "lo ", "\n wé", "", '😀 "q"', "", ""]


def test_parser_returns_parallel_calls_at_the_end() -> None:
    text = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "杭州"}}, '
    out, calls = feed_all([text, '{"name": "get_time", "arguments": {}}]}'])
    assert "".join(out) == ""
    assert calls == [("get_weather", {"city": "杭州"}), ("get_time", {})]


def test_parser_keeps_an_answer_cut_short_as_content() -> None:
    cut = '{"tool_calls": [{"name": "get_weather", "argu'
    assert feed_all([cut]) == (["", cut], [])
    assert "".join(feed_all(['{"response": "half an ans'])[0]) == "half an ans"


async def generic_backend(pieces: list[str]) -> tuple[LocalBackend, FakeRunner]:
    runner = FakeRunner(script=pieces)
    b = LocalBackend(LocalModelConfig(name="r1-local", backend="local"), None, runner=runner)
    await b.start()
    return b, runner


CALL_PIECES = ['{"tool_calls": [{"name": "get_weather", ', '"arguments": {"city": "Paris"}}]}']


async def test_backend_offers_tools_by_prompt_and_grammar_and_returns_tool_calls() -> None:
    b, runner = await generic_backend(CALL_PIECES)
    body = await complete(b, call(False, tools=TOOLS, tool_choice="required"))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (tc,) = choice["message"]["tool_calls"]
    assert tc["id"].startswith("call_") and tc["function"]["name"] == "get_weather"
    assert orjson.loads(tc["function"]["arguments"]) == {"city": "Paris"}
    assert not choice["message"].get("content")
    ((messages, tools),) = runner.chats
    assert tools is None  # the template is not given tools: the system message describes them
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]
    assert runner.schemas == [tool_schema(req(tool_choice="required"))]
    await b.aclose()


async def test_backend_streams_calls_as_deltas_and_a_response_as_content() -> None:
    b, _ = await generic_backend(CALL_PIECES)
    chunks = [
        orjson.loads(e[6:])
        for e in await stream(b, call(True, tools=TOOLS))
        if e.startswith(b"data: {")
    ]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert [(tc["index"], tc["function"]["name"]) for tc in calls] == [(0, "get_weather")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    await b.aclose()

    b, _ = await generic_backend(['{"response": "Hel', 'lo"}'])
    chunks = [
        orjson.loads(e[6:])
        for e in await stream(b, call(True, tools=TOOLS))
        if e.startswith(b"data: {")
    ]
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [c for c in content if c] == ["Hel", "lo"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    await b.aclose()


async def test_tool_choice_none_offers_no_tools_and_leaves_output_free() -> None:
    b, runner = await generic_backend(["Just ", "text."])
    body = await complete(b, call(False, tools=TOOLS, tool_choice="none"))
    assert body["choices"][0]["message"]["content"] == "Just text."
    assert body["choices"][0]["finish_reason"] == "stop"
    ((messages, _),) = runner.chats
    assert messages == [{"role": "user", "content": "2+2?"}]
    assert runner.schemas == []
    await b.aclose()


async def test_tools_with_a_response_format_are_refused() -> None:
    b, _ = await generic_backend(CALL_PIECES)
    with pytest.raises(InvalidRequestError) as exc:
        await b.generate(call(False, tools=TOOLS, response_format={"type": "json_object"}))
    assert exc.value.param == "response_format"
    await b.aclose()
