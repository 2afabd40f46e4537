"""The per-deployment circuit breaker, driven by a fake clock (no sleeps)."""

from __future__ import annotations

from seekport.config.routing import BreakerConfig
from seekport.gateway.routing.breaker import Breaker


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**cfg: float) -> tuple[Breaker, FakeClock]:
    """A breaker on a fake clock; its error rate never counts unless a test lowers
    ``min_requests``."""
    defaults: dict[str, float] = {"min_requests": 1000, "cooldown_s": 10.0, "max_cooldown_s": 35.0}
    clock = FakeClock()
    return Breaker(BreakerConfig.model_validate(defaults | cfg), clock=clock), clock


def state(b: Breaker) -> str:
    """The state, read through a call so mypy does not narrow it across calls."""
    return b.state


def fail(b: Breaker, times: int, *, others_healthy: bool = True) -> None:
    for _ in range(times):
        b.record_failure(others_healthy=others_healthy)


def open_breaker(b: Breaker) -> None:
    fail(b, 5)
    assert state(b) == "open"


def test_opens_after_five_failures_in_a_row() -> None:
    b, _ = make()
    assert b.allow() and b.allow()
    fail(b, 4)
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open"
    assert not b.allow()
    assert b.ejections == 1


def test_a_success_resets_the_failure_streak() -> None:
    b, _ = make()
    fail(b, 4)
    b.record_success()
    fail(b, 4)
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open"


def test_opens_when_the_error_rate_passes_the_threshold() -> None:
    b, _ = make(consecutive_failures=100, min_requests=10, error_rate=0.3)
    for _ in range(7):
        b.record_success()
    fail(b, 3)  # 3 of 10: not more than 30 %
    assert state(b) == "closed"
    b.record_failure()  # 4 of 11
    assert state(b) == "open"


def test_the_error_rate_needs_min_requests_calls() -> None:
    b, _ = make(consecutive_failures=100, min_requests=10, error_rate=0.3)
    fail(b, 9)  # 100 % failed, but only 9 calls
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open"


def test_the_error_rate_alone_never_ejects_the_last_healthy_deployment() -> None:
    b, _ = make(consecutive_failures=100, min_requests=2, error_rate=0.1)
    for _ in range(50):
        b.record_success()
        b.record_failure(others_healthy=False)
    assert state(b) == "closed"
    b.record_failure(others_healthy=True)
    assert state(b) == "open"


def test_consecutive_failures_open_even_when_no_other_deployment_is_healthy() -> None:
    b, _ = make(min_requests=1)
    fail(b, 5, others_healthy=False)
    assert state(b) == "open"


def test_stays_open_for_the_cooldown_then_lets_exactly_one_probe_through() -> None:
    b, clock = make(cooldown_s=10.0)
    open_breaker(b)
    clock.now += 9.99
    assert not b.allow()
    assert state(b) == "open"
    clock.now += 0.01
    assert b.allow()
    assert state(b) == "half_open"
    assert not b.allow()
    clock.now += 5.0
    assert not b.allow()


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap() -> None:
    b, clock = make(cooldown_s=10.0, max_cooldown_s=35.0)
    open_breaker(b)
    clock.now += 10.0
    for expected in (20.0, 35.0, 35.0):  # 10 doubled, then 40 and 80 capped at 35
        assert b.allow()
        b.record_failure()  # the probe failed
        assert state(b) == "open"
        clock.now += expected - 0.01
        assert not b.allow(), f"still open just before {expected} s"
        clock.now += 0.01
    assert b.allow()


def test_a_successful_probe_closes_and_the_cooldown_starts_over() -> None:
    b, clock = make(cooldown_s=10.0, max_cooldown_s=35.0)
    open_breaker(b)
    clock.now += 10.0
    assert b.allow()
    b.record_failure()  # 20 s now
    clock.now += 20.0
    assert b.allow()
    b.record_success()
    assert state(b) == "closed"
    assert b.allow() and b.allow()
    assert b.level() == 0
    open_breaker(b)
    clock.now += 10.0
    assert b.allow(), "the first ejection after a close waits cooldown_s again"


def test_release_probe_lets_the_next_call_probe() -> None:
    b, clock = make(cooldown_s=10.0)
    open_breaker(b)
    clock.now += 10.0
    assert b.allow()
    assert not b.allow()
    b.release_probe()
    assert b.allow()
    assert state(b) == "half_open"


