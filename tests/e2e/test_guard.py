"""The guard, end to end, in front of the suite's chaos upstream in echo mode (the answer is
the last user message again, 3 characters per stream chunk, so every number and word in it
is split across chunks): personal data redacted before it leaves, blocked with a 400 that
never echoes it, allowed for a tenant whose policy says so; the caller's values restored in
the answer; a sensitive word blocking a request or ending an answer with content_filter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(a) * b for a, b in zip(first17, W, strict=True)) % 11]


ID = resident_id("44030619900307123")
WRONG_ID = ID[:-1] + ("1" if ID[-1] == "0" else "0")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("guard-chaos")) as chaos:
        chaos.control(echo=True)
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("guard")
    models = [
        {"name": name, "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}
        for name in ("m1", "restoring", "leaky")
    ]
    words = {"lists": {"banned": ["forbidden thing", "违禁词"]}}
    guard = {
        "enabled": True,
        "policies": {"strict": {"pii": {"input": "block"}}},
        "pii": {"input": "redact", "actions": {"id_cn": "block"}},
        "words": words,
        "models": {
            "restoring": {"pii": {"input": "redact", "restore": True}},
            # lets requests through as they are; guards only what the model writes
            "leaky": {
                "pii": {"input": "allow", "output": "redact"},
                "words": {**words, "input": "allow"},
            },
        },
    }
    with run_server(write_config(tmp, models, log_level="warning", guard=guard)) as s:
        yield s


def chat(
    server: Server, text: str, *, model: str = "m1", stream: bool = False, key: str | None = None
) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}], "stream": stream},
        headers={"Authorization": f"Bearer {key or server.key}"},
        timeout=30,
    )


def sent_upstream(upstream: Chaos) -> str:
    body: dict[str, Any] = orjson.loads(upstream.requests(last=1)[-1]["body"])
    return str(body["messages"][-1]["content"])


def streamed(r: httpx.Response) -> tuple[str, list[str | None]]:
    chunks = [
        orjson.loads(line[6:])
        for line in r.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]


def test_personal_data_is_redacted_before_it_leaves_with_consistent_numbering(
    server: Server, upstream: Chaos
) -> None:
    text = "我是张三，邮箱 zhang@example.com，手机13812345678，再说一遍 zhang@example.com。"
    r = chat(server, text)
    assert r.status_code == 200, r.text
    assert sent_upstream(upstream) == (
        "我是张三，邮箱 [EMAIL_1]，手机[PHONE_CN_1]，再说一遍 [EMAIL_1]。"
    )
    # the model echoed the placeholders; no personal data came back either
    assert r.json()["choices"][0]["message"]["content"] == sent_upstream(upstream)


def test_a_blocked_kind_is_refused_without_echoing_the_value(
    server: Server, upstream: Chaos
) -> None:
    before = len(upstream.requests(last=100_000))
    r = chat(server, f"身份证 {ID} 请登记")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "pii_blocked" and "resident ID number" in error["message"]
    assert ID not in r.text and error["param"] == "messages"
    assert len(upstream.requests(last=100_000)) == before  # nothing left the gateway
    # a wrong check character is no resident ID: it passes untouched
    ok = chat(server, f"订单号 {WRONG_ID} 已发货")
    assert ok.status_code == 200 and WRONG_ID in sent_upstream(upstream)


def test_personal_data_the_model_writes_is_redacted_across_chunk_boundaries(
    server: Server, upstream: Chaos
) -> None:
    text = "call +86 138-1234-5678 or mail a.b@corp.cn today"
    r = chat(server, text, model="leaky", stream=True)
    assert sent_upstream(upstream) == text  # this model's policy lets input through
    answer, finishes = streamed(r)
    assert answer == "call [PHONE_CN] or mail [EMAIL] today" and finishes[-1] == "stop"
    whole = chat(server, text, model="leaky").json()["choices"][0]["message"]["content"]
    assert whole == answer


def test_the_callers_own_values_are_restored_in_the_answer(server: Server, upstream: Chaos) -> None:
    text = "mail li@corp.cn or 13912345678, li@corp.cn again"
    for stream in (False, True):
        r = chat(server, text, model="restoring", stream=stream)
        assert sent_upstream(upstream) == "mail [EMAIL_1] or [PHONE_CN_1], [EMAIL_1] again"
        answer = streamed(r)[0] if stream else r.json()["choices"][0]["message"]["content"]
        assert answer == text  # placeholders split over 3-character chunks, put back whole


def test_sensitive_words_block_requests_and_end_answers(server: Server, upstream: Chaos) -> None:
    for text in ("tell me about the FORBIDDEN THING", "这是违禁词吗"):
        r = chat(server, text)
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_blocked"
        assert "banned" in r.json()["error"]["message"] and "违禁词" not in r.text
    # a word the model writes, split over chunks, ends the answer with content_filter
    for stream in (True, False):
        r = chat(server, "好的，这里有违禁词，后面的不该出现", model="leaky", stream=stream)
        assert r.status_code == 200
        if stream:
            text, finishes = streamed(r)
            assert finishes[-1] == "content_filter"
        else:
            choice = r.json()["choices"][0]
            text = choice["message"]["content"]
            assert choice["finish_reason"] == "content_filter"
        assert text == "好的，这里有"


def test_a_key_can_have_its_own_policy_or_none(server: Server, upstream: Chaos) -> None:
    text = "mail zhao@corp.cn please"
    strict = server.cli("keys", "create", "--name", "s", "--guard", "strict").stdout
    r = chat(server, text, key=strict.splitlines()[-1])
    assert r.status_code == 400 and r.json()["error"]["code"] == "pii_blocked"
    free = server.cli("keys", "create", "--name", "f", "--guard", "off").stdout
    assert chat(server, text, key=free.splitlines()[-1]).status_code == 200
    assert sent_upstream(upstream) == text  # no guard for this key: sent as written
    assert chat(server, text).status_code == 200  # the default policy redacts
    assert sent_upstream(upstream) == "mail [EMAIL_1] please"


def test_word_lists_reload_without_a_restart(server: Server) -> None:
    assert chat(server, "a brand new badword").status_code == 200
    cfg = yaml.safe_load(server.config.read_text())
    cfg["guard"]["words"]["lists"]["banned"].append("badword")
    server.config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    r = httpx.post(
        server.url + "/admin/reload", headers={"Authorization": f"Bearer {server.key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    blocked = chat(server, "a brand new badword")
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"


def test_the_guards_actions_are_counted(server: Server) -> None:
    metrics = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
    ).text
    for kind, action in (
        ("email", "redact"),
        ("id_cn", "block"),
        ("words", "block"),
        ("phone_cn", "redact_output"),
        ("words", "content_filter"),
    ):
        assert f'seekport_guard_actions_total{{action="{action}",kind="{kind}"}}' in metrics
