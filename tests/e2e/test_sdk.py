"""The SDK (``seekport.Client`` / ``AsyncClient``) against the real server in front of the
suite's fault-injecting upstream: typed answers, streams with usage, the error tree with
request ids, retries (backoff, Retry-After, never after content) and the breaker's fallback.

The session server has no retries of its own for the remote models, so each upstream fault
reaches the client as the gateway's error answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from seekport import AsyncClient, Client
from seekport.errors import (
    AuthenticationError,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    SeekportError,
)
from seekport.protocol.chat import ChatCompletion
from seekport.sdk import (
    APITimeoutError,
    BreakerSettings,
    ChatDelta,
    CircuitOpenError,
    RetryEvent,
    RetryPolicy,
)
from tests.harness import BUNDLED, Chaos, Server

MODEL = "deepseek-chat"
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)
HI = [{"role": "user", "content": "hi"}]


def make(server: Server, **kw: object) -> Client:
    kw.setdefault("retry", FAST)
    return Client(base_url=server.url + "/v1", api_key=server.key, **kw)  # type: ignore[arg-type]


def test_calls_return_the_servers_models(server: Server, fresh_chaos: Chaos) -> None:
    with make(server) as c:
        answer = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=4)
        assert isinstance(answer, ChatCompletion)
        assert answer.choices[0].message.content == "tok0 tok1 tok2 tok3"
        assert answer.usage is not None and answer.usage.completion_tokens == 4
        text = c.completions.create(model=BUNDLED, prompt="One, two,", max_tokens=3)
        assert text.choices[0].text and text.usage is not None
        assert text.usage.completion_tokens <= 3
        names = [m.id for m in c.models.list().data]
        assert MODEL in names and "renamed" in names
        assert c.models.retrieve(MODEL).id == MODEL
        assert c.balance().is_available is True
        report = c.usage(group_by="model")
        assert report.group_by == "model" and MODEL in [g.group for g in report.data]


def test_stream_yields_content_and_exposes_usage(server: Server, fresh_chaos: Chaos) -> None:
    with make(server) as c:
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True, max_tokens=5)
        deltas = list(stream)
        assert all(isinstance(d, ChatDelta) for d in deltas)
        assert (
            "".join(d.content or "" for d in deltas) == stream.content == "tok0 tok1 tok2 tok3 tok4"
        )
        assert stream.finish_reason == "length"
        assert stream.usage is not None and stream.usage.completion_tokens == 5
        assert stream.request_id
        text = c.completions.create(
            model=BUNDLED, prompt="One, two,", stream=True, max_tokens=3, temperature=0
        ).collect()
        plain = c.completions.create(model=BUNDLED, prompt="One, two,", max_tokens=3, temperature=0)
        assert text.text == plain.choices[0].text
        assert (
            text.usage is not None and text.usage.completion_tokens == plain.usage.completion_tokens
        )


def test_errors_are_the_servers_types_with_request_ids(server: Server) -> None:
    bad = Client(base_url=server.url, api_key="sk-sp-wrong", retry=FAST)
    with bad, pytest.raises(AuthenticationError) as auth:
        bad.models.list()
    assert auth.value.status_code == 401 and auth.value.request_id
    events: list[RetryEvent] = []
    with make(server, on_retry=events.append) as c:
        with pytest.raises(InvalidRequestError) as invalid:
            c.chat.completions.create(model=MODEL, messages=HI, temperature=7)
        assert invalid.value.param and "temperature" in invalid.value.param
        assert invalid.value.request_id
        with pytest.raises(InvalidRequestError) as missing:
            c.chat.completions.create(model="no-such-model", messages=HI)
        assert missing.value.status_code == 404 and missing.value.code == "model_not_found"
    assert events == []  # a caller's error is never retried


def test_retries_with_backoff_then_succeeds(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(script=["error:500", "error:502", "ok"])  # no Retry-After
    events: list[RetryEvent] = []
    with make(server, on_retry=events.append) as c:
        answer = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert answer.choices[0].message.content == "tok0 tok1"
    assert [e.retry for e in events] == [1, 2]
    assert [e.error.status_code for e in events] == [502, 502]  # the gateway says 502 for both
    # full jitter: each wait within [0, min(max_delay, initial * 2**n)]
    assert 0 <= events[0].delay_s <= 0.01 and 0 <= events[1].delay_s <= 0.02
    assert [r["outcome"] for r in fresh_chaos.requests(3)] == ["error", "error", "ok"]


def test_retry_after_is_honoured_and_retries_end(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(retry_after_s=1, script=["error:429", "ok"])
    events: list[RetryEvent] = []
    with make(server, on_retry=events.append) as c:
        started = time.monotonic()
        c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert time.monotonic() - started >= 1
    assert len(events) == 1 and events[0].delay_s == 1
    fresh_chaos.control(reset=True, reset_stats=True, script=["error:503"] * 3)
    c = make(server, retry=RetryPolicy(max_retries=2, initial_delay=0.01))
    with c, pytest.raises(OverloadedError) as over:
        c.chat.completions.create(model=MODEL, messages=HI)
    assert over.value.status_code == 503 and over.value.request_id
    assert len(fresh_chaos.requests(10)) == 3  # the call and its two retries


def test_stream_retries_before_content_but_never_after(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(script=["error:503", "ok"])
    events: list[RetryEvent] = []
    with make(server, on_retry=events.append) as c:
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True, max_tokens=3)
        assert stream.collect().content == "tok0 tok1 tok2"
        assert len(events) == 1
        fresh_chaos.control(script=["reset"], stall_after_chunks=2)
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True, max_tokens=8)
        got: list[str] = []
        with pytest.raises(SeekportError) as broke:
            for d in stream:
                got.append(d.content or "")
        assert "".join(got).startswith("tok0") and stream.content == "".join(got)
    assert len(events) == 1, "no retry once content was yielded"
    assert getattr(broke.value, "request_id", None) or stream.request_id
    assert [r["outcome"] for r in fresh_chaos.requests(1)] == ["reset"]


def test_breaker_sends_calls_to_the_fallback_and_probes_back(
    server: Server, fresh_chaos: Chaos
) -> None:
    breaker = BreakerSettings(error_rate=0.3, min_calls=4, window_s=60, cooldown_s=0.5)
    fresh_chaos.control(script=["error:503"] * 4)
    with make(
        server, retry=RetryPolicy(max_retries=0), breaker=breaker, fallbacks={MODEL: "renamed"}
    ) as c:
        for _ in range(4):
            with pytest.raises(OverloadedError):
                c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert c.aio.breakers.state(MODEL) == "open"
        answer = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert answer.model == "renamed"  # served by the fallback while open
        time.sleep(0.6)
        assert c.aio.breakers.state(MODEL) == "half_open"
        probe = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert probe.model == MODEL
        assert c.aio.breakers.state(MODEL) == "closed"
    fresh_chaos.control(reset=True, reset_stats=True, script=["error:503"] * 4)
    with make(server, retry=RetryPolicy(max_retries=0), breaker=breaker) as c:
        for _ in range(4):
            with pytest.raises(OverloadedError):
                c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        with pytest.raises(CircuitOpenError) as fast:  # no fallback: refused without a call
            c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert fast.value.retry_after is not None
    assert len(fresh_chaos.requests(20)) == 4


def test_async_client_gathers_many_prompts(server: Server, fresh_chaos: Chaos) -> None:
    async def run() -> list[str]:
        async with AsyncClient(base_url=server.url, api_key=server.key, retry=FAST) as c:
            answers = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": f"q{i}"}], max_tokens=2
                    )
                    for i in range(8)
                )
            )
            stream = await c.chat.completions.create(
                model=MODEL, messages=HI, stream=True, max_tokens=2
            )
            parts = [d.content async for d in stream if d.content]
            assert stream.usage is not None
            return [a.choices[0].message.content or "" for a in answers] + ["".join(parts)]

    assert asyncio.run(run()) == ["tok0 tok1"] * 9


def test_environment_configures_the_client(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKPORT_BASE_URL", server.url)
    monkeypatch.setenv("SEEKPORT_API_KEY", server.key)
    with Client(retry=FAST) as c:
        assert c.base_url == server.url
        assert MODEL in [m.id for m in c.models.list().data]


def test_stream_keeps_reasoning_apart(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(reasoning_tokens=3)
    with make(server) as c:
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True, max_tokens=2)
        deltas = list(stream)
        thinking = [d.reasoning_content for d in deltas if d.reasoning_content]
        assert thinking == ["think0", " think1", " think2"]
        assert all(d.content is None for d in deltas if d.reasoning_content)
        assert stream.reasoning_content == "think0 think1 think2"
        assert stream.content == "tok0 tok1"
        answer = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
        assert answer.choices[0].message.reasoning_content == "think0 think1 think2"
        assert answer.choices[0].message.content == "tok0 tok1"


def test_timeout_per_call(server: Server, fresh_chaos: Chaos) -> None:
    fresh_chaos.control(script=["timeout"])
    events: list[RetryEvent] = []
    with make(server, on_retry=events.append) as c:
        with pytest.raises(APITimeoutError):
            c.chat.completions.create(model=MODEL, messages=HI, timeout=0.5, max_retries=0)
        answer = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=1, timeout=30)
        assert answer.choices[0].message.content == "tok0"
    assert events == []


def test_admin_through_the_sdk(server: Server) -> None:
    with make(server) as c:
        tenant = c.admin.tenants.create("sdk-tenant")
        assert tenant.id in [t.id for t in c.admin.tenants.list()]
        user = c.admin.users.create("sdk-user", tenant_id=tenant.id)
        assert c.admin.users.retrieve(user.id).tenant_id == tenant.id
        made = c.admin.keys.create("sdk-key", "user", tenant_id=tenant.id, user_id=user.id)
        assert made.secret.startswith("sk-sp-")
        with Client(base_url=server.url, api_key=made.secret, retry=FAST) as as_user:
            assert MODEL in [m.id for m in as_user.models.list().data]
            with pytest.raises(PermissionDeniedError) as denied:
                as_user.admin.keys.list()
            assert denied.value.status_code == 403 and denied.value.request_id
        assert c.admin.keys.revoke(made.id).id == made.id
        revoked = Client(base_url=server.url, api_key=made.secret, retry=FAST)
        with revoked, pytest.raises(AuthenticationError):  # at once on the replica that revoked
            revoked.models.list()
        assert c.admin.tenants.update(tenant.id, disabled=True).disabled is True
