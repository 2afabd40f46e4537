"""The console's session book: signed ids, idle expiry, a bound, logout."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seekport.config.console import ConsoleConfig
from seekport.gateway.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book(clock: Clock, secret: str = "s" * 32, **kw: int) -> Sessions:
    return Sessions(
        secret, ttl_s=kw.get("ttl_s", 60), max_sessions=kw.get("max_sessions", 3), clock=clock
    )


def test_a_session_is_found_by_its_cookie_and_idles_out() -> None:
    clock = Clock()
    sessions = book(clock)
    cookie, s = sessions.open("digest-1")
    assert sessions.find(cookie) is s and s.digest == "digest-1"
    clock.now += 59
    assert sessions.find(cookie) is s  # a request starts the idle time again
    clock.now += 59
    assert sessions.find(cookie) is s
    clock.now += 61
    assert sessions.find(cookie) is None and len(sessions) == 0


def test_cookies_are_signed_with_the_secret() -> None:
    clock = Clock()
    a, b = book(clock, "a" * 32), book(clock, "b" * 32)
    cookie, _ = a.open("d")
    assert b.find(cookie) is None
    assert a.find(cookie + "x") is None
    assert a.find("") is None and a.find(None) is None and a.find("y" * 1000) is None


def test_the_book_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    sessions = book(clock, max_sessions=2)
    c1, _ = sessions.open("1")
    c2, _ = sessions.open("2")
    assert sessions.find(c1) is not None  # 2 is now the least recently used
    c3, _ = sessions.open("3")
    assert sessions.find(c2) is None
    assert sessions.find(c1) is not None and sessions.find(c3) is not None


def test_logout_and_the_csrf_token() -> None:
    sessions = book(Clock())
    cookie, s = sessions.open("d")
    assert s.csrf_ok(s.csrf) and not s.csrf_ok(None) and not s.csrf_ok(s.csrf[:-1])
    assert sessions.close(cookie) and not sessions.close(cookie)
    assert sessions.find(cookie) is None


def test_a_short_session_secret_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="session_secret"):
        ConsoleConfig.model_validate({"session_secret": "short"})
    assert ConsoleConfig.model_validate({"session_secret": "x" * 32}).session_secret is not None


def test_a_session_ends_at_its_lifetime_however_active() -> None:
    clock = Clock()
    sessions = Sessions("s" * 32, ttl_s=60, max_sessions=10, lifetime_s=150, clock=clock)
    cookie, s = sessions.open("d")
    for _ in range(2):
        clock.now += 50
        assert sessions.find(cookie) is s  # each request keeps it from idling out
    clock.now += 49  # 149 s: still within its lifetime, though active all along
    assert sessions.find(cookie) is s
    clock.now += 2
    assert sessions.find(cookie) is None


def test_one_key_cannot_push_the_other_sessions_out() -> None:
    clock = Clock()
    sessions = Sessions("s" * 32, ttl_s=60, max_sessions=100, per_key=3, clock=clock)
    admin, _ = sessions.open("admin")
    flood = [sessions.open("viewer")[0] for _ in range(50)]
    assert sessions.find(admin) is not None
    assert len(sessions) == 4  # the admin's, and the viewer's newest three
    assert [sessions.find(c) is not None for c in flood[-4:]] == [False, True, True, True]
