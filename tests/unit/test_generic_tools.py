"""Generic tool calls for local models without a native tool format: the schema (and the
llama.cpp grammar compiled from it), the system prompt, the history rendered as text, the
parser, and the backend's events over a scripted runner."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from seekport.api.encoders.anthropic import AnthropicBody, AnthropicStream, MessageMeta
from seekport.api.encoders.responses import ResponseMeta, ResponsesStream
from seekport.config import LocalModelConfig
from seekport.engine.parsers.tools import GenericToolParser, HermesToolParser, ToolCallPiece
from seekport.engine.runners.grammar import grammar_for
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
from tests.unit.test_anthropic_format import events_of
from tests.unit.test_local_backend_shapes import call, complete, stream
from tests.unit.test_responses_format import parse as parse_responses

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


def feed_all(pieces: list[str]) -> tuple[list[str], list[ToolCallPiece]]:
    """What the parser returns for each piece and at the end: content, and call pieces."""
    p = GenericToolParser()
    out, calls = [], []
    for piece in pieces:
        c, got = p.feed(piece)
        out.append(c)
        calls.extend(got)
    c, got = p.flush()
    out.append(c)
    calls.extend(got)
    return out, calls


def assembled(pieces: list[ToolCallPiece]) -> list[tuple[str, str]]:
    """The calls the pieces make, checking their order on the way: a call starts with a
    piece that has its name and the next index; its other pieces follow it, each with text."""
    calls: list[tuple[str, str]] = []
    for p in pieces:
        if p.name is not None:
            assert p.index == len(calls)
            calls.append((p.name, p.arguments))
        else:
            assert calls and p.index == len(calls) - 1 and p.arguments
            calls[-1] = (calls[-1][0], calls[-1][1] + p.arguments)
    return calls


def test_parser_streams_a_response_as_it_arrives_escapes_kept_whole() -> None:
    pieces = ['{ "resp', 'onse": "Hel', "lo \\", "n w\\u00e9", "\\ud83d", '\\ude00 \\"q\\"', '"}']
    out, calls = feed_all(pieces)
    assert calls == []
    assert out == ["", "Hel", "lo ", "\n wé", "", '😀 "q"', "", ""]


# arguments as a model writes them: Chinese, escapes (\u4f60, \", a string ending in an
# escaped backslash), brackets inside strings, nested objects and arrays, spacing
WEATHER_ARGS = (
    '{"city": "杭州 \\u4f60好 \\"West Lake\\"", "days": 3, '
    '"spots": [{"name": "断桥", "tags": ["湖", "}]{\\\\"]}, []], "dir": "C:\\\\tmp\\\\", '
    '"opts": {"a": {"b": null}, "c": true, "d": -1.5e3}}'
)
SEARCH_ARGS = '{"q":"a\\/b \\ud83d\\ude00","n":[]}'
CALLS = [("get_weather", WEATHER_ARGS), ("get_time", "{}"), ("search", SEARCH_ARGS)]
ANSWER = (
    '{"tool_calls": [{"name": "get_weather", "arguments": '
    + WEATHER_ARGS
    + '}, {"name": "get_time", "arguments": {}},{"name":"search","arguments":'
    + SEARCH_ARGS
    + "} ]}"
)


def random_splits(text: str, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rnd.randint(1, 9)
        out.append(text[i : i + n])
        i += n
    return out


@pytest.mark.parametrize(
    "split",
    ["whole", "chars", *(f"random{seed}" for seed in range(20))],
)
def test_parser_streams_calls_whose_argument_pieces_make_the_arguments(split: str) -> None:
    if split == "whole":
        pieces = [ANSWER]
    elif split == "chars":
        pieces = list(ANSWER)
    else:
        pieces = random_splits(ANSWER, int(split.removeprefix("random")))
    out, got = feed_all(pieces)
    assert "".join(out) == ""
    assert assembled(got) == CALLS  # the raw text as generated, piece by piece
    assert json.loads(WEATHER_ARGS)["city"] == '杭州 你好 "West Lake"'  # the test's own data
    assert json.loads(WEATHER_ARGS)["dir"] == "C:\\tmp\\"


def test_parser_is_right_at_every_split_point() -> None:
    for i in range(len(ANSWER) + 1):
        out, got = feed_all([ANSWER[:i], ANSWER[i:]])
        assert "".join(out) == "" and assembled(got) == CALLS, i


def test_a_call_starts_as_soon_as_its_name_is_read_and_its_arguments_stream() -> None:
    p = GenericToolParser()
    name_end = ANSWER.index('"get_weather"') + len('"get_weather"')
    args_at = ANSWER.index(WEATHER_ARGS)
    per_char = [p.feed(ch)[1] for ch in ANSWER]
    assert p.flush() == ("", [])
    # nothing before the name's closing quote; then the call's first piece, no arguments yet
    assert all(not got for got in per_char[: name_end - 1])
    assert per_char[name_end - 1] == [ToolCallPiece(0, "get_weather", "")]
    # each character of the arguments comes out as it is read (nothing held back)
    for i in range(args_at, args_at + len(WEATHER_ARGS)):
        assert per_char[i] == [ToolCallPiece(0, None, ANSWER[i])], i
    assert p.calls == 3


def test_raw_control_characters_in_argument_strings_are_escaped() -> None:
    text = '{"tool_calls": [{"name": "note", "arguments": {"text": "a\nb\tc\x01", "k": 1}}]}'
    for pieces in ([text], list(text)):
        _, got = feed_all(pieces)
        assert [name for name, _ in assembled(got)] == ["note"]
        ((_, args),) = assembled(got)
        assert args == '{"text": "a\\nb\\tc\\u0001", "k": 1}'
        assert json.loads(args) == {"text": "a\nb\tc\x01", "k": 1}  # strict JSON


def test_other_shapes_of_a_call_object() -> None:
    """Arguments before the name (the call starts when the name comes, with them), arguments
    that are a JSON string (its text, as non-stream parsing always took it) or a number,
    and a call without arguments ({})."""
    text = (
        '{"tool_calls": [{"arguments": {"x": [1, "]"]}, "name": "late"}, '
        '{"name": "s", "arguments": "{\\"a\\": \\"\\u4f60\\"}"}, {"name": "n", "arguments": 5},'
        ' {"name": "bare"}]}'
    )
    for pieces in ([text], list(text), random_splits(text, 7)):
        out, got = feed_all(pieces)
        assert "".join(out) == ""
        assert assembled(got) == [
            ("late", '{"x": [1, "]"]}'),
            ("s", '{"a": "你"}'),
            ("n", "5"),
            ("bare", "{}"),
        ]
        assert got[0] == ToolCallPiece(0, "late", '{"x": [1, "]"]}')


def test_an_answer_cut_short() -> None:
    """Cut before the first call's name: nothing was sent, the text is content. Cut inside a
    call: the pieces sent stand, the call's arguments stay cut (finish_reason says length)."""
    for cut in ['{"tool_calls": [{"name": "get_weath', '{"tool_calls": [', '{"tool_c']:
        assert feed_all([cut]) == (["", cut], [])
    out, got = feed_all(list('{"tool_calls": [{"name": "get_weather", "argu'))
    assert "".join(out) == "" and assembled(got) == [("get_weather", "")]
    cut_at = ANSWER.index(SEARCH_ARGS) + 8
    out, got = feed_all(random_splits(ANSWER[:cut_at], 3))
    assert "".join(out) == ""
    assert assembled(got) == [*CALLS[:2], ("search", SEARCH_ARGS[:8])]
    assert "".join(feed_all(['{"response": "half an ans'])[0]) == "half an ans"


