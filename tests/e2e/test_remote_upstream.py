"""The remote (OpenAI-compatible) backend, end to end: the real seekport server in front of the
real chaos upstream, driven by the official openai package and by raw httpx where the bytes and
headers matter. Nothing is mocked; faults come from the chaos upstream's ``script`` so each test
is deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.harness import (
    Chaos,
    Server,
    free_port,
    run_server,
    upstream_record,
    usage_row,
    write_config,
)

UPSTREAM_KEY = "sk-upstream-secret"
READ_TIMEOUT_S = 3.0  # read_timeout_s of the remote models in conftest
TOKENS = [f"tok{i}" for i in range(16)]  # the chaos answer with its default --tokens 16
ANSWER = " ".join(TOKENS)
MESSAGES = [{"role": "user", "content": "say something nice"}]  # 3 prompt "tokens" for chaos


# ---------------------------------------------------------------- helpers


def sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sdk(server: Server) -> openai.OpenAI:
    """A new client; callers close it with ``with``."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=30)


def rid() -> str:
    return "test-" + uuid.uuid4().hex


def auth(server: Server, request_id: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {server.key}"}
    if request_id:
        h["X-Request-ID"] = request_id
    return h


def body(model: str = "deepseek-chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, **extra}


def post(server: Server, payload: dict[str, Any], request_id: str | None = None) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=payload,
        headers=auth(server, request_id),
        timeout=READ_TIMEOUT_S + 10,
    )


def stream(
    server: Server, payload: dict[str, Any], request_id: str | None = None
) -> tuple[httpx.Response, list[str]]:
    """POST a stream; return the response and the payloads of its ``data:`` events in order."""
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json={**payload, "stream": True},
        headers=auth(server, request_id),
        timeout=READ_TIMEOUT_S + 10,
    ) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    return r, data


def forwarded(chaos: Chaos, server: Server, client_request_id: str) -> dict[str, Any]:
    """What the upstream saw for one client request (joined through the usage record)."""
    return upstream_record(chaos, usage_row(server, client_request_id)["request_id"])


def assert_error_body(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    return dict(err)


def chunks_of(events: list[str]) -> list[dict[str, Any]]:
    return [json.loads(e) for e in events if e != "[DONE]"]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# ---------------------------------------------------------------- 1. non-stream passthrough


def test_non_stream_keeps_upstream_body_and_records_usage(
    server: Server, fresh_chaos: Chaos
) -> None:
    """Non-stream: the upstream's body comes back as is (its id, fingerprint, usage), the
    client's X-Request-ID is echoed, and the usage record carries the upstream's tokens."""
    my_id = rid()
    with sdk(server) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="deepseek-chat",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"X-Request-ID": my_id},
        )
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == my_id
    r = raw.parse()
    assert r.system_fingerprint == "fp_primary"
    assert r.id.startswith("chatcmpl-primary-")
    assert r.model == "deepseek-chat"
    assert r.choices[0].message.content == ANSWER
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 16, 19)

    row = usage_row(server, my_id)
    assert row["status"] == 200 and row["error_code"] is None
    assert (row["backend"], row["model"], row["stream"]) == ("openai", "deepseek-chat", 0)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 16)
    assert row["route"] == "chat.completions"
    assert row["client_ip"] == "127.0.0.1"
    up = upstream_record(fresh_chaos, row["request_id"])
    assert (up["path"], up["model"], up["stream"], up["outcome"]) == (
        "/chat/completions",
        "deepseek-chat",
        False,
        "ok",
    )


def test_non_stream_max_tokens_reaches_upstream_and_finish_length_comes_back(
    server: Server, fresh_chaos: Chaos
) -> None:
    """The client's parameters are forwarded: max_tokens 4 cuts the upstream answer."""
    r = post(server, body(max_tokens=4))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["choices"][0]["message"]["content"] == " ".join(TOKENS[:4])
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4


# ---------------------------------------------------------------- 2. stream passthrough


