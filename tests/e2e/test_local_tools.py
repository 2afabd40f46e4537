"""Tool calls on the bundled model, which has no native tool format: the tools go into the
system message and a grammar built from their schemas shapes the answer (generic tools).
Driven by the official openai package against the real server and model."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow

CITIES = ["Paris", "London", "Tokyo"]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather forecast for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "enum": CITIES},
                    "days": {"type": "integer"},
                },
                "required": ["city", "days"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The current time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "JST"]}},
                "required": ["zone"],
                "additionalProperties": False,
            },
        },
    },
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris tomorrow?"}]


def client(server: Server) -> openai.OpenAI:
    return openai_client(server.url + "/v1", server.key)  # type: ignore[no-any-return]


def check_weather_arguments(arguments: str) -> dict[str, Any]:
    """The arguments validate against get_weather's schema (checked by hand: no jsonschema)."""
    args = json.loads(arguments)
    assert isinstance(args, dict) and set(args) == {"city", "days"}
    assert args["city"] in CITIES
    assert isinstance(args["days"], int) and not isinstance(args["days"], bool)
    return args


def test_named_tool_choice_calls_exactly_that_tool_with_valid_arguments(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls
    for tc in calls:
        assert tc.type == "function" and tc.id.startswith("call_")
        assert tc.function.name == "get_weather"
        check_weather_arguments(tc.function.arguments)


def test_required_tool_choice_returns_a_call(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=120,
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    for tc in choice.message.tool_calls:
        assert tc.function.name in ("get_weather", "get_time")
        assert isinstance(json.loads(tc.function.arguments), dict)


def test_tool_result_round_trip_answers(server: Server) -> None:
    """A second turn carrying the assistant's tool call and the tool's result is templated
    (as text, since SmolLM2's template takes no tools) and answered with a 200."""
    sdk = client(server)
    first = sdk.chat.completions.create(
        model=BUNDLED,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
        temperature=0,
    )
    (tc, *_) = first.choices[0].message.tool_calls or []
    messages: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": tc.id, "content": "Sunny, 21 C"},
    ]
    raw = sdk.chat.completions.with_raw_response.create(
        model=BUNDLED, messages=messages, tools=TOOLS, max_tokens=60, temperature=0
    )
    assert raw.http_response.status_code == 200
    second = raw.parse()
    choice = second.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    # and without tools: plain text over the same history
    plain = sdk.chat.completions.create(
        model=BUNDLED, messages=messages, max_tokens=20, temperature=0
    )
    assert plain.choices[0].message.content


def test_streamed_tool_call_arrives_as_tool_call_deltas(server: Server) -> None:
    """OpenAI's streamed shape: the call starts with a delta carrying its index, id and name
    (and no arguments yet), then its arguments come in several deltas as they are generated;
    their concatenation is the non-stream answer's arguments and follows the schema."""
    sdk = client(server)
    asked: dict[str, Any] = {
        "model": BUNDLED,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 120,
        "temperature": 0,
    }
    chunks = list(sdk.chat.completions.create(**asked, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas and all(d.index == 0 for d in deltas)  # a named choice is one call
    first, *rest = deltas
    assert first.id and first.id.startswith("call_") and first.type == "function"
    assert first.function is not None and first.function.name == "get_weather"
    assert not first.function.arguments
    assert len(rest) > 1  # the arguments stream in pieces
    for d in rest:
        assert d.id is None and d.function is not None and not d.function.name
    streamed = "".join((d.function.arguments or "") for d in rest if d.function)
    check_weather_arguments(streamed)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    whole = sdk.chat.completions.create(**asked).choices[0].message.tool_calls
    assert whole and [tc.function.arguments for tc in whole] == [streamed]


def test_tool_choice_none_gives_plain_content(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=20, temperature=0
    )
    choice = r.choices[0]
    assert not choice.message.tool_calls
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_anthropic_surface_gets_generic_tool_use_and_its_round_trip(server: Server) -> None:
    """Claude Code's format over the same path: a forced tool is a tool_use block whose input
    follows the schema, and the tool_result turn is answered."""
    import anthropic

    c = anthropic.Anthropic(base_url=server.url + "/anthropic", api_key=server.key)
    weather = TOOLS[0]["function"]
    tools: Any = [
        {
            "name": weather["name"],
            "description": weather["description"],
            "input_schema": weather["parameters"],
        }
    ]
    asked: Any = [{"role": "user", "content": "What is the weather in Paris tomorrow?"}]
    msg = c.messages.create(
        model=BUNDLED,
        max_tokens=120,
        messages=asked,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},
    )
    assert msg.stop_reason == "tool_use"
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    check_weather_arguments(json.dumps(use.input))
    # streamed: the block starts with its name, its input comes as several input_json deltas
    with c.messages.stream(
        model=BUNDLED,
        max_tokens=120,
        messages=asked,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},
    ) as s:
        events = list(s)
        final = s.get_final_message()
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [(b.type, getattr(b, "name", None)) for b in starts] == [("tool_use", "get_weather")]
    parts = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(parts) > 1
    assert json.loads("".join(parts)) == use.input
    assert final.stop_reason == "tool_use"
    assert [b.input for b in final.content if b.type == "tool_use"] == [use.input]
    again = c.messages.create(
        model=BUNDLED,
        max_tokens=40,
        tools=tools,
        messages=[
            *asked,
            {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
            },
        ],
        extra_body={"temperature": 0},
    )
    assert again.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert again.content


def test_auto_streams_a_response_as_content_deltas(server: Server) -> None:
    """With tool_choice auto the model may answer directly; that answer's text streams as it
    is generated (several content deltas, no JSON wrapper), not at the end."""
    chunks = list(
        client(server).chat.completions.create(
            model=BUNDLED,
            messages=ASK,
            tools=TOOLS,
            max_tokens=60,
            temperature=0,
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    if any(d.tool_calls for d in deltas):
        assert finish == "tool_calls"
        return
    texts = [d.content for d in deltas if d.content]
    assert len(texts) > 1 and finish in ("stop", "length")
    assert not "".join(texts).lstrip().startswith('{"response"')


async def test_responses_surface_gets_function_calls_async(server: Server) -> None:
    """Codex's format over the same path, with the async client: a forced function is a
    function_call item whose arguments follow the schema, streamed as several
    function_call_arguments deltas; the function_call_output turn is answered."""
    weather = TOOLS[0]["function"]
    tools: Any = [
        {
            "type": "function",
            "name": weather["name"],
            "description": weather["description"],
            "parameters": weather["parameters"],
        }
    ]
    named: Any = {"type": "function", "name": "get_weather"}
    ask = "What is the weather in Paris tomorrow?"
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key=server.key, max_retries=0
    ) as c:
        r = await c.responses.create(
            model=BUNDLED, input=ask, tools=tools, tool_choice=named, temperature=0
        )
        (call,) = [item for item in r.output if item.type == "function_call"]
        assert call.name == "get_weather" and call.call_id
        check_weather_arguments(call.arguments)
        async with c.responses.stream(
            model=BUNDLED, input=ask, tools=tools, tool_choice=named, temperature=0
        ) as s:
            events = [e async for e in s]
            final = await s.get_final_response()
        parts = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert len(parts) > 1 and "".join(parts) == call.arguments
        assert [i.arguments for i in final.output if i.type == "function_call"] == [call.arguments]
        again = await c.responses.create(
            model=BUNDLED,
            input=[
                {"role": "user", "content": ask},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
            ],
            tools=tools,
            max_output_tokens=40,
            temperature=0,
        )
        assert again.status in ("completed", "incomplete") and again.output
