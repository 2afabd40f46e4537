"""Keys with terms, end to end: `seekport keys create` with --models, --rpm, --max-tokens,
--ip-allow and --expires, then the official openai package against a server in front of the
suite's chaos upstream (16-token answers, or max_tokens of them)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import Chaos, Server, run_chaos, run_cli, run_server, write_config

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    with run_chaos(tmp_path_factory.mktemp("key-policy-chaos")) as chaos:
        yield chaos


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Chaos) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("key-policy")
    models = [
        {"name": name, "backend": "openai", "base_url": upstream.url, "upstream_model": "x"}
        for name in ("m1", "m2")
    ]
    config = write_config(tmp, models, log_level="warning", model_limits={"m2": {"rpm": 2}})
    with run_server(config) as s:
        yield s


def key(server: Server, *flags: str) -> str:
    out = server.cli("keys", "create", "--name", "k", *flags)
    return out.stdout.strip().splitlines()[-1]


def client(secret: str, server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0)


def test_a_key_calls_and_lists_only_its_models(server: Server) -> None:
    c = client(key(server, "--models", "m1"), server)
    assert c.chat.completions.create(model="m1", messages=MESSAGES).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as info:
        c.chat.completions.create(model="m2", messages=MESSAGES)
    assert info.value.body["code"] == "permission_denied"  # type: ignore[index]
    assert info.value.body["param"] == "model"  # type: ignore[index]
    assert [m.id for m in c.models.list()] == ["m1"]
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("m2")


def test_requests_per_minute_are_enforced_with_rate_limit_headers(server: Server) -> None:
    secret = key(server, "--rpm", "2")
    sent = {"model": "m1", "messages": MESSAGES}
    auth = {"Authorization": f"Bearer {secret}"}
    answers = [
        httpx.post(server.url + "/v1/chat/completions", json=sent, headers=auth) for _ in range(3)
    ]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "2" for r in answers)
    refused = answers[-1]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) == 30  # one request per 60 s / 2
    # another key is not held back by this one's limit
    other = key(server, "--rpm", "2")
    ok = httpx.post(
        server.url + "/v1/chat/completions",
        json=sent,
        headers={"Authorization": f"Bearer {other}"},
    )
    assert ok.status_code == 200


def test_the_output_cap_reaches_the_upstream(server: Server) -> None:
    c = client(key(server, "--max-tokens", "5"), server)
    capped = c.chat.completions.create(model="m1", messages=MESSAGES, max_tokens=100)
    assert capped.usage is not None and capped.usage.completion_tokens == 5
    assert capped.choices[0].finish_reason == "length"
    lower = c.chat.completions.create(model="m1", messages=MESSAGES, max_tokens=3)
    assert lower.usage is not None and lower.usage.completion_tokens == 3  # a lower ask stands
    unasked = c.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    chunks = [ch for ch in unasked if ch.choices and ch.choices[0].delta.content]
    assert len(chunks) == 5


def test_a_key_works_only_from_its_address_ranges(server: Server) -> None:
    far = client(key(server, "--ip-allow", "10.0.0.0/8"), server)
    with pytest.raises(openai.PermissionDeniedError) as info:
        far.chat.completions.create(model="m1", messages=MESSAGES)
    assert "127.0.0.1" in str(info.value)
    near = client(key(server, "--ip-allow", "10.0.0.0/8,127.0.0.0/8"), server)
    assert near.chat.completions.create(model="m1", messages=MESSAGES).choices


def test_an_expired_key_is_refused(server: Server) -> None:
    # a few seconds ahead: the key is made by a CLI process, whose start takes a while
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    c = client(key(server, "--expires", soon.isoformat()), server)
    assert c.chat.completions.create(model="m1", messages=MESSAGES).choices
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    with pytest.raises(openai.AuthenticationError) as info:
        c.chat.completions.create(model="m1", messages=MESSAGES)
    assert "expired" in str(info.value)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--ip-allow", "10.0.0.0/33"), "--ip-allow"),
        (("--rpm", "0"), "--rpm"),
        (("--expires", "tomorrow"), "--expires"),
        (("--expires", "2020-01-01T00:00:00Z"), "in the past"),
    ],
)
def test_bad_terms_are_refused_by_the_cli(
    server: Server, flags: tuple[str, str], says: str
) -> None:
    out = run_cli(server.config, "keys", "create", "--name", "k", *flags, check=False)
    assert out.returncode != 0 and says in out.stderr


def test_calls_at_once_are_capped_and_a_finished_one_frees_its_slot(
    server: Server, upstream: Chaos
) -> None:
    secret = key(server, "--max-concurrent", "2")
    auth = {"Authorization": f"Bearer {secret}"}
    sent = {"model": "m1", "messages": MESSAGES}
    upstream.control(latency_ms=800)  # each answer takes a while: three overlap
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        server.url + "/v1/chat/completions", json=sent, headers=auth, timeout=30
                    ),
                    range(3),
                )
            )
    finally:
        upstream.control(reset=True)
    assert sorted(r.status_code for r in answers) == [200, 200, 429]
    refused = next(r for r in answers if r.status_code == 429)
    assert "at a time" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    # a stream holds its slot until it ends, then gives it back
    c = client(secret, server)
    for _ in range(3):
        with c.chat.completions.stream(model="m1", messages=MESSAGES) as s:
            assert s.get_final_completion().choices[0].message.content
    assert c.chat.completions.create(model="m1", messages=MESSAGES).choices


def test_tokens_per_minute_reserve_an_estimate_and_settle_with_real_usage(
    server: Server,
) -> None:
    """Each call reserves ~115 tokens (its size / 4 + max_tokens 100) and really uses ~17
    (1 prompt word + 16 answer tokens): with 200 tokens per minute, one call would fit if
    reservations stood, while settling them with real usage admits about five."""
    secret = key(server, "--tpm", "200")
    sent = {"model": "m1", "messages": MESSAGES, "max_tokens": 100}
    auth = {"Authorization": f"Bearer {secret}"}
    answers: list[httpx.Response] = []
    for _ in range(12):
        answers.append(httpx.post(server.url + "/v1/chat/completions", json=sent, headers=auth))
        if answers[-1].status_code != 200:
            break
    admitted = [r for r in answers if r.status_code == 200]
    assert 4 <= len(admitted) <= 7, [r.status_code for r in answers]
    used = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    assert used <= 200  # never more than the minute's tokens spent
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-tokens"] == "200"
    assert all(r.headers["x-ratelimit-limit-tokens"] == "200" for r in admitted)
    remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in admitted]
    assert remaining == sorted(remaining, reverse=True)  # settled usage piles up
    # a refused call reserved nothing: after the real usage drains, calls are admitted again
    # (no wait here: the same key's settled total stays under the limit for a small call)
    small = httpx.post(
        server.url + "/v1/chat/completions",
        json={**sent, "max_tokens": 1},
        headers=auth,
    )
    assert small.status_code == 200, small.text


def test_a_models_limit_holds_over_every_caller(server: Server) -> None:
    first, second = key(server), key(server)
    sent = {"model": "m2", "messages": MESSAGES}
    codes = [
        httpx.post(
            server.url + "/v1/chat/completions",
            json=sent,
            headers={"Authorization": f"Bearer {secret}"},
        )
        for secret in (first, second, first)
    ]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert "the model 'm2'" in codes[-1].json()["error"]["message"]
    other = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "m1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {second}"},
    )
    assert other.status_code == 200  # another model is not held back