def test_stream_with_include_usage_sends_usage_chunk_then_done(
    server: Server, fresh_chaos: Chaos
) -> None:
    """Stream: role first, one finish_reason, the usage-only chunk the client asked for, and
    ``data: [DONE]`` last; the upstream's chunks keep their id and fingerprint."""
    my_id = rid()
    r, events = stream(server, body(stream_options={"include_usage": True}), my_id)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-request-id"] == my_id
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = chunks_of(events)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-primary-")
    assert {c["system_fingerprint"] for c in chunks} == {"fp_primary"}
    assert {c["model"] for c in chunks} == {"deepseek-chat"}
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == ["stop"]
    assert content_of(chunks) == ANSWER
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1] and usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["completion_tokens"] == 16

    row = usage_row(server, my_id)
    assert (row["status"], row["stream"], row["completion_tokens"]) == (200, 1, 16)
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


@pytest.mark.parametrize(
    "options", [None, {"include_usage": False}], ids=["no-options", "include_usage-false"]
)
def test_stream_without_include_usage_hides_usage_chunk_but_records_tokens(
    server: Server, fresh_chaos: Chaos, options: dict[str, Any] | None
) -> None:
    """Without include_usage the client gets no ``choices: []`` usage chunk, though seekport
    asks the upstream for usage itself and meters it."""
    my_id = rid()
    extra = {} if options is None else {"stream_options": options}
    r, events = stream(server, body(**extra), my_id)
    assert r.status_code == 200
    assert r.headers["x-request-id"] == my_id
    assert events[-1] == "[DONE]"
    chunks = chunks_of(events)
    assert all(c["choices"] for c in chunks), "a usage-only chunk reached the client"
    assert not any(c.get("usage") for c in chunks)
    assert content_of(chunks) == ANSWER

    row = usage_row(server, my_id)
    assert (row["status"], row["stream"]) == (200, 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 16)
    up = upstream_record(fresh_chaos, row["request_id"])
    assert json.loads(up["body"])["stream_options"] == {"include_usage": True}


def test_openai_sdk_stream_without_usage_ends_cleanly(server: Server, fresh_chaos: Chaos) -> None:
    """The official client iterates the proxied stream to its end with the full answer."""
    with sdk(server) as c:
        chunks = list(
            c.chat.completions.create(
                model="deepseek-chat",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
            )
        )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == ANSWER
    assert all(ch.usage is None for ch in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["deepseek-chat", "renamed"])
def test_long_stream_arrives_complete_and_in_order(
    server: Server, fresh_chaos: Chaos, model: str
) -> None:
    """3000 events coalesced into large upstream writes are re-framed without loss or
    duplication (events split across reads)."""
    fresh_chaos.control(tokens=3000)
    r, events = stream(server, body(model, max_tokens=5000))
    assert r.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = chunks_of(events)
    assert content_of(chunks) == " ".join(f"tok{i}" for i in range(3000))
    assert {c["model"] for c in chunks} == {model}


