"""DeepSeek's chat prefix completion on the bundled model: at the base URL ``/beta`` the last
message is an assistant message with ``prefix: true`` and the model continues it. Driven by the
official openai package against the real server and model (greedy, so answers repeat)."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow

ASK: Any = {"role": "user", "content": "Write a Python function that adds two numbers."}
FENCE = "```python\n"


def beta(server: Server) -> openai.OpenAI:
    return openai_client(server.url + "/beta", server.key)  # type: ignore[no-any-return]


def prefix(content: str) -> Any:
    return {"role": "assistant", "content": content, "prefix": True}


def test_the_docs_example_writes_the_code_after_the_fence(server: Server) -> None:
    """DeepSeek's own example: the prefix opens a code block, the stop closes it."""
    r = beta(server).chat.completions.create(
        model=BUNDLED,
        messages=[ASK, prefix(FENCE)],
        stop=["```"],
        max_tokens=120,
        temperature=0,
    )
    choice = r.choices[0]
    code = choice.message.content
    assert code and not code.startswith(FENCE) and "```" not in code
    assert choice.finish_reason == "stop"
    compile(code, "<answer>", "exec")  # the continuation is the code itself
    assert "def " in code


def test_a_stream_continues_the_same_way(server: Server) -> None:
    fields: Any = {
        "model": BUNDLED,
        "messages": [ASK, prefix(FENCE)],
        "stop": ["```"],
        "max_tokens": 120,
        "temperature": 0,
    }
    whole = beta(server).chat.completions.create(**fields)
    chunks = list(
        beta(server).chat.completions.create(
            **fields, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([d for d in deltas if d]) > 1  # streamed as it is generated
    assert "".join(deltas) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_the_model_continues_where_it_was_going(server: Server) -> None:
    """The model's own answer, cut after its first line and given back as the prefix, is
    continued with exactly the rest of that answer: the prefix is read, right after the
    generation prompt (no new assistant turn after it), and its tokens are counted in
    prompt_tokens, as many as the model took to write it."""
    n = 24
    plain = openai_client(server.url + "/v1", server.key).chat.completions.create(
        model=BUNDLED, messages=[ASK], max_tokens=n, temperature=0
    )
    answer = plain.choices[0].message.content
    assert answer and plain.usage is not None and plain.usage.completion_tokens == n
    head = answer[: answer.index("\n") + 1]
    assert 0 < len(head) < len(answer)
    first = beta(server).chat.completions.create(
        model=BUNDLED, messages=[ASK, prefix(head)], max_tokens=n, temperature=0
    )
    assert first.usage is not None
    k = first.usage.prompt_tokens - plain.usage.prompt_tokens  # the prefix's tokens
    assert 0 < k < n
    rest = beta(server).chat.completions.create(
        model=BUNDLED, messages=[ASK, prefix(head)], max_tokens=n - k, temperature=0
    )
    assert rest.choices[0].message.content == answer[len(head) :]
    assert first.choices[0].message.content
    assert (head + first.choices[0].message.content).startswith(answer)


def test_a_json_prefix_is_continued_inside_its_string(server: Server) -> None:
    r = beta(server).chat.completions.create(
        model=BUNDLED,
        messages=[
            {"role": "user", "content": "Give me a JSON object describing a cat."},
            prefix('{"name": "'),
        ],
        max_tokens=12,
        temperature=0,
    )
    content = r.choices[0].message.content
    assert content is not None
    assert re.match(r'\{"name": "\w[^"]*", "', '{"name": "' + content), content


def test_prefix_completion_needs_the_beta_base_url(server: Server) -> None:
    v1 = openai_client(server.url + "/v1", server.key)
    with pytest.raises(openai.BadRequestError) as err:
        v1.chat.completions.create(model=BUNDLED, messages=[ASK, prefix(FENCE)], max_tokens=4)
    e = err.value
    assert e.status_code == 400
    assert (e.type, e.code, e.param) == (
        "invalid_request_error",
        "invalid_request_error",
        "messages",
    )
    assert "/beta" in e.message


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([{**ASK, "prefix": True}], "user message"),
        ([ASK, prefix(FENCE), ASK], "only the last message"),
    ],
)
def test_a_prefix_not_on_the_last_assistant_message_is_refused(
    server: Server, messages: list[Any], says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        beta(server).chat.completions.create(model=BUNDLED, messages=messages, max_tokens=4)
    assert err.value.param == "messages" and says in err.value.message
