"""The router over scripted backends: which deployment answers, what is retried, what is held
back before the first content, breakers, fallbacks and the all-down 503. The e2e suite drives
the same paths through real upstream processes (tests/e2e/test_routing.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from seekport.config import BreakerConfig, RoutingConfig
from seekport.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    OverloadedError,
    SeekportError,
    UpstreamError,
    UpstreamStatusError,
)
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.routing.breaker import Breaker
from seekport.gateway.routing.router import Router, classify
from seekport.gateway.routing.table import Deployment, RoutingTable
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.common import Usage
from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    KeepAlive,
    RoleDelta,
    UsageReport,
)
from seekport.telemetry.metrics import Metrics

ANSWER: list[Event] = [
    RoleDelta(),
    ContentDelta("a"),
    ContentDelta("b"),
    Finish("stop"),
    UsageReport(Usage.of(3, 2, 0, None)),
]


class Scripted:
    """A ChatBackend double: each call takes the next outcome of its script. An outcome is
    "ok", an exception (raised by generate, as an upstream status is), ("break", exc) (the
    role chunk, then exc before any content), ("late", exc) (one content delta, then exc) or
    "hang" (the role chunk, then nothing)."""

    def __init__(self, name: str, script: list[Any], kind: str = "openai") -> None:
        self.model = name
        self.kind = kind
        self.fingerprint = None
        self.reasoning = False
        self.script = list(script)
        self.calls = 0

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    async def generate(self, call: BackendCall) -> AsyncIterator[Event]:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else "ok"
        if isinstance(outcome, SeekportError):
            raise outcome
        return self._events(outcome)

    async def _events(self, outcome: Any) -> AsyncIterator[Event]:
        if outcome == "ok":
            for ev in ANSWER:
                yield ev
            return
        if outcome == "hang":
            yield RoleDelta()
            await asyncio.sleep(3600)
        kind, exc = outcome
        yield RoleDelta()
        yield KeepAlive()
        if kind == "late":
            yield ContentDelta("a")
        raise exc


def dep(backend: Scripted, index: int = 0, **kw: Any) -> Deployment:
    cfg = kw.pop("breaker_cfg", BreakerConfig())
    return Deployment(
        f"{backend.model}#{index}", backend.model, backend, breaker=Breaker(cfg), **kw
    )


def router(*deps: Deployment, **policy: Any) -> tuple[Router, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    r = Router(RoutingTable.of(list(deps), RoutingConfig(**policy)), Metrics(), sleep=sleep)
    return r, slept


def call_for(model: str) -> BackendCall:
    req = ChatCompletionRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    )
    return BackendCall("chat", model, req, {}, "req_1", stream=True)


async def answer(r: Router, model: str = "m", *, stream: bool = True) -> tuple[str, list[Event]]:
    routed = await r.open(model, call_for, stream=stream)
    events = [ev async for ev in routed.events]
    await routed.events.aclose()  # type: ignore[attr-defined]
    return routed.deployment.id, events


def texts(events: list[Event]) -> str:
    return "".join(ev.text for ev in events if isinstance(ev, ContentDelta))


async def test_weighted_round_robin_spreads_by_weight() -> None:
    a, b = Scripted("m", []), Scripted("m", [])
    r, _ = router(dep(a, 0, weight=3), dep(b, 1, weight=1))
    served = [(await answer(r))[0] for _ in range(40)]
    assert served.count("m#0") == 30 and served.count("m#1") == 10
    assert "m#0m#0m#0m#0" not in "".join(served)  # smooth: interleaved, not in runs


async def test_tag_aware_prefers_the_region_asked_for_then_the_rest() -> None:
    eu, cn = Scripted("m", []), Scripted("m", [UpstreamStatusError("busy", status_code=503)])
    r, _ = router(
        dep(eu, 0, tags={"region": "eu"}), dep(cn, 1, tags={"region": "cn"}), strategy="tag_aware"
    )
    routed = await r.open("m", call_for, stream=True, region="cn")
    await routed.events.aclose()  # type: ignore[attr-defined]
    assert routed.deployment.id == "m#0" and cn.calls == 1  # cn first; it failed: eu served
    for _ in range(2):
        again = await r.open("m", call_for, stream=True, region="eu")
        await again.events.aclose()  # type: ignore[attr-defined]
        assert again.deployment.id == "m#0"


async def test_least_inflight_sends_the_next_call_to_the_idler_deployment() -> None:
    a, b = Scripted("m", []), Scripted("m", [])
    r, _ = router(dep(a, 0), dep(b, 1), strategy="least_inflight")
    first = await r.open("m", call_for, stream=True)  # still open: one call in flight
    second = await r.open("m", call_for, stream=True)
    assert {first.deployment.id, second.deployment.id} == {"m#0", "m#1"}
    assert first.deployment.in_flight == 1 and second.deployment.in_flight == 1
    await first.events.aclose()  # type: ignore[attr-defined]
    third = await r.open("m", call_for, stream=True)
    assert third.deployment is first.deployment  # the one that let go
    for routed in (second, third):
        await routed.events.aclose()  # type: ignore[attr-defined]
    assert first.deployment.in_flight == 0 and second.deployment.in_flight == 0


async def test_a_503_is_retried_on_the_other_deployment_once() -> None:
    bad = Scripted("m", [UpstreamStatusError("busy", status_code=503)])
    good = Scripted("m", [])
    r, slept = router(dep(bad, 0), dep(good, 1))
    # the first pick is m#0 (equal weights, first in the list)
    served, events = await answer(r)
    assert served == "m#1" and texts(events) == "ab"
    assert [type(e) for e in events].count(RoleDelta) == 1
    assert (bad.calls, good.calls) == (1, 1) and slept == []


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_never_retried(status: int) -> None:
    exc = UpstreamStatusError("no", status_code=status)
    bad, good = Scripted("m", [exc]), Scripted("m", [])
    r, _ = router(dep(bad, 0), dep(good, 1))
    with pytest.raises(UpstreamStatusError) as info:
        await answer(r)
    assert info.value.status_code == status and good.calls == 0


async def test_a_stream_cut_before_content_is_retried_without_repeating_the_role() -> None:
    bad = Scripted("m", [("break", UpstreamError("reset"))])
    good = Scripted("m", [])
    r, _ = router(dep(bad, 0), dep(good, 1))
    served, events = await answer(r)
    assert served == "m#1"
    assert [type(e).__name__ for e in events] == [
        "RoleDelta",
        "ContentDelta",
        "ContentDelta",
        "Finish",
        "UsageReport",
    ]


async def test_a_stream_cut_after_content_is_not_retried() -> None:
    bad = Scripted("m", [("late", UpstreamError("reset"))])
    good = Scripted("m", [])
    r, _ = router(dep(bad, 0), dep(good, 1))
    routed = await r.open("m", call_for, stream=True)
    got: list[Event] = []
    with pytest.raises(UpstreamError):
        async for ev in routed.events:
            got.append(ev)
    await routed.events.aclose()  # type: ignore[attr-defined]
    assert texts(got) == "a" and good.calls == 0
    assert routed.deployment.in_flight == 0
    assert routed.deployment.breaker is not None
    # the first content counted as a success, the cut after it as a failure
    snap = routed.deployment.breaker.snapshot()
    assert snap["consecutive_failures"] == 1
    assert snap["window_calls"] == 2 and snap["window_error_rate"] == 0.5


async def test_a_non_stream_answer_is_read_whole_and_retried_even_after_content() -> None:
    bad = Scripted("m", [("late", UpstreamError("reset"))])
    good = Scripted("m", [])
    r, _ = router(dep(bad, 0), dep(good, 1))
    served, events = await answer(r, stream=False)
    assert served == "m#1" and texts(events) == "ab"


async def test_the_same_remote_deployment_is_retried_with_backoff() -> None:
    only = Scripted("m", [UpstreamError("down"), UpstreamError("down")])
    r, slept = router(dep(only), max_retries=2, backoff_s=0.1)
    served, events = await answer(r)
    assert served == "m#0" and only.calls == 3 and texts(events) == "ab"
    assert len(slept) == 2 and 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2


async def test_max_retries_zero_tries_once() -> None:
    only = Scripted("m", [UpstreamError("down")])
    r, _ = router(dep(only), max_retries=0)
    with pytest.raises(UpstreamError):
        await answer(r)
    assert only.calls == 1


async def test_a_local_deployment_alone_passes_events_through_at_once() -> None:
    """No other attempt is possible (the local engine is not retried in place): the role chunk
    and keep-alives reach the client before any content, as a queued request needs."""
    local = Scripted("m", ["hang"], kind="local")
    r, _ = router(dep(local))
    routed = await asyncio.wait_for(r.open("m", call_for, stream=True), 1)
    assert isinstance(await anext(routed.events), RoleDelta)
    await routed.events.aclose()  # type: ignore[attr-defined]
    assert routed.deployment.in_flight == 0


async def test_no_first_token_in_time_moves_to_the_next_deployment() -> None:
    slow = Scripted("m", ["hang"])
    good = Scripted("m", [])
    r, _ = router(dep(slow, 0, first_token_timeout_s=0.05), dep(good, 1))
    served, events = await answer(r)
    assert served == "m#1" and texts(events) == "ab"
    assert r.table.groups["m"].deployments[0].in_flight == 0


async def test_breaker_opens_after_consecutive_failures_then_all_down_is_a_fast_503() -> None:
    fails: list[Any] = [UpstreamError("down")] * 10
    a, b = Scripted("m", list(fails)), Scripted("m", list(fails))
    cfg = BreakerConfig(consecutive_failures=2, cooldown_s=30)
    r, _ = router(dep(a, 0, breaker_cfg=cfg), dep(b, 1, breaker_cfg=cfg), max_retries=1)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await answer(r)
    assert (a.calls, b.calls) == (2, 2)
    with pytest.raises(OverloadedError) as info:
        await answer(r)
    assert info.value.status_code == 503 and info.value.retry_after and info.value.retry_after > 1
    assert (a.calls, b.calls) == (2, 2)  # nothing was called
    snap = r.snapshot()["groups"]["m"]
    assert [d["breaker"]["state"] for d in snap] == ["open", "open"]


async def test_a_failed_group_falls_back_to_the_next_model() -> None:
    primary = Scripted("pro", [UpstreamError("down")] * 3)
    backup = Scripted("flash", [])
    r, _ = router(dep(primary), dep(backup), fallbacks={"pro": ["flash"]}, max_retries=1)
    routed = await r.open("pro", call_for, stream=True)
    assert routed.call.model == "flash" and routed.fallback_from == "pro"
    assert routed.deployment.id == "flash#0" and primary.calls == 2
    await routed.events.aclose()  # type: ignore[attr-defined]


async def test_a_prompt_too_long_takes_the_context_fallbacks_only() -> None:
    small = Scripted("small", [ContextLengthExceededError("too long")])
    big, other = Scripted("big", []), Scripted("other", [])
    r, _ = router(
        dep(small),
        dep(big),
        dep(other),
        fallbacks={"small": ["other"]},
        context_fallbacks={"small": ["big"]},
    )
    routed = await r.open("small", call_for, stream=True)
    assert routed.call.model == "big" and other.calls == 0
    await routed.events.aclose()  # type: ignore[attr-defined]


async def test_insufficient_balance_trips_the_deployment_and_takes_the_balance_list() -> None:
    broke = Scripted("pro", [UpstreamStatusError("pay", status_code=402)])
    backup = Scripted("flash", [])
    r, _ = router(dep(broke), dep(backup), balance_fallbacks={"pro": ["flash"]})
    routed = await r.open("pro", call_for, stream=True)
    assert routed.call.model == "flash"
    await routed.events.aclose()  # type: ignore[attr-defined]
    breaker = r.table.groups["pro"].deployments[0].breaker
    assert breaker is not None and breaker.snapshot()["state"] == "open"


async def test_a_long_retry_after_skips_the_deployment() -> None:
    limited = Scripted("m", [UpstreamStatusError("slow down", status_code=429, retry_after=60)])
    good = Scripted("m", [])
    r, slept = router(dep(limited, 0), dep(good, 1))
    assert (await answer(r))[0] == "m#1"
    for _ in range(4):  # skipped for its Retry-After: everything goes to the other
        assert (await answer(r))[0] == "m#1"
    assert limited.calls == 1 and slept == []


async def test_a_short_retry_after_on_the_only_deployment_is_waited_out() -> None:
    limited = Scripted("m", [UpstreamStatusError("slow down", status_code=429, retry_after=2)])
    r, slept = router(dep(limited), max_retry_wait_s=5)
    assert (await answer(r))[0] == "m#0"
    assert limited.calls == 2 and len(slept) == 1 and 0 < slept[0] <= 2


async def test_a_retry_after_beyond_the_wait_limit_is_passed_on() -> None:
    limited = Scripted("m", [UpstreamStatusError("slow down", status_code=429, retry_after=60)])
    r, slept = router(dep(limited), max_retry_wait_s=5)
    with pytest.raises(UpstreamStatusError) as info:
        await answer(r)
    assert info.value.status_code == 429 and limited.calls == 1 and slept == []


async def test_the_retry_budget_caps_retries() -> None:
    a = Scripted("m", [UpstreamError("down")] * 10)
    b = Scripted("m", [UpstreamError("down")] * 10)
    r, _ = router(dep(a, 0), dep(b, 1), retry_budget=0.0, max_retries=2)
    r.budget.min_concurrency = 0
    with pytest.raises(UpstreamError):
        await answer(r)
    assert a.calls + b.calls == 1


def test_classification() -> None:
    call = call_for("m")
    assert classify(UpstreamStatusError("x", status_code=500), call) == "retry"
    assert classify(UpstreamStatusError("x", status_code=429), call) == "rate_limited"
    assert classify(UpstreamStatusError("x", status_code=402), call) == "balance"
    assert classify(InvalidRequestError("x"), call) == "fatal"
    long = UpstreamStatusError(
        "This model's maximum context length is 65536 tokens", status_code=400
    )
    assert classify(long, call) == "context"
    call.stats.upstream_status = 401
    assert classify(UpstreamError("credentials"), call) == "fatal"