def test_concurrent_streams_are_kept_apart(server: Server, fresh_chaos: Chaos) -> None:
    """16 streams at once, each with its own id and its own complete answer."""
    fresh_chaos.control(drip_ms=5, tokens=40)

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, str]:
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json=body(stream=True, max_tokens=20 + i),
            headers=auth(server),
        ) as r:
            assert r.status_code == 200
            data = [ln[6:] async for ln in r.aiter_lines() if ln.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = chunks_of(data)
        assert len({c["id"] for c in chunks}) == 1
        return chunks[0]["id"], content_of(chunks)

    async def main() -> list[tuple[str, str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            return await asyncio.gather(*(one(client, i) for i in range(16)))

    results = asyncio.run(main())
    assert len({cid for cid, _ in results}) == 16
    for i, (_, text) in enumerate(results):
        assert text == " ".join(f"tok{j}" for j in range(20 + i))
    assert fresh_chaos.stats()["max_in_flight"] > 1


# ---------------------------------------------------------------- 3. model renaming


def test_renamed_model_non_stream_client_sees_public_name(
    server: Server, fresh_chaos: Chaos
) -> None:
    """``renamed`` is served by upstream ``deepseek-chat``: the client only ever sees its name."""
    my_id = rid()
    r = post(server, body("renamed"), my_id)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "renamed"
    assert b"deepseek-chat" not in r.content
    up = forwarded(fresh_chaos, server, my_id)
    assert up["model"] == "deepseek-chat"
    assert up["path"] == "/v1/chat/completions"  # base_url ends in /v1
    assert json.loads(up["body"])["model"] == "deepseek-chat"
    assert usage_row(server, my_id)["model"] == "renamed"


def test_renamed_model_stream_chunks_carry_public_name(server: Server, fresh_chaos: Chaos) -> None:
    my_id = rid()
    r, events = stream(server, body("renamed", stream_options={"include_usage": True}), my_id)
    assert r.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = chunks_of(events)
    assert len(chunks) == 1 + 16 + 1 + 1  # role, tokens, finish, usage
    assert {c["model"] for c in chunks} == {"renamed"}
    assert forwarded(fresh_chaos, server, my_id)["model"] == "deepseek-chat"


# ---------------------------------------------------------------- 4. key hygiene


def test_upstream_gets_seekports_key_never_the_clients(server: Server, fresh_chaos: Chaos) -> None:
    """The upstream sees seekport's configured key; the client's key never leaves seekport."""
    my_id = rid()
    assert post(server, body(), my_id).status_code == 200
    my_stream = rid()
    assert stream(server, body(), my_stream)[0].status_code == 200
    my_renamed = rid()  # a model without an upstream key: no Authorization at all
    assert post(server, body("renamed"), my_renamed).status_code == 200

    client_hash = sha16(f"Bearer {server.key}")
    assert forwarded(fresh_chaos, server, my_id)["auth_sha256"] == sha16(f"Bearer {UPSTREAM_KEY}")
    assert forwarded(fresh_chaos, server, my_stream)["auth_sha256"] == sha16(
        f"Bearer {UPSTREAM_KEY}"
    )
    assert forwarded(fresh_chaos, server, my_renamed)["auth_sha256"] is None
    seen = fresh_chaos.requests(last=100)
    assert seen and all(rec.get("auth_sha256") != client_hash for rec in seen)
    assert not any(server.key in (rec.get("body") or "") for rec in seen)


def test_upstream_requiring_the_key_accepts_seekport_and_a_401_becomes_502(
    server: Server, fresh_chaos: Chaos
) -> None:
    """With the upstream enforcing seekport's key, the keyed model works; the model without a
    key gets the upstream's 401, which is seekport's problem (502), never the client's 401."""
    fresh_chaos.control(require_key=UPSTREAM_KEY)
    assert post(server, body()).status_code == 200
    my_id = rid()
    r = post(server, body("renamed"), my_id)
    err = assert_error_body(r, 502)
    assert err["code"] == "upstream_error"
    assert "www-authenticate" not in r.headers
    assert UPSTREAM_KEY not in r.text and server.key not in r.text
    assert usage_row(server, my_id)["status"] == 502
    assert fresh_chaos.stats()["by_outcome"] == {"ok": 1, "unauthorized": 1}


# ---------------------------------------------------------------- 5. unknown fields


def test_unknown_request_fields_are_forwarded_upstream(server: Server, fresh_chaos: Chaos) -> None:
    """Fields seekport does not model (DeepSeek's ``thinking``, vendor extras) reach the
    upstream unchanged."""
    my_id = rid()
    with sdk(server) as c:
        r = c.chat.completions.create(
            model="deepseek-chat",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"X-Request-ID": my_id},
            extra_body={
                "thinking": {"type": "enabled"},
                "vendor_extra": {"nested": [1, 2, 3], "flag": True},
            },
            temperature=0.3,
        )
    assert r.choices[0].message.content == ANSWER
    sent = json.loads(forwarded(fresh_chaos, server, my_id)["body"])
    assert sent["thinking"] == {"type": "enabled"}
    assert sent["vendor_extra"] == {"nested": [1, 2, 3], "flag": True}
    assert sent["temperature"] == 0.3
    assert sent["messages"] == MESSAGES


# ---------------------------------------------------------------- 6. error mapping


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [(500, 502, "upstream_error"), (502, 502, "upstream_error")],
)
def test_upstream_5xx_becomes_502(
    server: Server,
    fresh_chaos: Chaos,
    upstream: int,
    status: int,
    code: str,
    streamed: bool,
) -> None:
    """An upstream 500/502 is the gateway's bad gateway: 502 with the error body, recorded."""
    fresh_chaos.control(script=f"error:{upstream}")
    my_id = rid()
    r = stream(server, body(), my_id)[0] if streamed else post(server, body(), my_id)
    err = assert_error_body(r, status)
    assert err["code"] == code
    assert r.headers["x-request-id"] == my_id
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"], row["stream"]) == (status, code, int(streamed))
    assert fresh_chaos.stats()["by_status"] == {str(upstream): 1}  # tried once, not retried


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_upstream_429_is_passed_on_with_retry_after(
    server: Server, fresh_chaos: Chaos, streamed: bool
) -> None:
    fresh_chaos.control(script="error:429", retry_after_s=7)
    r = stream(server, body())[0] if streamed else post(server, body())
    err = assert_error_body(r, 429)
    assert err["type"] == "rate_limit_error"
    assert err["code"] == "rate_limit_exceeded"
    assert r.headers["retry-after"] == "7"


def test_upstream_429_raises_rate_limit_error_in_the_sdk(
    server: Server, fresh_chaos: Chaos
) -> None:
    fresh_chaos.control(script="error:429", retry_after_s=2)
    with sdk(server) as c, pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(model="deepseek-chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_upstream_400_is_passed_through(server: Server, fresh_chaos: Chaos, streamed: bool) -> None:
    """The upstream's own 400 is the client's fault: status, type and message pass through."""
    fresh_chaos.control(script="error:400")
    r = stream(server, body())[0] if streamed else post(server, body())
    err = assert_error_body(r, 400)
    assert err["type"] == "invalid_request_error"
    assert "chaos: injected 400" in err["message"]
    assert "retry-after" not in r.headers


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_upstream_503_is_passed_on_with_retry_after(
    server: Server, fresh_chaos: Chaos, streamed: bool
) -> None:
    fresh_chaos.control(script="error:503", retry_after_s=4)
    r = stream(server, body())[0] if streamed else post(server, body())
    assert_error_body(r, 503)
    assert r.headers["retry-after"] == "4"


def test_upstream_503_without_retry_after_still_gets_one(
    server: Server, fresh_chaos: Chaos
) -> None:
    """A 503 always carries Retry-After, even when the upstream sent none."""
    fresh_chaos.control(script="error:503")
    r = post(server, body())
    assert_error_body(r, 503)
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_upstream_timeout_becomes_504_within_read_timeout(
    server: Server, fresh_chaos: Chaos, streamed: bool
) -> None:
    """An upstream that never answers costs the client read_timeout_s, then a 504; seekport
    hangs up on the upstream."""
    fresh_chaos.control(script="timeout")
    my_id = rid()
    t0 = time.monotonic()
    r = stream(server, body(), my_id)[0] if streamed else post(server, body(), my_id)
    elapsed = time.monotonic() - t0
    err = assert_error_body(r, 504)
    assert err["code"] == "upstream_timeout"
    assert READ_TIMEOUT_S - 0.5 <= elapsed <= READ_TIMEOUT_S + 3
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"]) == (504, "upstream_timeout")
    up = upstream_record(fresh_chaos, row["request_id"])
    assert (up["outcome"], up["client_closed"]) == ("timeout", True)


@pytest.fixture(scope="module")
def refused_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A seekport whose only model points at a loopback port nothing listens on."""
    tmp: Path = tmp_path_factory.mktemp("refused")
    dead = free_port()
    models = [
        {
            "name": "nowhere",
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{dead}/v1",
            "upstream_model": "deepseek-chat",
            "read_timeout_s": 3,
        }
    ]
    with run_server(write_config(tmp, models)) as s:
        yield s


@pytest.mark.parametrize("streamed", [False, True], ids=["non-stream", "stream"])
def test_connection_refused_becomes_502_fast(refused_server: Server, streamed: bool) -> None:
    my_id = rid()
    t0 = time.monotonic()
    payload = body("nowhere")
    r = (
        stream(refused_server, payload, my_id)[0]
        if streamed
        else post(refused_server, payload, my_id)
    )
    assert time.monotonic() - t0 < 2.5
    err = assert_error_body(r, 502)
    assert err["code"] == "upstream_error"
    assert "unreachable" in err["message"]
    assert usage_row(refused_server, my_id)["status"] == 502


# ---------------------------------------------------------------- 7. mid-stream faults


def assert_in_band_error(events: list[str], code: str) -> list[dict[str, Any]]:
    """The stream ended with one in-band error event and no [DONE]; returns the chunks before."""
    assert "[DONE]" not in events
    assert events, "the stream carried nothing at all"
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert last["error"]["code"] == code
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks)
    return chunks


def test_stall_mid_stream_ends_with_in_band_timeout_error(
    server: Server, fresh_chaos: Chaos
) -> None:
    """Upstream goes silent after 3 chunks: the client gets those, then an in-band error within
    read_timeout_s, no [DONE]; seekport hangs up on the upstream."""
    fresh_chaos.control(script="stall", stall_after_chunks=3)
    my_id = rid()
    t0 = time.monotonic()
    r, events = stream(server, body(), my_id)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    chunks = assert_in_band_error(events, "upstream_timeout")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(chunks) == " ".join(TOKENS[:3])
    assert READ_TIMEOUT_S - 0.5 <= elapsed <= READ_TIMEOUT_S + 3
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"], row["stream"]) == (504, "upstream_timeout", 1)
    up = upstream_record(fresh_chaos, row["request_id"])
    assert (up["outcome"], up["chunks_sent"], up["client_closed"]) == ("stall", 3, True)


@pytest.mark.parametrize("mode", ["rst", "fin"])
def test_reset_mid_stream_ends_with_in_band_error(
    server: Server, fresh_chaos: Chaos, mode: str
) -> None:
    """Upstream drops the connection after 3 chunks (RST, or a clean FIN that truncates the
    chunked body): in-band error event, no [DONE], never a clean-looking end."""
    fresh_chaos.control(script="reset", stall_after_chunks=3, reset_mode=mode)
    my_id = rid()
    r, events = stream(server, body(), my_id)
    assert r.status_code == 200
    chunks = assert_in_band_error(events, "upstream_error")
    assert content_of(chunks) == " ".join(TOKENS[:3])
    assert not any(ch["finish_reason"] for c in chunks for ch in c["choices"])
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"]) == (502, "upstream_error")


def test_malformed_event_mid_stream_is_dropped_and_stream_completes(
    server: Server, fresh_chaos: Chaos
) -> None:
    fresh_chaos.control(script="malformed", stall_after_chunks=3)
    my_id = rid()
    r, events = stream(server, body(stream_options={"include_usage": True}), my_id)
    assert r.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = chunks_of(events)  # every event the client gets is valid JSON
    assert content_of(chunks) == ANSWER  # nothing lost, nothing doubled around the bad event
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert usage_row(server, my_id)["status"] == 200
    assert fresh_chaos.stats()["by_outcome"] == {"malformed": 1}


@pytest.mark.parametrize("mode", ["rst", "fin"])
def test_reset_before_any_content_non_stream_is_502(
    server: Server, fresh_chaos: Chaos, mode: str
) -> None:
    """Non-stream: the upstream announces a full Content-Length, sends half and resets."""
    fresh_chaos.control(script="reset", reset_mode=mode)
    my_id = rid()
    r = post(server, body(), my_id)
    err = assert_error_body(r, 502)
    assert err["code"] == "upstream_error"
    assert usage_row(server, my_id)["status"] == 502


def test_stall_non_stream_is_504(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(script="stall")
    t0 = time.monotonic()
    r = post(server, body())
    assert time.monotonic() - t0 <= READ_TIMEOUT_S + 3
    assert assert_error_body(r, 504)["code"] == "upstream_timeout"


def test_malformed_non_stream_body_is_502(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(script="malformed")
    r = post(server, body())
    assert assert_error_body(r, 502)["code"] == "upstream_error"
    assert b"chaos-malformed" not in r.content


def test_fault_script_is_per_request_and_next_request_is_healthy(
    server: Server, fresh_chaos: Chaos
) -> None:
    """A failed upstream exchange leaves nothing broken behind (pooled connection included)."""
    fresh_chaos.control(script="reset,error:500,ok")
    assert post(server, body()).status_code == 502
    assert post(server, body()).status_code == 502
    ok = post(server, body())
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == ANSWER


# ---------------------------------------------------------------- 8. client disconnect


def hang_up_after(server: Server, my_id: str, n: int, *, content_only: bool) -> int:
    """Stream a chat completion and hang up after ``n`` data events (``content_only``: events
    with content); returns how many were received."""
    got = 0
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json=body(stream=True),
        headers=auth(server, my_id),
        timeout=10,
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if content_only and not json.loads(line[6:])["choices"][0]["delta"].get("content"):
                continue
            got += 1
            if got >= n:
                break
    return got  # leaving the context manager closed the connection mid-stream


def test_client_disconnect_mid_stream_reaches_upstream_and_is_recorded_499(
    server: Server, fresh_chaos: Chaos
) -> None:
    """The client leaves a slow stream: seekport hangs up on the upstream (chaos sees
    client_closed) and records the request as 499."""
    fresh_chaos.control(drip_ms=100, tokens=200)
    my_id = rid()
    hang_up_after(server, my_id, 4, content_only=False)
    deadline = time.monotonic() + 5
    rec: dict[str, Any] = {}
    recent: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        recent = fresh_chaos.requests(last=1)
        if recent and recent[-1].get("client_closed"):
            rec = recent[-1]
            break
        time.sleep(0.05)
    assert rec.get("client_closed") is True, f"upstream never saw the hang-up: {recent}"
    assert rec["outcome"] == "client_closed"
    assert rec["chunks_sent"] < 100  # stopped well before the 200 tokens (20 s of drip)
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"], row["stream"]) == (499, "client_closed", 1)
    assert rec["request_id"] == row["request_id"]


def test_client_disconnect_non_stream_is_recorded_499(server: Server, fresh_chaos: Chaos) -> None:
    """The client gives up on a slow non-stream answer: the request still leaves its one usage
    record (499), and seekport hangs up on the upstream."""
    fresh_chaos.control(script="timeout")
    my_id = rid()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/chat/completions",
            json=body(),
            headers=auth(server, my_id),
            timeout=httpx.Timeout(10, read=0.5),
        )
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"], row["stream"]) == (499, "client_closed", 0)
    up = upstream_record(fresh_chaos, row["request_id"])
    assert (up["outcome"], up["client_closed"]) == ("timeout", True)


def test_client_leaving_a_stalled_stream_releases_the_upstream_at_once(
    server: Server, fresh_chaos: Chaos
) -> None:
    """The client hangs up while the upstream is silent: seekport must not hold the upstream
    until its read timeout; chaos sees the hang-up well before read_timeout_s."""
    fresh_chaos.control(script="stall", stall_after_chunks=3)
    my_id = rid()
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json=body(stream=True),
        headers=auth(server, my_id),
        timeout=10,
    ) as r:
        assert r.status_code == 200
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                got += 1
                if got == 4:  # role + 3 tokens: the upstream is now silent
                    break
    t0 = time.monotonic()
    up: dict[str, Any] = {}
    while time.monotonic() - t0 < READ_TIMEOUT_S - 1:
        recs = fresh_chaos.requests(last=5)
        if recs and recs[-1].get("outcome") == "stall":
            up = recs[-1]
            break
        time.sleep(0.05)
    assert up.get("client_closed") is True, (
        "seekport held the silent upstream after the client left"
    )
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"]) == (499, "client_closed")


def test_client_leaving_a_stream_before_its_first_byte_releases_the_upstream(
    server: Server, fresh_chaos: Chaos
) -> None:
    """The client gives up on a stream the upstream has not started answering: seekport hangs
    up on the upstream at once (not after read_timeout_s) and records 499, not 504."""
    fresh_chaos.control(script="timeout")
    my_id = rid()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/chat/completions",
            json=body(stream=True),
            headers=auth(server, my_id),
            timeout=httpx.Timeout(10, read=0.5),
        )
    t_left = time.monotonic()
    up: dict[str, Any] = {}
    while time.monotonic() - t_left < READ_TIMEOUT_S:
        recs = fresh_chaos.requests(last=5)
        if recs and recs[-1].get("outcome") == "timeout":
            up = recs[-1]
            break
        time.sleep(0.05)
    assert up.get("client_closed") is True
    assert time.monotonic() - t_left < 1.5, "the upstream was held until the read timeout"
    row = usage_row(server, my_id)
    assert (row["status"], row["error_code"], row["stream"]) == (499, "client_closed", 1)


def test_client_disconnect_bills_at_least_the_tokens_delivered(
    server: Server, fresh_chaos: Chaos
) -> None:
    """An aborted stream never gets the upstream's usage; the record still counts at least
    the content chunks the client was sent."""
    fresh_chaos.control(drip_ms=50, tokens=200)
    my_id = rid()
    delivered = hang_up_after(server, my_id, 10, content_only=True)
    row = usage_row(server, my_id)
    assert row["status"] == 499
    assert delivered <= row["completion_tokens"] < 200
