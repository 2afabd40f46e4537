"""Retry pacing: full-jitter backoff and the Envoy-style retry budget."""

from __future__ import annotations

import math
import random

import pytest

from seekport.gateway.routing.retry import RetryBudget, backoff


def one() -> float:
    return 1.0


def zero() -> float:
    return 0.0


def half() -> float:
    return 0.5


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2), (6, 5.0), (10, 5.0)],
)
def test_backoff_ceiling_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff(attempt, 0.1, 5.0, rng=one) == pytest.approx(ceiling)
    assert backoff(attempt, 0.1, 5.0, rng=half) == pytest.approx(ceiling / 2)


def test_backoff_is_zero_when_the_rng_gives_zero() -> None:
    for attempt in range(8):
        assert backoff(attempt, 0.1, 5.0, rng=zero) == 0.0


def test_backoff_stays_within_zero_and_the_ceiling() -> None:
    rng = random.Random(7).random
    for attempt in range(12):
        ceiling = min(2.0, 0.05 * 2**attempt)
        waits = [backoff(attempt, 0.05, 2.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2, "full jitter: spread over the whole range"


def test_backoff_draws_from_the_injected_rng() -> None:
    calls: list[int] = []

    def rng() -> float:
        calls.append(1)
        return 0.25

    assert backoff(2, 1.0, 100.0, rng=rng) == pytest.approx(1.0)
    assert calls == [1]


@pytest.mark.parametrize(("base", "cap"), [(0.0, 5.0), (0.1, 0.0), (0.0, 0.0)])
def test_backoff_is_zero_when_base_or_cap_is_zero(base: float, cap: float) -> None:
    for attempt in (0, 1, 5):
        assert backoff(attempt, base, cap, rng=one) == 0.0


@pytest.mark.parametrize("attempt", [64, 1024, 10_000, 10**9])
def test_backoff_for_a_huge_attempt_does_not_overflow(attempt: int) -> None:
    wait = backoff(attempt, 0.1, 5.0, rng=one)
    assert math.isfinite(wait)
    assert wait == pytest.approx(5.0)


def test_backoff_with_the_default_rng_stays_in_range() -> None:
    for _ in range(100):
        assert 0.0 <= backoff(3, 0.1, 5.0) <= 0.8


def test_the_budget_always_allows_min_concurrency_retries() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    assert [budget.try_acquire() for _ in range(3)] == [True, True, True]
    assert budget.try_acquire() is False
    assert budget.retries == 3


def test_a_zero_ratio_still_allows_min_concurrency() -> None:
    budget = RetryBudget(ratio=0.0, min_concurrency=2)
    for _ in range(100):
        budget.request_started()
    assert [budget.try_acquire() for _ in range(3)] == [True, True, False]


def test_the_budget_allows_ratio_of_the_requests_under_way() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    for _ in range(50):
        budget.request_started()
    assert budget.limit() == 10
    granted = [budget.try_acquire() for _ in range(12)]
    assert granted == [True] * 10 + [False] * 2


def test_the_limit_follows_the_requests_under_way() -> None:
    budget = RetryBudget(ratio=0.5, min_concurrency=3)
    assert budget.limit() == 3
    for _ in range(6):
        budget.request_started()
    assert budget.limit() == 3
    for _ in range(4):
        budget.request_started()
    assert budget.limit() == 5
    for _ in range(10):
        budget.request_ended()
    assert budget.limit() == 3


def test_refused_retries_are_counted() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=1)
    assert budget.try_acquire()
    assert not budget.try_acquire()
    assert not budget.try_acquire()
    assert budget.refused == 2
    assert budget.retries == 1


def test_release_frees_a_slot() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=1)
    assert budget.try_acquire()
    assert not budget.try_acquire()
    budget.release()
    assert budget.retries == 0
    assert budget.try_acquire()


def test_release_never_goes_negative() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=1)
    budget.release()
    budget.release()
    assert budget.retries == 0
    assert budget.try_acquire()
    assert not budget.try_acquire(), "a spurious release must not buy an extra slot"


def test_request_ended_never_goes_negative() -> None:
    budget = RetryBudget(ratio=0.5, min_concurrency=3)
    budget.request_started()
    budget.request_ended()
    budget.request_ended()
    assert budget.requests == 0
    budget.request_started()
    assert budget.requests == 1


def test_snapshot_reports_the_budget() -> None:
    budget = RetryBudget(ratio=0.25, min_concurrency=2)
    for _ in range(12):
        budget.request_started()
    for _ in range(4):
        budget.try_acquire()
    assert budget.snapshot() == {
        "ratio": 0.25,
        "requests_in_flight": 12,
        "retries_in_flight": 3,
        "limit": 3,
        "refused": 1,
    }


def test_a_fresh_budget_snapshot_is_empty() -> None:
    assert RetryBudget(ratio=0.2).snapshot() == {
        "ratio": 0.2,
        "requests_in_flight": 0,
        "retries_in_flight": 0,
        "limit": 3,
        "refused": 0,
    }