def test_a_lost_probe_is_given_up_after_max_cooldown() -> None:
    b, clock = make(cooldown_s=10.0, max_cooldown_s=35.0)
    open_breaker(b)
    clock.now += 10.0
    assert b.allow()  # this probe never reports back
    clock.now += 34.99
    assert not b.allow()
    clock.now += 0.01
    assert b.allow()
    assert not b.allow()


def test_trip_keeps_the_deployment_out_for_the_given_seconds() -> None:
    b, clock = make(cooldown_s=10.0)
    b.trip(120.0)
    assert state(b) == "open"
    assert b.ejections == 1
    clock.now += 119.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_level_reads_zero_closed_two_open_one_half_open() -> None:
    b, clock = make(cooldown_s=10.0)
    assert b.level() == 0
    open_breaker(b)
    assert b.level() == 2
    clock.now += 10.0
    assert b.level() == 1, "open with the cooldown over reads half-open"
    assert state(b) == "open", "reading the level does not change the state"
    assert b.allow()
    assert b.level() == 1


def test_the_window_forgets_calls_older_than_window_s() -> None:
    b, clock = make(window_s=60.0)
    b.record_success()
    clock.now += 30.0
    b.record_failure()
    assert b.snapshot()["window_calls"] == 2
    clock.now += 30.5  # the first call is 60.5 s old
    assert b.snapshot()["window_calls"] == 1
    clock.now += 30.0
    assert b.snapshot()["window_calls"] == 0


def test_old_failures_do_not_count_towards_the_error_rate() -> None:
    b, clock = make(consecutive_failures=100, min_requests=4, error_rate=0.4, window_s=60.0)
    fail(b, 3)
    b.record_success()
    clock.now += 61.0
    for _ in range(3):
        b.record_success()
    b.record_failure()  # 1 of 4 in the window; 4 of 8 had it remembered the old ones
    assert state(b) == "closed"


def test_memory_stays_bounded_whatever_the_traffic() -> None:
    b, clock = make(consecutive_failures=1000, window_s=60.0)
    for i in range(100_000):
        clock.now += 0.037  # about an hour of traffic, 60 windows
        if i % 3:
            b.record_success()
        else:
            b.record_failure(others_healthy=False)
        assert b._size() <= 11
    assert state(b) == "closed"


def test_snapshot_reports_state_counts_and_retry_time() -> None:
    b, clock = make(consecutive_failures=5, cooldown_s=10.0)
    b.record_success()
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.snapshot() == {
        "state": "closed",
        "consecutive_failures": 1,
        "window_calls": 5,
        "window_error_rate": 0.6,
        "ejections": 0,
        "retry_in_s": 0.0,
    }
    fail(b, 4)
    clock.now += 2.5
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["retry_in_s"] == 7.5
    assert snap["ejections"] == 1
    clock.now += 7.5
    assert b.snapshot()["state"] == "half_open"
    assert b.snapshot()["retry_in_s"] == 0.0


def test_ejections_count_every_opening() -> None:
    b, clock = make(cooldown_s=10.0)
    open_breaker(b)
    clock.now += 10.0
    assert b.allow()
    b.record_failure()  # the probe failed: ejected again
    assert b.ejections == 2
    clock.now += 20.0
    assert b.allow()
    b.record_success()
    assert b.ejections == 2
    b.trip(5.0)
    assert b.ejections == 3


def test_late_reports_while_open_do_not_extend_the_cooldown() -> None:
    """Calls already under way when the breaker opened still report; only the probe's result
    may re-open it for twice the cooldown."""
    b, clock = make(cooldown_s=10.0, max_cooldown_s=300.0)
    open_breaker(b)
    fail(b, 5)  # five more calls of the same burst fail late
    assert b.ejections == 1
    clock.now += 10.0
    assert b.allow(), "the cooldown is still cooldown_s"


def test_a_late_success_while_open_does_not_close_before_the_cooldown() -> None:
    b, clock = make(cooldown_s=10.0)
    open_breaker(b)
    clock.now += 1.0
    b.record_success()  # a call started before the breaker opened
    assert not b.allow(), "open: no call passes until the cooldown ends"
