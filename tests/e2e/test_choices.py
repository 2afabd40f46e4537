"""``n`` > 1 on the bundled model: several choices in one answer, the prompt computed once and
shared (the further choices copy its KV), through the official openai package."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow


def client(server: Server) -> openai.OpenAI:
    return openai_client(server.url + "/v1", server.key)  # type: ignore[no-any-return]


def prefill_tokens(server: Server) -> int:
    """Prompt tokens the engine has run so far (cache hits are not run)."""
    text = httpx.get(
        server.url + "/metrics", timeout=10, headers={"Authorization": f"Bearer {server.key}"}
    ).text
    for line in text.splitlines():
        wanted = 'phase="prefill"' in line and f'model="{BUNDLED}"' in line
        if line.startswith("seekport_engine_tokens_total{") and wanted:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def fresh_question() -> list[Any]:
    """A prompt no earlier request shares beyond the chat template's opening."""
    tag = uuid.uuid4().hex
    return [
        {
            "role": "user",
            "content": f"Reference {tag}. Write one short sentence about a lighthouse keeper "
            f"who finds a bottle on the beach with the code {tag[:8]} written inside.",
        }
    ]


def test_three_choices_share_one_prompt(server: Server) -> None:
    """A short new prompt leaves room in the engine's step, where the other choices would
    otherwise compute it beside the first one."""
    sdk = client(server)
    # the chat template's opening (system prompt) in the prefix cache: what is left is short
    sdk.chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    before = prefill_tokens(server)
    r = sdk.chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": f"Name a fruit ({uuid.uuid4().hex[:6]})."}],
        n=3,
        max_tokens=16,
        temperature=1.0,
        seed=11,
    )
    ran = prefill_tokens(server) - before
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(
        c.message.role == "assistant" and c.finish_reason in ("stop", "length") for c in r.choices
    )
    assert all(c.message.content for c in r.choices)
    # seeds 11, 12, 13: the choices are samples of their own, not one answer three times
    assert len({c.message.content for c in r.choices}) >= 2
    u = r.usage
    assert u is not None and u.prompt_tokens > 10
    assert 3 <= u.completion_tokens <= 3 * 16  # the choices' tokens, summed
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    # the first choice computes the uncached prompt; each further one runs only its last token
    assert ran == (u.prompt_tokens - cached) + 2


def test_streamed_choices_interleave_and_each_finishes(server: Server) -> None:
    stream = client(server).chat.completions.create(
        model=BUNDLED,
        messages=fresh_question(),
        n=2,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {}
    firsts: dict[int, str] = {}  # each choice's first token
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content and ch.index not in firsts:
                firsts[ch.index] = ch.delta.content
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                assert ch.index not in finishes  # one finish per choice
                finishes[ch.index] = ch.finish_reason
    assert set(texts) == {0, 1} and set(finishes) == {0, 1}
    assert texts[0] and texts[1]
    # greedy: both sample their first token from the one logits row of the shared prompt; later
    # tokens may part at a near-tie (the second choice computed the prompt's last token in a
    # batch of another shape, and float sums round by batch)
    assert firsts[0] == firsts[1]
    assert usage is not None and 2 <= usage.completion_tokens <= 24


def test_completions_with_two_choices(server: Server) -> None:
    r = client(server).completions.create(
        model=BUNDLED, prompt="Once upon a time", n=2, max_tokens=8, temperature=1.0, seed=3
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.text and c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage is not None and 2 <= r.usage.completion_tokens <= 16


@pytest.mark.parametrize("n", [5, 17], ids=["more-than-the-slots", "over-the-bound"])
def test_too_many_choices_is_a_clear_400(server: Server, n: int) -> None:
    """The test server's engine has 4 slots; 16 is the bound for any backend."""
    with pytest.raises(openai.BadRequestError) as err:
        client(server).chat.completions.create(
            model=BUNDLED, messages=[{"role": "user", "content": "hi"}], n=n, max_tokens=2
        )
    body = err.value.body
    assert isinstance(body, dict) and body.get("param") == "n", body
