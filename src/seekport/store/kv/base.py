"""The limiter seam: rate decisions (GCRA) and concurrency slots, in one process or shared.

GCRA (the generic cell rate algorithm, as in ATM networks and ``redis-cell``) keeps one number
per key, the theoretical arrival time (TAT) of the next unit. A limit of ``limit`` units per
``period_s`` spaces units ``T = period_s / limit`` apart; ``burst`` units may arrive at once
(default ``limit``: a full period's worth). A call for ``cost`` units is admitted when
``TAT + cost·T − burst·T ≤ now``; then ``TAT`` moves on by ``cost·T``. So from a standing start a
limit of N per minute admits exactly N at once, then one every ``T`` — never more than ``burst``
ahead of the rate, whichever replica decides, since the whole decision is one atomic step.

``cost`` 0 only asks (would one unit be admitted now?); ``cost`` may be negative (give back
what a reservation over-estimated: tokens per minute are reserved from an estimate at admission
and settled with the real count after); ``force`` charges without refusing (the settlement of
tokens already spent).

Concurrency slots are leases: a slot expires after ``ttl_s`` if its holder never releases it (a
crashed replica), so a limit cannot leak shut.

Spend ledgers (budgets) hold an amount spent and the reservations of calls under way: a call
is admitted when spent + reserved + its reservation stays within the limit, all in one atomic
step; settling replaces its reservation with what it really cost. Reservations are leases as
slots are. A ledger that does not exist yet answers ``unseeded``: the caller sums the period's
durable records and reserves again with that ``seed`` (the first seed wins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

EPSILON_S = 1e-6  # (now + T) - T can exceed now by a rounding error: never refuse for that


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int  # units that could still be admitted now
    retry_after_s: float  # 0 when allowed: when this cost would be admitted
    reset_s: float  # until the key is back to its full burst
    degraded: bool = False  # the shared store did not answer: fail-open/closed decided


@dataclass(frozen=True, slots=True)
class Reservation:
    status: Literal["admitted", "refused", "unseeded"]
    used: int  # spent + reserved, this reservation included when admitted
    degraded: bool = False


class Limiter(Protocol):
    async def hit(
        self,
        key: str,
        *,
        limit: int,
        period_s: float,
        cost: int = 1,
        burst: int | None = None,
        force: bool = False,
    ) -> Decision: ...

    async def acquire_slot(self, key: str, token: str, *, limit: int, ttl_s: float) -> bool:
        """Take one of ``limit`` concurrent slots under ``token``; False when all are taken."""
        ...

    async def release_slot(self, key: str, token: str) -> None: ...

    async def reserve(
        self,
        key: str,
        token: str,
        *,
        amount: int,
        limit: int,
        lease_s: float,
        ttl_s: float | None,
        seed: int | None = None,
    ) -> Reservation:
        """Reserve ``amount`` on the ledger ``key`` under ``token`` if it fits ``limit``;
        ``ttl_s``: how long the ledger lives (its period's end; None: for ever)."""
        ...

    async def settle(self, key: str, token: str, amount: int) -> None:
        """Replace the reservation ``token`` by ``amount`` really spent."""
        ...

    async def used(self, key: str) -> int | None:
        """Spent + reserved on the ledger; None while it does not exist."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Gcra:
    """One GCRA step, shared by the in-process limiter and (as Lua) the Redis one."""

    interval: float  # T: seconds per unit
    tolerance: float  # burst · T

    @classmethod
    def of(cls, limit: int, period_s: float, burst: int | None) -> Gcra:
        if limit < 1 or period_s <= 0:
            raise ValueError("a limit needs limit >= 1 and period_s > 0")
        interval = period_s / limit
        return cls(interval, interval * (burst if burst is not None else limit))

    def step(self, tat: float, now: float, cost: int, force: bool) -> tuple[bool, float]:
        """(admitted, the new TAT); a refused step keeps the old TAT. ``cost`` 0 asks without
        charging: would one more unit be admitted now?"""
        tat = max(tat, now)
        if cost == 0:
            return tat + self.interval - self.tolerance <= now + EPSILON_S, tat
        new_tat = max(now, tat + cost * self.interval)
        if not force and cost > 0 and new_tat - self.tolerance > now + EPSILON_S:
            return False, tat
        return True, new_tat

    def decision(self, allowed: bool, tat: float, now: float, cost: int, limit: int) -> Decision:
        tat = max(tat, now)
        free = self.tolerance - (tat - now)  # seconds of burst left
        remaining = max(0, math.floor(free / self.interval + 1e-9))
        units = max(cost, 1)
        retry = 0.0 if allowed else max(0.0, tat + units * self.interval - self.tolerance - now)
        return Decision(allowed, limit, remaining, retry, max(0.0, tat - now))
