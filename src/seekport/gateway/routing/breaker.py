"""A circuit breaker per deployment (closed → open → half-open → closed).

Closed, every call passes; the breaker counts failures in a row and the failed share of the
calls in a sliding window (``window_s``, kept as ten buckets, so memory stays fixed whatever
the traffic). It opens after ``consecutive_failures`` failures in a row, or when more than
``error_rate`` of at least ``min_requests`` calls in the window failed — the error rate only
while another deployment of the group is healthy, so a group never ejects its last one for a
rate alone. Open, no call passes until the cooldown ends; then one probe call passes
(half-open). Its success closes the breaker; its failure opens it again for twice the cooldown,
up to ``max_cooldown_s``. A probe whose call never reported back (a client that left) is given
up after ``max_cooldown_s``, so a lost probe cannot keep a deployment out for good.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from seekport.config.routing import BreakerConfig

State = Literal["closed", "open", "half_open"]
BUCKETS = 10


class Breaker:
    def __init__(self, cfg: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self.state: State = "closed"
        self.ejections = 0  # times opened, in all
        self._streak = 0  # ejections since the last close: the cooldown doubles per one
        self._consecutive = 0
        self._open_until = 0.0
        self._probe_since: float | None = None  # a half-open probe under way, since when
        self._width = cfg.window_s / BUCKETS
        self._buckets: deque[list[float]] = deque()  # [start, calls, failures]

    # ---- asking

    def allow(self) -> bool:
        """May a call go to this deployment now? Takes the probe when half-open."""
        if self.state == "closed":
            return True
        now = self._clock()
        if self.state == "open":
            if now < self._open_until:
                return False
            self.state = "half_open"
            self._probe_since = None
        if self._probe_since is not None and now - self._probe_since < self._cfg.max_cooldown_s:
            return False  # one probe at a time
        self._probe_since = now
        return True

    def level(self) -> int:
        """0 closed, 1 half-open, 2 open (the Prometheus gauge); an open breaker whose cooldown
        is over reads half-open."""
        if self.state == "open" and self._clock() >= self._open_until:
            return 1
        return {"closed": 0, "half_open": 1, "open": 2}[self.state]

    # ---- reporting

    def record_success(self) -> None:
        if self.state == "open":
            return  # a call from before the opening: the cooldown stands
        if self.state == "half_open":
            self._close()
            return
        self._consecutive = 0
        self._count(failed=False)

    def record_failure(self, *, others_healthy: bool = True) -> None:
        if self.state == "open":
            return  # a call from before the opening: the cooldown stands
        if self.state == "half_open":
            self._open(self._cooldown(self._streak))  # the probe failed: a longer cooldown
            return
        self._consecutive += 1
        calls, failures = self._count(failed=True)
        if self._consecutive >= self._cfg.consecutive_failures or (
            others_healthy
            and calls >= self._cfg.min_requests
            and failures / calls > self._cfg.error_rate
        ):
            self._open(self._cooldown(self._streak))

    def trip(self, seconds: float) -> None:
        """Keep the deployment out for ``seconds`` (a 402: the account has no balance)."""
        self._open(seconds)

    def release_probe(self) -> None:
        """The probe's call ended without telling success or failure (a client error, a client
        that left): the next call may probe."""
        self._probe_since = None

    # ---- reading

    def snapshot(self) -> dict[str, object]:
        calls, failures = self._totals()
        retry_in = max(0.0, self._open_until - self._clock()) if self.state == "open" else 0.0
        return {
            "state": ("closed", "half_open", "open")[self.level()],
            "consecutive_failures": self._consecutive,
            "window_calls": calls,
            "window_error_rate": round(failures / calls, 4) if calls else 0.0,
            "ejections": self.ejections,
            "retry_in_s": round(retry_in, 3),
        }

    def _size(self) -> int:
        return len(self._buckets)

    # ---- inside

    def _cooldown(self, streak: int) -> float:
        return float(min(self._cfg.cooldown_s * 2**streak, self._cfg.max_cooldown_s))

    def _open(self, seconds: float) -> None:
        self.state = "open"
        self.ejections += 1
        self._streak += 1
        self._open_until = self._clock() + seconds
        self._probe_since = None
        self._consecutive = 0
        self._buckets.clear()

    def _close(self) -> None:
        self.state = "closed"
        self._streak = 0
        self._probe_since = None
        self._consecutive = 0
        self._buckets.clear()

    def _prune(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self._cfg.window_s:
            self._buckets.popleft()

    def _count(self, *, failed: bool) -> tuple[int, int]:
        now = self._clock()
        self._prune(now)
        if not self._buckets or now >= self._buckets[-1][0] + self._width:
            self._buckets.append([now, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += int(failed)
        return self._totals(pruned=True)

    def _totals(self, *, pruned: bool = False) -> tuple[int, int]:
        if not pruned:
            self._prune(self._clock())
        return (int(sum(b[1] for b in self._buckets)), int(sum(b[2] for b in self._buckets)))
