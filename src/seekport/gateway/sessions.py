"""The web console's login sessions: a browser that logged in with an API key gets a session
instead of keeping the key.

The server keeps, per session, the SHA-256 of the key it was opened with (what the key store
holds, never the key) and a CSRF token. The browser holds only the session id, signed with the
configured secret (itsdangerous), in an HttpOnly cookie. Each request through a session looks
the key up again, so revoking or expiring the key ends its sessions within the key cache's
TTL. Sessions end after ``ttl_s`` without a request, ``lifetime_s`` after login however
active, at logout or a new login, or when the server restarts; one key holds at most
``per_key`` and all of them ``max_sessions`` (least recently used first out).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from seekport.config.console import ConsoleConfig

_SALT = "seekport.console.session"
MAX_COOKIE = 256  # a signed id is ~90 characters; longer is not ours
PER_KEY = 16  # sessions one key may hold: one key cannot push every other session out


@dataclass(slots=True)
class Session:
    digest: str  # the SHA-256 of the key it was opened with
    csrf: str
    expires: float  # monotonic: idle expiry, or the end of its lifetime if sooner
    expires_at: int  # wall clock, for the page
    ends: float = 0.0  # monotonic: the end of its lifetime, however active

    def csrf_ok(self, token: str | None) -> bool:
        # bytes: compare_digest refuses str with non-ASCII characters (a header may carry them)
        return token is not None and secrets.compare_digest(
            token.encode("utf-8", "surrogateescape"), self.csrf.encode()
        )


class Sessions:
    def __init__(
        self,
        secret: str,
        *,
        ttl_s: float,
        max_sessions: int,
        lifetime_s: float | None = None,
        per_key: int = PER_KEY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._ttl = ttl_s
        # None: no limit beyond idling out
        self._lifetime = math.inf if lifetime_s is None else max(ttl_s, lifetime_s)
        self._max = max_sessions
        self._per_key = per_key
        self._clock = clock
        self._open: OrderedDict[str, Session] = OrderedDict()

    @classmethod
    def of(cls, cfg: ConsoleConfig) -> Sessions:
        secret = cfg.session_secret
        return cls(
            secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32),
            ttl_s=cfg.session_ttl_s,
            max_sessions=cfg.max_sessions,
            lifetime_s=cfg.session_lifetime_s,
        )

    @property
    def lifetime_s(self) -> float | None:
        """The longest a session lives, however active (the cookie's Max-Age); None: no
        limit but idling out (a cookie for the browser's session)."""
        return None if math.isinf(self._lifetime) else self._lifetime

    def __len__(self) -> int:
        return len(self._open)

    def open(self, digest: str) -> tuple[str, Session]:
        """A new session for the key with this digest: the cookie's value and the session.
        A key holds at most ``per_key`` sessions (its least recently used one ends first);
        past ``max_sessions`` the least recently used of all ends."""
        mine = [sid for sid, s in self._open.items() if s.digest == digest]
        for sid in mine[: max(0, len(mine) - self._per_key + 1)]:
            del self._open[sid]
        sid = secrets.token_urlsafe(32)
        session = Session(digest, secrets.token_urlsafe(32), 0.0, 0, self._clock() + self._lifetime)
        self._refresh(session)
        self._open[sid] = session
        while len(self._open) > self._max:
            self._open.popitem(last=False)
        return self._signer.dumps(sid), session

    def find(self, cookie: str | None) -> Session | None:
        """The live session the cookie names (its idle time starts again), or None."""
        sid = self._sid(cookie)
        session = self._open.get(sid) if sid is not None else None
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._open[sid]  # type: ignore[arg-type]
            return None
        self._refresh(session)
        self._open.move_to_end(sid)  # type: ignore[arg-type]
        return session

    def close(self, cookie: str | None) -> bool:
        sid = self._sid(cookie)
        return sid is not None and self._open.pop(sid, None) is not None

    def _refresh(self, session: Session) -> None:
        now = self._clock()
        session.expires = min(now + self._ttl, session.ends)
        session.expires_at = int(time.time() + (session.expires - now))

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        try:
            sid = self._signer.loads(cookie)
        except BadSignature:  # a forged or mangled cookie, or another secret's
            return None
        return sid if isinstance(sid, str) else None
