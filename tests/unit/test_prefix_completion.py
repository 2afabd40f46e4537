"""DeepSeek's chat prefix completion on local models (/beta): the rules a request must meet,
what the runner is asked to continue, and how the answer is split. The runner is a scripted
fake (it stands in for llama.cpp); tests/e2e/test_prefix_completion.py runs the real model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from seekport.api.encoders.openai import AnswerMeta, OpenAIBody, OpenAIStream
from seekport.config import LocalModelConfig
from seekport.engine.runners.chat_prompt import prefix_text
from seekport.errors import InvalidRequestError
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local import LocalBackend
from seekport.protocol.chat import ChatCompletion, ChatCompletionRequest
from tests.fakes import FakeRunner

ASK = {"role": "user", "content": "Add two numbers in Python"}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


def prefix(content: str | None = "```python\n", **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "prefix": True, **fields}


async def backend(script: list[str], **cfg: Any) -> tuple[LocalBackend, FakeRunner]:
    runner = FakeRunner(script=script)
    b = LocalBackend(LocalModelConfig(name="m", backend="local", **cfg), None, runner=runner)
    await b.start()
    return b, runner


def call(messages: list[dict[str, Any]], *, beta: bool = True, **extra: Any) -> BackendCall:
    body = {"model": "m", "messages": messages, **extra}
    req = ChatCompletionRequest.model_validate(body)
    return BackendCall("chat", "m", req, body, "req-1", stream=bool(extra.get("stream")), beta=beta)


async def complete(b: LocalBackend, c: BackendCall) -> dict[str, Any]:
    out = OpenAIBody(AnswerMeta(model="m", chat=True, fingerprint=None, reasoning=b.reasoning))
    async for ev in await b.generate(c):
        out.add(ev)
    body = orjson.loads(out.body())
    ChatCompletion.model_validate(body)
    return dict(body)


# ---- what the runner continues


async def test_the_prefix_is_continued_not_templated_and_not_echoed() -> None:
    b, runner = await backend(["def add(a, b):\n", "    return a + b\n", "```", "\nmore"])
    body = await complete(b, call([ASK, prefix()], stop=["```"]))
    (templated, _tools) = runner.chats[-1]
    assert templated == [{"role": "user", "content": ASK["content"]}]  # no assistant turn
    assert runner.prefixes[-1] == (None, "```python\n", None)
    choice = body["choices"][0]
    assert choice["message"]["content"] == "def add(a, b):\n    return a + b\n"
    assert choice["finish_reason"] == "stop"
    await b.aclose()


async def test_a_stream_sends_the_continuation_only() -> None:
    b, _ = await backend(["def add", "(a, b)", "```"])
    meta = AnswerMeta(model="m", chat=True, fingerprint=None, reasoning=False)
    enc = OpenAIStream(meta)
    events = await b.generate(call([ASK, prefix()], stop=["```"], stream=True))
    data = b"".join([enc.encode(ev) async for ev in events])
    chunks = [orjson.loads(e[6:]) for e in data.split(b"\n\n") if e.startswith(b"data: {")]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == "def add(a, b)"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    await b.aclose()


async def test_earlier_assistant_turns_stay_in_the_template() -> None:
    b, runner = await backend(["3"])
    history = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "1+2?"},
        prefix("The answer is "),
    ]
    await complete(b, call(history))
    templated, _ = runner.chats[-1]
    assert [m["content"] for m in templated] == ["1+1?", "2", "1+2?"]
    assert runner.prefixes[-1][1] == "The answer is "
    await b.aclose()


async def test_tools_with_a_native_tool_format_may_come_with_a_prefix() -> None:
    b, runner = await backend(["Sure"], tool_parser="hermes")
    await complete(b, call([ASK, prefix("Let me ")], tools=TOOLS))
    assert runner.chats[-1][1] == TOOLS
    assert runner.prefixes[-1][1] == "Let me "
    await b.aclose()


async def test_generic_tools_turned_off_may_come_with_a_prefix() -> None:
    b, runner = await backend(["Sure"])
    body = await complete(b, call([ASK, prefix("Let me ")], tools=TOOLS, tool_choice="none"))
    assert body["choices"][0]["message"]["content"] == "Sure"
    assert runner.schemas == []  # no tool grammar
    assert runner.chats[-1] == ([{"role": "user", "content": ASK["content"]}], None)
    await b.aclose()


# ---- thinking models (reasoning: deepseek-r1)


async def test_a_reasoning_prefix_is_continued_inside_the_think_block() -> None:
    b, runner = await backend(["so 1+1", " is 2.", "</think>", "It is 2."], reasoning="deepseek-r1")
    thought = prefix("", reasoning_content="The user asks 1+1, ")
    body = await complete(b, call([ASK, thought]))
    assert runner.prefixes[-1] == (True, "", "The user asks 1+1, ")  # thinking switched on
    msg = body["choices"][0]["message"]
    assert msg["reasoning_content"] == "so 1+1 is 2."
    assert msg["content"] == "It is 2."
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    await b.aclose()


@pytest.mark.parametrize("fields", [{}, {"reasoning_content": "1+1 is 2."}])
async def test_a_content_prefix_on_a_thinking_model_is_continued_as_answer(
    fields: dict[str, Any],
) -> None:
    b, runner = await backend(["<think>", "2", "</think>"], reasoning="deepseek-r1")
    body = await complete(b, call([ASK, prefix("The answer: ", **fields)]))
    assert runner.prefixes[-1][1:] == ("The answer: ", fields.get("reasoning_content"))
    msg = body["choices"][0]["message"]
    assert msg["content"] == "<think>2</think>"  # after the think block: all of it is answer
    assert msg["reasoning_content"] == ""
    await b.aclose()


R1_OPENED = "<|User|>hi<|Assistant|><think>\n"  # R1 distills open the block themselves
PLAIN = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    ("prompt", "content", "reasoning", "text"),
    [
        (PLAIN, "```python\n", None, "```python\n"),
        (PLAIN, "", None, ""),
        (PLAIN, "", "Let me see", "<think>\nLet me see"),
        (PLAIN, "So: ", "Let me see.\n", "<think>\nLet me see.\n</think>\n\nSo: "),
        (R1_OPENED, "", "Let me see", "Let me see"),
        (R1_OPENED, "So: ", "Let me see.", "Let me see.\n</think>\n\nSo: "),
        (R1_OPENED, "So: ", None, "</think>\n\nSo: "),  # the prefix is the answer
    ],
)
def test_prefix_text_after_the_generation_prompt(
    prompt: str, content: str, reasoning: str | None, text: str
) -> None:
    assert prefix_text(prompt, content, reasoning) == text


# ---- what is refused, with param messages


@pytest.mark.parametrize(
    ("messages", "beta", "extra", "message"),
    [
        ([ASK, prefix()], False, {}, "use the /beta base URL"),
        ([ASK, prefix(), ASK], True, {}, "only the last message may have prefix: true"),
        (
            [ASK, prefix(), prefix()],
            True,
            {},
            "only the last message may have prefix: true; messages[1]",
        ),
        ([{**ASK, "prefix": True}], True, {}, "messages[0] is a user message"),
        (
            [ASK, prefix(tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": "{}"}}])],
            True,
            {},
            "cannot have tool_calls",
        ),
        ([ASK, prefix()], True, {"tools": TOOLS}, "grammar, which would conflict"),
        (
            [ASK, prefix()],
            True,
            {"tools": TOOLS, "tool_choice": "required"},
            "grammar, which would conflict",
        ),
        ([ASK, prefix(reasoning_content="hm")], True, {}, "does not reason"),
    ],
)
async def test_prefixes_the_local_engine_cannot_continue_are_refused(
    messages: list[dict[str, Any]], beta: bool, extra: dict[str, Any], message: str
) -> None:
    b, runner = await backend(["x"])
    with pytest.raises(InvalidRequestError) as err:
        await b.generate(call(messages, beta=beta, **extra))
    assert err.value.param == "messages"
    assert err.value.status_code == 400 and err.value.error_type == "invalid_request_error"
    assert message in err.value.message
    assert runner.chats == []  # refused before anything was templated
    await b.aclose()


async def test_continuing_a_thought_with_thinking_off_is_refused() -> None:
    b, _ = await backend(["x"], reasoning="deepseek-r1")
    c = call([ASK, prefix("", reasoning_content="hm")], thinking={"type": "disabled"})
    with pytest.raises(InvalidRequestError, match="turns off") as err:
        await b.generate(c)
    assert err.value.param == "messages"
    await b.aclose()


async def test_prefix_false_is_an_ordinary_assistant_turn_anywhere() -> None:
    b, runner = await backend(["x"])
    await complete(b, call([ASK, {**prefix(), "prefix": False}], beta=False))
    assert len(runner.chats[-1][0]) == 2 and runner.prefixes[-1][1] is None
    await b.aclose()
