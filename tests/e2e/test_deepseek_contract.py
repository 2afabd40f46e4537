"""Today's DeepSeek chat contract and model aliases, end to end: a real seekport server with the
bundled model and today's DeepSeek ids (`deepseek-flash`, `deepseek-v4-pro`) in front of the
suite's chaos upstream, the retired `deepseek-chat` / `deepseek-reasoner` configured as aliases
(shared/docs/deepseek_api_2026.md §1.1, §2). What the upstream received is read back from its
``/__requests`` record; the usage rows from the server's SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_remote_upstream import (
    ANSWER,
    MESSAGES,
    assert_error_body,
    chunks_of,
    content_of,
    forwarded,
    rid,
    usage_row,
)
from tests.harness import BUNDLED, Chaos, Server, run_server, write_config

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory, chaos: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("deepseek")
    remote = {"backend": "openai", "base_url": chaos.url, "read_timeout_s": 3}
    models = [
        {
            "name": BUNDLED,
            "backend": "local",
            "path": "bundled",
            "n_threads": 1,
            "context_length": 1024,
            "max_num_seqs": 2,
        },
        {"name": "deepseek-flash", "owned_by": "deepseek", **remote},
        {"name": "deepseek-v4-pro", "owned_by": "deepseek", **remote},
    ]
    aliases = [
        {"name": "deepseek-chat", "model": "deepseek-flash", "thinking": "disabled"},
        {"name": "deepseek-reasoner", "model": "deepseek-flash", "thinking": "enabled"},
        {"name": "smol-greedy", "model": BUNDLED, "params": {"temperature": 0}},
    ]
    config = write_config(tmp, models, aliases=aliases)
    with run_server(config) as s:
        yield s


def post(server: Server, payload: dict[str, Any], request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.key}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return httpx.post(
        server.url + "/v1/chat/completions", json=payload, headers=headers, timeout=60
    )


def sdk(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=60)


# ---------------------------------------------------------------- 1. the contract, remote


def test_thinking_effort_user_id_parts_and_reasoning_reach_the_upstream_as_sent(
    ds: Server, fresh_chaos: Chaos
) -> None:
    """The OpenAI SDK's way of sending DeepSeek's fields (extra_body for thinking and user_id,
    native reasoning_effort) is accepted and the upstream gets the client's body unchanged:
    effort aliases are DeepSeek's to map, image parts and earlier reasoning go along."""
    my_id = rid()
    messages: list[Any] = [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "hi", "reasoning_content": "greet back"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    with sdk(ds) as c:
        r = c.chat.completions.create(
            model="deepseek-v4-pro",
            messages=messages,
            reasoning_effort="medium",
            extra_headers={"X-Request-ID": my_id},
            extra_body={"thinking": {"type": "enabled"}, "user_id": "team-7_user-42"},
        )
    assert r.choices[0].message.content == ANSWER
    assert r.model == "deepseek-v4-pro"
    sent = json.loads(forwarded(fresh_chaos, ds, my_id)["body"])
    assert sent["model"] == "deepseek-v4-pro"
    assert sent["thinking"] == {"type": "enabled"}
    assert sent["reasoning_effort"] == "medium"
    assert sent["user_id"] == "team-7_user-42"
    assert sent["messages"] == messages
    row = usage_row(ds, my_id)
    assert (row["model"], row["served_model"]) == ("deepseek-v4-pro", "deepseek-v4-pro")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"thinking": {"type": "on"}}, "thinking.type"),
        ({"thinking": "enabled"}, "thinking"),
        ({"reasoning_effort": "huge"}, "reasoning_effort"),
        ({"user_id": ""}, "user_id"),
        ({"messages": [{"role": "user", "content": [{"type": "file"}]}]}, "messages.0.content"),
    ],
)
def test_bad_deepseek_fields_are_400_in_openai_shape(
    ds: Server, fresh_chaos: Chaos, patch: dict[str, Any], param: str
) -> None:
    before = len(fresh_chaos.requests(last=1000))
    r = post(ds, {"model": "deepseek-flash", "messages": MESSAGES, **patch})
    err = assert_error_body(r, 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] is not None and err["param"].startswith(param)
    assert len(fresh_chaos.requests(last=1000)) == before  # refused before any upstream call


@pytest.mark.parametrize("tool_choice", ["required", NAMED])
@pytest.mark.parametrize("model", ["deepseek-flash", BUNDLED])
def test_forced_tool_choice_while_thinking_is_refused_on_every_backend(
    ds: Server, fresh_chaos: Chaos, model: str, tool_choice: Any
) -> None:
    r = post(
        ds,
        {
            "model": model,
            "messages": MESSAGES,
            "tools": TOOLS,
            "tool_choice": tool_choice,
            "thinking": {"type": "enabled"},
        },
    )
    err = assert_error_body(r, 400)
    assert err["message"].startswith("Thinking mode does not support this tool_choice")
    assert err["param"] == "tool_choice"


# ---------------------------------------------------------------- 2. the contract, local