def test_hermes_calls_come_whole_as_one_piece_each() -> None:
    p = HermesToolParser()
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", '
    assert p.feed(text) == ("", [ToolCallPiece(0, "a", "{}")])
    assert p.feed('"arguments": {"x": 1}}</tool_call>') == ("", [ToolCallPiece(1, "b", '{"x": 1}')])


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


# a call as the model's tokens bring it
TOKENS = [
    *['{"', "tool", "_calls", '":', ' [{"', "name", '":', ' "', "get", "_weather", '",'],
    *[' "', "arguments", '":', ' {"', "city", '":', ' "', "杭州", '",', ' "', "days", '":'],
    *[" 3", "}}", "]}"],
]
ARGS = '{"city": "杭州", "days": 3}'


def chunks_of(data: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(e[6:]) for e in data if e.startswith(b"data: {")]


async def test_backend_streams_a_call_name_first_then_its_arguments_in_pieces() -> None:
    """OpenAI's streamed shape: the call's first delta has index, id, type and name with
    empty arguments; then argument deltas (index and arguments only) while they are
    generated, which concatenate to the arguments the non-stream answer has."""
    b, _ = await generic_backend(TOKENS)
    chunks = chunks_of(await stream(b, call(True, tools=TOOLS)))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert not any(d.get("content") for d in deltas)
    first, *rest = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) == TOKENS.index("]}") - TOKENS.index(' {"')  # a delta per token
    assert all(set(tc) == {"index", "function"} and tc["index"] == 0 for tc in rest)
    assert all(set(tc["function"]) == {"arguments"} for tc in rest)
    streamed = "".join(tc["function"]["arguments"] for tc in rest)
    assert streamed == ARGS and json.loads(streamed) == {"city": "杭州", "days": 3}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    body = await complete(b, call(False, tools=TOOLS))
    (tc,) = body["choices"][0]["message"]["tool_calls"]
    assert tc["function"] == {"name": "get_weather", "arguments": streamed}
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    await b.aclose()


