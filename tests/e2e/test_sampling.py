"""Per-request sampling parameters on the real model take effect: each is checked against a
greedy reference it must match or must change."""

from __future__ import annotations

from collections import Counter
from typing import Any

import openai
import pytest

from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Tell me a story about a lighthouse keeper."}]


def ask(server: Server, messages: list[dict[str, str]], **params: Any) -> Any:
    c: openai.OpenAI = openai_client(server.url + "/v1", server.key)
    return c.chat.completions.create(model=BUNDLED, messages=messages, **params)  # type: ignore[call-overload]


def text(server: Server, messages: list[dict[str, str]], **params: Any) -> str:
    return str(ask(server, messages, **params).choices[0].message.content)


@pytest.mark.parametrize(
    "narrowing",
    [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}],
    ids=["top_k=1", "tiny top_p", "min_p=1"],
)
def test_a_filter_that_keeps_only_the_best_token_samples_greedily(
    server: Server, narrowing: dict[str, Any]
) -> None:
    greedy = text(server, STORY, max_tokens=24, temperature=0)
    wild = {"temperature": 1.8, "max_tokens": 24}
    free = {text(server, STORY, seed=s, **wild) for s in (1, 2, 3)}
    assert free != {greedy}  # without the filter, a hot temperature wanders off
    for seed in (1, 2, 3):
        assert text(server, STORY, seed=seed, **wild, extra_body=narrowing) == greedy


def test_penalties_reduce_repetition(server: Server) -> None:
    c: openai.OpenAI = openai_client(server.url + "/v1", server.key)

    def most_repeated(**params: Any) -> int:
        """How often the commonest token of a greedy continuation occurs in it."""
        r = c.completions.create(
            model=BUNDLED, prompt="cat " * 12, max_tokens=24, temperature=0, logprobs=1, **params
        )
        tokens = r.choices[0].logprobs.tokens  # type: ignore[union-attr]
        return max(Counter(tokens).values())

    assert most_repeated() >= 8  # greedy falls into a loop ("1.1111111…")
    assert most_repeated(frequency_penalty=2.0) <= 3
    assert most_repeated(presence_penalty=2.0) <= 3


def test_logit_bias_forces_and_bans_tokens(server: Server) -> None:
    r = ask(server, STORY, max_tokens=6, temperature=0, logprobs=True)
    first = r.choices[0].logprobs.content[0].token
    forced = ask(server, STORY, max_tokens=6, temperature=0, logprobs=True, logit_bias={"28": 100})
    tokens = [e.token for e in forced.choices[0].logprobs.content]
    assert len(tokens) == 6 and len(set(tokens)) == 1  # token 28, every time
    assert tokens[0] != first
    # banning the end-of-turn token (id 2) makes a short answer run to max_tokens
    short = ask(server, [{"role": "user", "content": "Hi"}], max_tokens=64, temperature=0)
    assert short.choices[0].finish_reason == "stop"
    banned = ask(
        server,
        [{"role": "user", "content": "Hi"}],
        max_tokens=64,
        temperature=0,
        logit_bias={"2": -100},
    )
    assert banned.choices[0].finish_reason == "length"
    assert banned.usage.completion_tokens == 64
