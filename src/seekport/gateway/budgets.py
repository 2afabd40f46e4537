"""Budgets: money a key, its user and its tenant may spend per period, never overspent.

Before a priced call, each budget over it reserves an upper bound of the call's cost: every
byte of the request's JSON counted as a cache-miss input token (a byte-level tokenizer never
makes more tokens than bytes; the JSON's quoting covers the chat template's own tokens), the
output limit (one is set when the request has none: ``pricing.output_reserve_tokens``), at the
highest price factor of the day. A call is admitted when what is spent plus what is reserved
plus its own reservation fits every budget, decided atomically by the ledger (in-process, or
one Lua script on Redis shared by replicas); when its events close the reservation becomes the
real cost. So concurrent calls cannot overspend. A ledger starts from the period's durable
usage records (their cost), so a restart or a Redis flush forgets nothing that was recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from seekport.config.pricing import PriceTable, PricingConfig, decimal_string
from seekport.errors import InsufficientBalanceError, RateLimitError
from seekport.gateway.auth import Principal
from seekport.protocol.keys import Budget
from seekport.store.kv import Limiter
from seekport.store.protocols import UsageStore

log = logging.getLogger("seekport.budgets")

RESERVATION_LEASE_S = 3600.0  # a reservation of a replica that died is let go after this
LEDGER_SLACK_S = 86_400.0  # a ledger outlives its period by this (late settlements land)


@dataclass(frozen=True, slots=True)
class BudgetScope:
    scope: str  # key, user, tenant
    id: str
    who: str  # "this API key", "your user", "your tenant"
    budget: Budget

    def ledger(self, now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime | None]:
        start, end = self.budget.window(now)
        return f"budget:{self.scope}:{self.id}:{start:%Y%m%d}", start, end


def budget_scopes(who: Principal) -> list[BudgetScope]:
    scopes: list[BudgetScope] = []
    if who.policy.budget is not None:
        scopes.append(BudgetScope("key", who.key_id, "this API key", who.policy.budget))
    if who.user_id is not None and who.user_limits is not None and who.user_limits.budget:
        scopes.append(BudgetScope("user", who.user_id, "your user", who.user_limits.budget))
    if who.tenant_limits.budget is not None:
        scopes.append(BudgetScope("tenant", who.tenant_id, "your tenant", who.tenant_limits.budget))
    return scopes


class Hold:
    """A call's reservations; ``settle`` (once) replaces them with its real cost."""

    __slots__ = ("_keys", "_limiter", "_token", "table")

    def __init__(self, limiter: Limiter, token: str, table: PriceTable) -> None:
        self._limiter = limiter
        self._token = token
        self._keys: list[str] = []
        self.table = table

    async def settle(self, cost: int) -> None:
        keys, self._keys = self._keys, []
        for key in keys:
            await self._limiter.settle(key, self._token, cost)


@dataclass(frozen=True, slots=True)
class Balance:
    scope: BudgetScope
    used: int  # nano-units spent and reserved this period


class Budgets:
    def __init__(self, limiter: Limiter, usage: UsageStore, pricing: PricingConfig) -> None:
        self._limiter = limiter
        self._usage = usage
        self._tables: dict[str | None, PriceTable | None] = {}
        self.pricing = pricing

    @property
    def pricing(self) -> PricingConfig:
        return self._pricing

    @pricing.setter
    def pricing(self, pricing: PricingConfig) -> None:  # a reload's new prices
        self._pricing = pricing
        self._tables = {}

    def _table(self, model: str | None) -> PriceTable | None:
        """The model's price table, kept per model (a pydantic lookup per request is ~5 µs)."""
        try:
            return self._tables[model]
        except KeyError:
            found = self._tables[model] = self._pricing.table(model)
            return found

    def cost(
        self, model: str | None, prompt: int, cached: int, completion: int, when: dt.datetime
    ) -> tuple[int, str] | None:
        """A call's cost in nano-units of its table's currency, or None for an unpriced model."""
        table = self._table(model)
        if table is None:
            return None
        return table.nanos(prompt, cached, completion, table.factor_at(when)), table.currency

    def priced(self, models: list[str]) -> list[PriceTable]:
        return [t for m in models if (t := self._table(m)) is not None]

    async def reserve(
        self,
        who: Principal,
        token: str,
        models: list[str],
        prompt_bytes: int,
        output_tokens: int,
    ) -> Hold | None:
        """Reserve the call's most possible cost on every budget over it, or raise 402: at
        the dearest of ``models`` (the model asked for and those it may fall back to). None:
        no budget applies, or none of them is priced (free)."""
        scopes = budget_scopes(who)
        tables = self.priced(models)
        if not scopes or not tables:
            return None
        amount = max(
            self.pricing.to_accounting(
                t.nanos(prompt_bytes, 0, output_tokens, t.max_factor()), t.currency
            )
            for t in tables
        )
        hold = Hold(self._limiter, token, tables[0])
        now = dt.datetime.now(dt.UTC)
        try:
            for s in scopes:
                key, start, end = s.ledger(now)
                ttl = None if end is None else (end - now).total_seconds() + LEDGER_SLACK_S
                limit = s.budget.nanos()
                r = await self._limiter.reserve(
                    key, token, amount=amount, limit=limit, lease_s=RESERVATION_LEASE_S, ttl_s=ttl
                )
                if r.status == "unseeded":
                    seed = await self._spent(s, start)
                    r = await self._limiter.reserve(
                        key,
                        token,
                        amount=amount,
                        limit=limit,
                        lease_s=RESERVATION_LEASE_S,
                        ttl_s=ttl,
                        seed=seed,
                    )
                if r.degraded:
                    raise RateLimitError(
                        "the budget ledger did not answer, and budgets fail closed; retry shortly",
                        retry_after=1,
                    )
                if r.status != "admitted":
                    raise self._refusal(s, r.used, amount, end)
                hold._keys.append(key)
        except BaseException:
            await hold.settle(0)
            raise
        return hold

    async def balances(self, who: Principal) -> list[Balance]:
        now = dt.datetime.now(dt.UTC)
        out = []
        for s in budget_scopes(who):
            key, start, _ = s.ledger(now)
            used = await self._limiter.used(key)
            if used is None:
                used = await self._spent(s, start)
            out.append(Balance(s, used))
        return out

    async def _spent(self, s: BudgetScope, since: dt.datetime) -> int:
        by_currency = await self._usage.spent(s.scope, s.id, since)
        total = 0
        for currency, nanos in by_currency.items():
            if currency == self.pricing.currency or currency in self.pricing.rates:
                total += self.pricing.to_accounting(nanos, currency)
            else:  # a rate removed from the config since: count it at par, and say so
                log.warning("no rate for %s; counted at par", currency)
                total += nanos
        return total

    def _refusal(
        self, s: BudgetScope, used: int, amount: int, end: dt.datetime | None
    ) -> InsufficientBalanceError:
        cur = self.pricing.currency
        period = "" if s.budget.period == "total" else f"{s.budget.period} "
        left = max(0, s.budget.nanos() - used)
        again = f"; it starts over at {end:%Y-%m-%d %H:%M} UTC" if end is not None else ""
        return InsufficientBalanceError(
            f"Insufficient Balance: {s.who} has {decimal_string(left, 4)} {cur} left of its "
            f"{period}budget of {s.budget.amount} {cur}, and this call may cost up to "
            f"{decimal_string(amount, 4)} {cur}{again}"
        )