async def test_the_same_pieces_reach_anthropic_and_responses_streams() -> None:
    """input_json_delta (Anthropic) and function_call_arguments.delta (Responses) carry the
    pieces as they come; their concatenation is the call's input / arguments."""
    b, _ = await generic_backend(TOKENS)
    events = [ev async for ev in await b.generate(call(True, tools=TOOLS))]
    await b.aclose()

    enc = AnthropicStream(MessageMeta(model="m"))
    data = b"".join(enc.encode(ev) for ev in events) + enc.close() + enc.done()
    sse = events_of(data)
    (start,) = [d["content_block"] for n, d in sse if n == "content_block_start"]
    assert start["type"] == "tool_use" and start["name"] == "get_weather"
    parts = [d["delta"]["partial_json"] for n, d in sse if n == "content_block_delta"]
    assert len(parts) > 1 and "".join(parts) == ARGS
    body = AnthropicBody(MessageMeta(model="m"))
    for ev in events:
        body.add(ev)
    (use,) = json.loads(body.body())["content"]
    assert use["input"] == {"city": "杭州", "days": 3} and use["id"] == start["id"]

    renc = ResponsesStream(ResponseMeta("m"))
    rdata = b"".join(renc.encode(ev) for ev in events) + renc.close() + renc.done()
    revents = parse_responses(rdata)
    pieces = [e["delta"] for e in revents if e["type"] == "response.function_call_arguments.delta"]
    (done,) = [e for e in revents if e["type"] == "response.function_call_arguments.done"]
    assert len(pieces) > 1 and "".join(pieces) == ARGS == done["arguments"]
    assert done["name"] == "get_weather"


async def test_a_call_cut_by_max_tokens_keeps_what_was_sent() -> None:
    """finish_reason length; the call is there with the arguments generated so far (cut),
    streamed and non-stream alike; nothing becomes content."""
    b, _ = await generic_backend(TOKENS)
    n = TOKENS.index("杭州") + 1
    body = await complete(b, call(False, tools=TOOLS, max_tokens=n))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and not choice["message"].get("content")
    (tc,) = choice["message"]["tool_calls"]
    assert tc["function"] == {"name": "get_weather", "arguments": '{"city": "杭州'}
    chunks = chunks_of(await stream(b, call(True, tools=TOOLS, max_tokens=n)))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    tcs = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert "".join(tc["function"]["arguments"] for tc in tcs) == '{"city": "杭州'
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    await b.aclose()


async def test_backend_streams_a_response_as_content() -> None:
    b, _ = await generic_backend(['{"response": "Hel', 'lo"}'])
    chunks = chunks_of(await stream(b, call(True, tools=TOOLS)))
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
