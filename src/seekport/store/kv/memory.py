"""The in-process limiter: the embedded default (one replica, nothing to run beside it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from seekport.store.kv.base import Decision, Gcra, Reservation

SWEEP_EVERY = 10_000  # keys: past this many, idle keys are swept before a new one is added


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}  # key -> token -> lease end
        self._ledgers: dict[str, _Ledger] = {}

    async def hit(
        self,
        key: str,
        *,
        limit: int,
        period_s: float,
        cost: int = 1,
        burst: int | None = None,
        force: bool = False,
    ) -> Decision:
        gcra = Gcra.of(limit, period_s, burst)
        now = self._clock()
        if key not in self._tat and len(self._tat) >= SWEEP_EVERY:
            self._sweep(now)
        allowed, tat = gcra.step(self._tat.get(key, now), now, cost, force)
        if tat > now:
            self._tat[key] = tat
        else:
            self._tat.pop(key, None)  # back to a full burst: nothing to remember
        return gcra.decision(allowed, tat, now, cost, limit)

    async def acquire_slot(self, key: str, token: str, *, limit: int, ttl_s: float) -> bool:
        now = self._clock()
        held = self._slots.setdefault(key, {})
        for t in [t for t, end in held.items() if end <= now]:
            del held[t]
        if len(held) >= limit and token not in held:
            return False
        held[token] = now + ttl_s
        return True

    async def release_slot(self, key: str, token: str) -> None:
        held = self._slots.get(key)
        if held is not None:
            held.pop(token, None)
            if not held:
                del self._slots[key]

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
        now = self._clock()
        ledger = self._ledger(key, now)
        if ledger is None:
            if seed is None:
                return Reservation("unseeded", 0)
            ledger = self._ledgers[key] = _Ledger(seed, {}, None if ttl_s is None else now + ttl_s)
        used = ledger.used(now)
        if used + amount > limit:
            return Reservation("refused", used)
        ledger.held[token] = (amount, now + lease_s)
        return Reservation("admitted", used + amount)

    async def settle(self, key: str, token: str, amount: int) -> None:
        ledger = self._ledger(key, self._clock())
        if ledger is not None:
            ledger.held.pop(token, None)
            ledger.spent += amount

    async def used(self, key: str) -> int | None:
        now = self._clock()
        ledger = self._ledger(key, now)
        return None if ledger is None else ledger.used(now)

    def _ledger(self, key: str, now: float) -> _Ledger | None:
        ledger = self._ledgers.get(key)
        if ledger is not None and ledger.ends is not None and ledger.ends <= now:
            del self._ledgers[key]
            return None
        return ledger

    async def aclose(self) -> None:
        self._tat.clear()
        self._slots.clear()
        self._ledgers.clear()

    def _sweep(self, now: float) -> None:
        for k in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[k]

    def keys_held(self) -> int:
        return len(self._tat)


@dataclass(slots=True)
class _Ledger:
    spent: int
    held: dict[str, tuple[int, float]]  # token -> (amount, lease end)
    ends: float | None

    def used(self, now: float) -> int:
        for token in [t for t, (_, end) in self.held.items() if end <= now]:
            del self.held[token]
        return self.spent + sum(amount for amount, _ in self.held.values())
