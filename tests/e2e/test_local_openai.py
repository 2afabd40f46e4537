"""The real server with the real bundled model, driven by the official openai package."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow


def client(server: Server, *, v1: bool = True) -> openai.OpenAI:
    return openai_client(server.url + ("/v1" if v1 else ""), server.key)  # type: ignore[no-any-return]


def test_models_lists_the_bundled_model(server: Server) -> None:
    ids = [m.id for m in client(server).models.list()]
    assert BUNDLED in ids
    assert "deepseek-chat" in ids


@pytest.mark.parametrize("prefix", ["/v1", ""], ids=["v1", "deepseek-base-url"])
def test_retrieve_model_by_id(server: Server, prefix: str) -> None:
    """GET /v1/models/{id}: the model object of a served id (local or remote), an OpenAI-style
    404 for an unknown one."""
    headers = {"Authorization": f"Bearer {server.key}"}
    listed = httpx.get(server.url + "/v1/models", headers=headers).json()["data"]
    for model in (BUNDLED, "deepseek-chat"):
        r = httpx.get(f"{server.url}{prefix}/models/{model}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == next(m for m in listed if m["id"] == model)
        assert set(r.json()) == {"id", "object", "created", "owned_by"}
        assert r.json()["object"] == "model"
    r = httpx.get(f"{server.url}{prefix}/models/no-such-model", headers=headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "no-such-model" in err["message"]
    assert httpx.get(f"{server.url}{prefix}/models/{BUNDLED}").status_code == 401  # needs a key
    sdk = client(server, v1=bool(prefix))
    assert sdk.models.retrieve(BUNDLED).id == BUNDLED
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


def test_chat_non_stream_with_chinese_prompt_has_consistent_usage(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": "你好"}], max_tokens=12, temperature=0
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    u = r.usage
    assert u is not None
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 12
    extra = u.model_extra or {}
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == u.prompt_tokens


def test_chinese_output_cut_by_max_tokens_has_no_replacement_characters(server: Server) -> None:
    # Chinese characters span several byte tokens: one cut by max_tokens is dropped, not
    # sent as U+FFFD (seeds 0-11 end mid-character several times on the bundled model). A
    # U+FFFD inside the text is the model's own invalid byte sequence (sampled at T=0.7, as
    # llama-server replaces it too), not a cut: only the ends are ours to keep clean.
    c = client(server)
    texts = []
    for seed in range(12):
        r = c.chat.completions.create(
            model=BUNDLED,
            messages=[{"role": "user", "content": "你好，请介绍一下你自己。"}],
            max_tokens=40,
            seed=seed,
        )
        texts.append(r.choices[0].message.content or "")
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts) >= 6
    assert not [t for t in texts if t.endswith("\ufffd")]


def test_deepseek_base_url_without_v1_works(server: Server) -> None:
    """The same greedy request gives the same answer with and without ``/v1``."""
    answers = []
    for v1 in (False, True):
        r = client(server, v1=v1).chat.completions.create(
            model=BUNDLED,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=3,
            temperature=0,
        )
        assert r.usage is not None and 1 <= r.usage.completion_tokens <= 3
        assert r.choices[0].finish_reason == (
            "length" if r.usage.completion_tokens == 3 else "stop"
        )
        answers.append(r.choices[0].message.content or "")
    assert answers[0].strip() and answers[0] == answers[1]


def test_stream_has_role_first_single_finish_and_done(server: Server) -> None:
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {server.key}"},
        json={
            "model": BUNDLED,
            "messages": [{"role": "user", "content": "你好，请写一个很长的故事。"}],
            "stream": True,
            "max_tokens": 8,
            "stream_options": {"include_usage": True},
        },
        timeout=60,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    finished = [f for f in finishes if f]
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
    # The answer is sampled: it usually runs into the cap, but may end by itself first.
    completion = usage_chunks[0]["usage"]["completion_tokens"]
    assert finished == (["length"] if completion == 8 else ["stop"])
    assert 0 < completion <= 8


def test_openai_stream_iterates_to_the_end(server: Server) -> None:
    """A greedy stream, read by the SDK to its end, carries exactly the non-stream answer and
    the same usage."""
    request = {
        "model": BUNDLED,
        "messages": [{"role": "user", "content": "Count to five"}],
        "max_tokens": 10,
        "temperature": 0,
    }
    plain = client(server).chat.completions.create(**request)  # type: ignore[call-overload]
    chunks = list(
        client(server).chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and text == plain.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].usage is not None and plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens <= 10


def test_stop_sequence_is_honoured_and_excluded(server: Server) -> None:
    base = client(server).chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "Count from 1 to 10"}],
        max_tokens=40,
        temperature=0,
    )
    full = base.choices[0].message.content or ""
    assert "4" in full
    r = client(server).chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "Count from 1 to 10"}],
        max_tokens=40,
        temperature=0,
        stop=["4"],
    )
    content = r.choices[0].message.content or ""
    assert r.choices[0].finish_reason == "stop"
    assert "4" not in content
    assert full.startswith(content)


def test_greedy_output_is_deterministic_and_seed_reproduces(server: Server) -> None:
    c = client(server)
    msgs = [{"role": "user", "content": "Tell me a story"}]
    a = c.chat.completions.create(model=BUNDLED, messages=msgs, max_tokens=12, temperature=0)
    b = c.chat.completions.create(model=BUNDLED, messages=msgs, max_tokens=12, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    s1 = c.chat.completions.create(model=BUNDLED, messages=msgs, max_tokens=12, seed=7)
    s2 = c.chat.completions.create(model=BUNDLED, messages=msgs, max_tokens=12, seed=7)
    assert s1.choices[0].message.content == s2.choices[0].message.content


def test_json_mode_returns_parseable_json(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED,
        messages=[
            {"role": "user", "content": 'Return json: {"name": string, "age": number} for a cat'}
        ],
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0,
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_logprobs_shape(server: Server) -> None:
    r = client(server).chat.completions.create(
        model=BUNDLED,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        logprobs=True,
        top_logprobs=3,
        temperature=0,
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content
    assert len(lp.content) <= 4
    for entry in lp.content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.logprob == pytest.approx(max(t.logprob for t in entry.top_logprobs))


def test_completions_endpoint_and_fim_refusal(server: Server) -> None:
    c = client(server)
    r = c.completions.create(
        model=BUNDLED, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert r.object == "text_completion" and r.choices[0].text.strip()
    assert r.usage is not None and 1 <= r.usage.completion_tokens <= 5
    assert r.choices[0].finish_reason == ("length" if r.usage.completion_tokens == 5 else "stop")
    again = c.completions.create(
        model=BUNDLED, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert again.choices[0].text == r.choices[0].text  # greedy: the same text
    with pytest.raises(openai.BadRequestError) as exc:
        c.completions.create(model=BUNDLED, prompt="def f(", suffix="return x", max_tokens=5)
    assert exc.value.body["param"] == "suffix"  # type: ignore[index]
    beta = httpx.post(
        server.url + "/beta/completions",
        headers={"Authorization": f"Bearer {server.key}"},
        json={"model": BUNDLED, "prompt": "1, 2, 3,", "max_tokens": 3},
        timeout=60,
    )
    assert beta.status_code == 200, beta.text
    assert beta.json()["choices"][0]["text"].strip()
    assert 1 <= beta.json()["usage"]["completion_tokens"] <= 3


def test_async_client_concurrent_requests_all_finish(server: Server) -> None:
    async def run() -> list[str]:
        ac = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)

        async def one(i: int) -> str:
            stream = await ac.chat.completions.create(
                model=BUNDLED,
                messages=[{"role": "user", "content": f"Say {i}"}],
                max_tokens=6,
                stream=True,
            )
            reasons = [c.choices[0].finish_reason async for c in stream if c.choices]
            return [r for r in reasons if r][-1]

        try:
            return await asyncio.gather(*(one(i) for i in range(6)))
        finally:
            await ac.close()

    assert all(r in ("stop", "length") for r in asyncio.run(run()))


def test_context_overflow_is_a_400_naming_both_numbers(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client(server).chat.completions.create(
            model=BUNDLED, messages=[{"role": "user", "content": "hi"}], max_tokens=4000
        )
    msg = exc.value.body["message"]  # type: ignore[index]
    assert "2048" in msg and "4000" in msg
    long_prompt = "你好 " * 3000
    with pytest.raises(openai.BadRequestError) as exc2:
        client(server).chat.completions.create(
            model=BUNDLED, messages=[{"role": "user", "content": long_prompt}], max_tokens=4
        )
    assert exc2.value.body["code"] == "context_length_exceeded"  # type: ignore[index]


def _usage(server: Server, client_request_id: str) -> list[dict[str, object]]:
    import sqlite3

    con = sqlite3.connect(server.data_dir / "seekport.db")
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute(
            "SELECT * FROM usage_records WHERE client_request_id = ?", (client_request_id,)
        )
        return [dict(r) for r in rows]
    finally:
        con.close()


def _wait_usage(server: Server, rid: str) -> dict[str, object]:
    import time

    for _ in range(100):
        rows = _usage(server, rid)
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {rid}")


def test_stream_disconnect_stops_generation_and_frees_the_engine(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.key}", "X-Request-ID": "drop-stream-1"}
    body = {
        "model": BUNDLED,
        "messages": [{"role": "user", "content": "Write a long essay"}],
        "stream": True,
        "max_tokens": 1500,
        "temperature": 1,
        "logit_bias": {"2": -100},  # no early EOS: the stream is still going when cut
    }
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", headers=headers, json=body, timeout=60
    ) as r:
        for n, _line in enumerate(r.iter_lines()):
            if n >= 6:
                break
    row = _wait_usage(server, "drop-stream-1")
    assert row["status"] == 499
    # the next request is served at once: the aborted sequence no longer holds the engine
    quick = client(server).chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": "hi"}], max_tokens=2, timeout=20
    )
    assert quick.choices[0].finish_reason in ("stop", "length")
    again = _usage(server, "drop-stream-1")[0]
    assert int(str(again["completion_tokens"])) < 1500


def test_non_stream_disconnect_is_recorded_and_stops(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.key}", "X-Request-ID": "drop-plain-1"}
    body = {
        "model": BUNDLED,
        "messages": [{"role": "user", "content": "Write a long essay"}],
        "max_tokens": 1500,
        "temperature": 1,
        "logit_bias": {"2": -100},  # no early EOS: the answer cannot be done in 0.5 s
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", headers=headers, json=body, timeout=0.5)
    assert _wait_usage(server, "drop-plain-1")["status"] == 499
    quick = client(server).chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": "hi"}], max_tokens=2, timeout=20
    )
    assert quick.choices[0].finish_reason in ("stop", "length")
    assert quick.usage is not None and 1 <= quick.usage.completion_tokens <= 2
    assert int(str(_usage(server, "drop-plain-1")[0]["completion_tokens"])) < 1500


def test_overload_is_503_with_retry_after_and_nothing_cut_off(server: Server) -> None:
    # The session server lets 8 requests wait behind the running one; send 14 at once.
    async def run() -> list[tuple[int, str | None, bool]]:
        async with httpx.AsyncClient(timeout=120) as ac:

            async def one(i: int) -> tuple[int, str | None, bool]:
                r = await ac.post(
                    server.url + "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {server.key}"},
                    json={
                        "model": BUNDLED,
                        "max_tokens": 32,
                        "logit_bias": {"2": -100},  # no early EOS: every stream is long
                        "stream": True,
                        "messages": [{"role": "user", "content": f"n{i}"}],
                    },
                )
                return r.status_code, r.headers.get("retry-after"), "data: [DONE]" in r.text

            return await asyncio.gather(*(one(i) for i in range(14)))

    results = asyncio.run(run())
    rejected = [r for r in results if r[0] == 503]
    served = [r for r in results if r[0] == 200]
    assert rejected and served
    assert all(r[1] is not None and int(r[1]) >= 1 for r in rejected)
    assert all(r[2] for r in served)  # every admitted stream finished with [DONE]