def test_local_model_without_a_thinking_switch_accepts_and_ignores_it(ds: Server) -> None:
    """SmolLM2's chat template has no thinking switch: thinking, effort and user_id are
    accepted and change nothing (no reasoning appears); text parts and an earlier turn's
    reasoning_content are accepted too."""
    base = {
        "model": BUNDLED,
        "max_tokens": 8,
        "temperature": 0,
        "seed": 1,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
            {"role": "assistant", "content": "Hi!", "reasoning_content": "a greeting"},
            {"role": "user", "content": "Again."},
        ],
    }
    plain = post(ds, base)
    assert plain.status_code == 200, plain.text
    thinking = post(
        ds,
        {
            **base,
            "thinking": {"type": "enabled"},
            "reasoning_effort": "max",
            "user_id": "u-1",
        },
    )
    assert thinking.status_code == 200, thinking.text
    msg = thinking.json()["choices"][0]["message"]
    assert msg["content"] == plain.json()["choices"][0]["message"]["content"]
    assert not msg.get("reasoning_content")


def test_local_model_refuses_image_parts_with_400(ds: Server) -> None:
    r = post(
        ds,
        {
            "model": BUNDLED,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}],
                }
            ],
        },
    )
    err = assert_error_body(r, 400)
    assert "text only" in err["message"]


# ---------------------------------------------------------------- 3. aliases


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_alias_arrives_upstream_as_the_served_model_with_its_fixed_thinking(
    ds: Server, fresh_chaos: Chaos, streamed: bool
) -> None:
    """deepseek-reasoner → deepseek-flash with thinking enabled, over the client's own
    `thinking` (the alias wins); the answer names the served model; the usage row keeps the
    requested and the served name."""
    my_id = rid()
    payload = {
        "model": "deepseek-reasoner",
        "messages": MESSAGES,
        "thinking": {"type": "disabled"},
        "temperature": 0.2,
        "stream": streamed,
    }
    if streamed:
        with httpx.stream(
            "POST",
            ds.url + "/v1/chat/completions",
            json=payload,
            headers={"Authorization": f"Bearer {ds.key}", "X-Request-ID": my_id},
            timeout=30,
        ) as r:
            assert r.status_code == 200
            data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = chunks_of(data)
        assert content_of(chunks) == ANSWER
        assert {c["model"] for c in chunks} == {"deepseek-flash"}
    else:
        r = post(ds, payload, my_id)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "deepseek-flash"
        assert r.json()["choices"][0]["message"]["content"] == ANSWER
    assert r.headers["x-seekport-model"] == "deepseek-flash"
    sent = json.loads(forwarded(fresh_chaos, ds, my_id)["body"])
    assert sent["model"] == "deepseek-flash"
    assert sent["thinking"] == {"type": "enabled"}
    assert sent["temperature"] == 0.2  # the client's other fields stay
    row = usage_row(ds, my_id)
    assert (row["model"], row["served_model"], row["backend"]) == (
        "deepseek-reasoner",
        "deepseek-flash",
        "openai",
    )
    assert (row["status"], row["stream"]) == (200, int(streamed))
    assert row["completion_tokens"] == 16


def test_non_thinking_alias_allows_forced_tool_choice_and_thinking_alias_refuses_it(
    ds: Server, fresh_chaos: Chaos
) -> None:
    """deepseek-chat fixes thinking off, so a named tool_choice goes through (with thinking
    disabled upstream); deepseek-reasoner fixes it on, so the same request is DeepSeek's 400."""
    my_id = rid()
    payload = {"messages": MESSAGES, "tools": TOOLS, "tool_choice": NAMED}
    ok = post(ds, {"model": "deepseek-chat", **payload}, my_id)
    assert ok.status_code == 200, ok.text
    sent = json.loads(forwarded(fresh_chaos, ds, my_id)["body"])
    assert (sent["model"], sent["thinking"], sent["tool_choice"]) == (
        "deepseek-flash",
        {"type": "disabled"},
        NAMED,
    )
    refused_id = rid()
    refused = post(ds, {"model": "deepseek-reasoner", **payload}, refused_id)
    err = assert_error_body(refused, 400)
    assert err["message"].startswith("Thinking mode does not support this tool_choice")
    row = usage_row(ds, refused_id)
    assert (row["model"], row["served_model"], row["status"]) == (
        "deepseek-reasoner",
        "deepseek-flash",
        400,
    )


def test_alias_of_the_local_model_applies_its_fixed_params(ds: Server) -> None:
    """smol-greedy fixes temperature 0 on the bundled model: two calls asking for a hot
    temperature answer alike, under the served model's name."""
    payload = {
        "model": "smol-greedy",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 12,
        "temperature": 2,
    }
    a, b = post(ds, payload), post(ds, payload)
    assert a.status_code == b.status_code == 200, a.text
    assert a.json()["model"] == BUNDLED
    assert a.json()["choices"][0]["message"] == b.json()["choices"][0]["message"]


def test_models_lists_aliases_beside_the_served_models(ds: Server) -> None:
    with sdk(ds) as c:
        listed = {m.id: m.owned_by for m in c.models.list().data}
        card = c.models.retrieve("deepseek-reasoner")
    assert listed == {
        BUNDLED: "seekport",
        "deepseek-flash": "deepseek",
        "deepseek-v4-pro": "deepseek",
        "deepseek-chat": "deepseek",
        "deepseek-reasoner": "deepseek",
        "smol-greedy": "seekport",
    }
    assert (card.id, card.owned_by) == ("deepseek-reasoner", "deepseek")


def test_unknown_model_is_still_404_and_recorded_without_a_served_name(ds: Server) -> None:
    my_id = rid()
    r = post(ds, {"model": "deepseek-v3", "messages": MESSAGES}, my_id)
    assert_error_body(r, 404)
    row = usage_row(ds, my_id)
    assert (row["model"], row["served_model"]) == ("deepseek-v3", None)
