"""The ``pricing:`` section: what a call costs, for usage records, budgets and balances.

A price table per served model gives prices per 1M tokens for input that hit the context
cache, input that missed it, and output, in the table's currency. ``factor`` scales them, and
time-of-day ``windows`` (in the table's time zone) set another factor while they last:
DeepSeek bills off-peak at half price, i.e. ``factor: 0.5`` with the peak hours as windows of
factor 1. Budgets and balances are kept in ``currency``; a table in another currency needs
its rate in ``rates``. Amounts are counted in nano-units (1e-9 of a currency unit) as
integers, so sums are exact.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=9)]
Factor = Annotated[Decimal, Field(ge=0, le=100)]
NANOS = Decimal(1_000_000_000)
PER_TOKEN = NANOS / Decimal(1_000_000)  # a price per 1M tokens, in nano-units per token


class PriceWindow(BaseModel):
    """A time of day (on some days) with its own price factor; ``end`` before ``start``
    crosses midnight (the part after midnight belongs to the day it started)."""

    model_config = ConfigDict(extra="forbid")

    days: tuple[Day, ...] = Field(default=DAYS, min_length=1, description="Days it applies.")
    start: dt.time = Field(description="From (inclusive), e.g. '01:00'.")
    end: dt.time = Field(description="Until (exclusive), e.g. '04:00'.")
    factor: Factor = Field(description="Multiplies the table's prices while it lasts.")

    def covers(self, local: dt.datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        day = DAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        if t >= self.start:
            return day in self.days
        yesterday = DAYS[(local.weekday() - 1) % 7]
        return t < self.end and yesterday in self.days


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="A served model's name.")
    currency: Currency = Field(default="USD", description="ISO 4217 code of these prices.")
    input_cache_hit: Price = Field(description="Per 1M prompt tokens served from the cache.")
    input_cache_miss: Price = Field(description="Per 1M prompt tokens not in the cache.")
    output: Price = Field(description="Per 1M completion tokens (reasoning included).")
    factor: Factor = Field(default=Decimal(1), description="Outside every window.")
    windows: list[PriceWindow] = Field(default_factory=list, max_length=64)
    timezone: str = Field(default="UTC", description="Zone of the windows' times.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (e.g. UTC, Asia/Shanghai)") from exc
        return v

    def factor_at(self, when: dt.datetime) -> Decimal:
        local = when.astimezone(ZoneInfo(self.timezone))
        for w in self.windows:
            if w.covers(local):
                return w.factor
        return self.factor

    def max_factor(self) -> Decimal:
        return max([self.factor, *(w.factor for w in self.windows)])

    def nanos(self, prompt: int, cached: int, completion: int, factor: Decimal) -> int:
        """The cost in nano-units of this table's currency, rounded up."""
        cached = min(cached, prompt)
        units = (
            self.input_cache_hit * cached
            + self.input_cache_miss * (prompt - cached)
            + self.output * completion
        )
        return int((units * PER_TOKEN * factor).to_integral_value(ROUND_CEILING))


class PricingConfig(BaseModel):
    """Prices per model, the currency budgets and balances are kept in, and exchange rates."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency = Field(
        default="USD", description="The currency of budgets and /user/balance."
    )
    rates: dict[Currency, Annotated[Decimal, Field(gt=0, le=1_000_000)]] = Field(
        default_factory=dict,
        description="Units of `currency` per unit of another, for tables priced in it "
        "(e.g. CNY: 0.14 when `currency` is USD).",
    )
    models: list[PriceTable] = Field(default_factory=list, max_length=10_000)
    output_reserve_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=8192,
        description="Under a budget, a call that sets no max_tokens gets this cap, and its "
        "reservation counts it: a reservation is an upper bound, so no budget is overspent.",
    )

    @model_validator(mode="after")
    def _check(self) -> PricingConfig:
        seen: set[str] = set()
        for t in self.models:
            if t.model in seen:
                raise ValueError(f"pricing: model '{t.model}' has more than one price table")
            seen.add(t.model)
            if t.currency != self.currency and t.currency not in self.rates:
                raise ValueError(
                    f"pricing: '{t.model}' is priced in {t.currency}; add its rate to "
                    f"pricing.rates (units of {self.currency} per {t.currency})"
                )
        return self

    _index: dict[str, PriceTable] = PrivateAttr(default_factory=dict)

    def table(self, model: str | None) -> PriceTable | None:
        """The model's table (looked up per call: an index, rebuilt when tables are added)."""
        if model is None:
            return None
        if len(self._index) != len(self.models):
            self._index = {t.model: t for t in self.models}
        return self._index.get(model)

    def to_accounting(self, nanos: int, currency: str) -> int:
        """An amount in ``currency`` of the accounting currency, rounded up."""
        if currency == self.currency:
            return nanos
        rate = self.rates[currency]
        return int((Decimal(nanos) * rate).to_integral_value(ROUND_CEILING))

    def check_models(self, served: set[str]) -> None:
        unknown = sorted(t.model for t in self.models if t.model not in served)
        if unknown:
            raise ValueError(
                f"pricing: {', '.join(unknown)} is not a served model "
                f"(models: {', '.join(sorted(served))})"
            )


def decimal_string(nanos: int, places: int = 2) -> str:
    """An amount as DeepSeek's balance strings show it ("110.00"), rounded down."""
    q = Decimal(1).scaleb(-places)
    return str((Decimal(nanos) / NANOS).quantize(q, rounding="ROUND_FLOOR"))
