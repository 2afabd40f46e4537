"""The semantic cache end to end: the suite's upstream in echo mode (the answer repeats the
question, so a reused answer shows which question it belonged to) behind a real server with
the bundled embedder. A rephrased question gets the earlier answer (X-Cache: hit with its
similarity); a question that means something else, another tenant, another system prompt or
another temperature never does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Chaos, Server, run_chaos, run_server, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("sem-chaos")) as chaos:
        chaos.control(echo=True)
        yield chaos


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: Chaos, models_dir: Path
) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("semantic")
    models = [
        {"name": "m1", "backend": "openai", "base_url": upstream.url, "upstream_model": "x"},
        {"name": "e5", "kind": "embedding"},
    ]
    cache = {"enabled": True, "semantic": True}
    cfg = write_config(tmp, models, log_level="warning", cache=cache, models_dir=str(models_dir))
    with run_server(cfg) as s:
        yield s


def ask(server: Server, question: str, key: str | None = None, **extra: Any) -> httpx.Response:
    messages = [*extra.pop("before", []), {"role": "user", "content": question}]
    body = {"model": "m1", "temperature": 0, "messages": messages, **extra}
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key or server.key}"},
        timeout=120,
    )


def answer(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_a_rephrased_question_gets_the_earlier_answer(server: Server) -> None:
    first = ask(server, "How do I reset my password?")
    assert first.headers["x-cache"] == "miss"
    again = ask(server, "how do i reset my password")
    assert again.headers["x-cache"] == "hit"
    assert float(again.headers["x-cache-similarity"]) >= 0.97
    assert answer(again) == answer(first)
    assert (
        again.json()["usage"]["prompt_cache_hit_tokens"] == again.json()["usage"]["prompt_tokens"]
    )


def test_a_different_question_is_not_served_the_earlier_answer(server: Server) -> None:
    ask(server, "What is the capital of France?")
    other = ask(server, "What is the capital of Germany?")
    assert other.headers["x-cache"] == "miss"
    assert "Germany" in answer(other)
    zh = ask(server, "北京今天的天气怎么样？")
    assert zh.headers["x-cache"] == "miss"
    assert ask(server, "北京今天天气怎么样").headers["x-cache"] == "hit"


def test_the_context_must_be_the_same(server: Server) -> None:
    base = "Which port does the gateway listen on?"
    ask(server, base)
    system = [{"role": "system", "content": "Answer in French."}]
    assert ask(server, base + " ", before=system).headers["x-cache"] == "miss"
    assert ask(server, base + " ", temperature=0, seed=7).headers["x-cache"] == "miss"
    root = {"Authorization": f"Bearer {server.key}"}
    t = httpx.post(server.url + "/admin/tenants", json={"name": "other"}, headers=root).json()
    key = httpx.post(
        server.url + "/admin/keys", json={"name": "o", "tenant_id": t["id"]}, headers=root
    ).json()["secret"]
    assert ask(server, base + " ", key=key).headers["x-cache"] == "miss"
    assert ask(server, base + " ").headers["x-cache"] == "hit"  # the same tenant: hit


def test_numbers_and_codes_must_match(server: Server) -> None:
    ask(server, "What does error ERR-4021 mean?")
    assert ask(server, "what does error ERR-4021 mean").headers["x-cache"] == "hit"
    assert ask(server, "What does error ERR-4022 mean?").headers["x-cache"] == "miss"


def test_a_key_can_turn_the_semantic_cache_off_for_itself(server: Server) -> None:
    root = {"Authorization": f"Bearer {server.key}"}
    made = httpx.post(
        server.url + "/admin/keys",
        json={"name": "exact-only", "semantic_cache": False},
        headers=root,
    )
    assert made.status_code == 201, made.text
    key = made.json()["secret"]
    ask(server, "How do I rotate an API key?", key=key)
    assert ask(server, "how do i rotate an api key", key=key).headers["x-cache"] == "miss"
    assert ask(server, "How do I rotate an API key?", key=key).headers["x-cache"] == "hit"
