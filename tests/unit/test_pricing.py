"""Price tables: DeepSeek's peak and off-peak windows, cache hits, rounding, rates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from seekport.config.pricing import PriceTable, PricingConfig, decimal_string
from seekport.protocol.keys import Budget

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
FLASH = PriceTable.model_validate(
    {
        "model": "deepseek-flash",
        "input_cache_hit": "0.006",
        "input_cache_miss": "0.30",
        "output": "1.20",
        "factor": "0.5",  # off-peak: everything outside the windows
        "windows": [
            {"days": WEEKDAYS, "start": "01:00", "end": "04:00", "factor": 1},
            {"days": WEEKDAYS, "start": "06:00", "end": "10:00", "factor": 1},
        ],
    }
)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("when", "factor"),
    [
        ("2026-12-02 01:00", "1"),  # Wednesday, peak starts
        ("2026-12-02 03:59", "1"),
        ("2026-12-02 04:00", "0.5"),  # peak ends (exclusive)
        ("2026-12-02 07:30", "1"),
        ("2026-12-02 12:00", "0.5"),
        ("2026-12-05 07:30", "0.5"),  # Saturday: off-peak all day
    ],
)
def test_deepseek_peak_hours_are_full_price_and_the_rest_half(when: str, factor: str) -> None:
    assert FLASH.factor_at(at(when)) == Decimal(factor)


def test_a_call_costs_its_cache_hits_misses_and_output() -> None:
    # 1M prompt tokens of which 400k hit the cache, 100k output, at peak
    nanos = FLASH.nanos(1_000_000, 400_000, 100_000, Decimal(1))
    assert nanos == round((0.006 * 0.4 + 0.30 * 0.6 + 1.20 * 0.1) * 1e9)
    assert FLASH.nanos(1, 0, 0, Decimal("0.5")) == 150  # 0.15 USD per 1M = 150 nano-USD each
    assert FLASH.max_factor() == 1


def test_a_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    t = PriceTable.model_validate(
        {
            "model": "m",
            "input_cache_hit": 0,
            "input_cache_miss": 1,
            "output": 1,
            "windows": [{"days": ["fri"], "start": "22:00", "end": "02:00", "factor": 2}],
        }
    )
    assert t.factor_at(at("2026-12-04 23:00")) == 2  # Friday night
    assert t.factor_at(at("2026-12-05 01:00")) == 2  # Saturday early: Friday's window
    assert t.factor_at(at("2026-12-06 01:00")) == 1  # Sunday early: Saturday had none


def test_tables_in_another_currency_need_a_rate() -> None:
    cny = {
        "model": "m",
        "currency": "CNY",
        "input_cache_hit": 0,
        "input_cache_miss": 2,
        "output": 8,
    }
    with pytest.raises(ValidationError, match=r"pricing\.rates"):
        PricingConfig.model_validate({"currency": "USD", "models": [cny]})
    ok = PricingConfig.model_validate(
        {"currency": "USD", "rates": {"CNY": "0.14"}, "models": [cny]}
    )
    assert ok.to_accounting(1000, "CNY") == 140
    assert ok.to_accounting(1000, "USD") == 1000


def test_budget_periods_are_utc_calendar_periods() -> None:
    now = at("2026-12-02 13:00")  # a Wednesday
    assert Budget(amount=Decimal(1), period="daily").window(now) == (
        at("2026-12-02 00:00"),
        at("2026-12-03 00:00"),
    )
    assert Budget(amount=Decimal(1), period="weekly").window(now)[0] == at("2026-11-30 00:00")
    assert Budget(amount=Decimal(1), period="monthly").window(now) == (
        at("2026-12-01 00:00"),
        at("2027-01-01 00:00"),
    )
    assert Budget(amount=Decimal(1), period="total").window(now)[1] is None
    assert decimal_string(1_999_999_999) == "1.99"  # balances round down


def test_a_model_entrys_own_prices_become_a_flat_table_unless_the_section_has_one() -> None:
    from seekport.config import Settings

    def remote(name: str, **extra: object) -> dict[str, object]:
        return {"name": name, "backend": "openai", "base_url": "http://127.0.0.1:9", **extra}

    s = Settings.model_validate(
        {
            "models": [
                remote("a", pricing={"input_per_1m": 0.27, "output_per_1m": 1.1}),
                remote("b", pricing={"input_per_1m": 9}),
                remote("c"),
            ],
            "pricing": {
                "models": [{"model": "b", "input_cache_hit": 1, "input_cache_miss": 2, "output": 3}]
            },
        }
    )
    a = s.pricing.table("a")
    assert a is not None and (a.input_cache_hit, a.input_cache_miss, a.output) == (
        Decimal("0.27"),
        Decimal("0.27"),
        Decimal("1.1"),
    )
    b = s.pricing.table("b")
    assert b is not None and b.input_cache_miss == 2  # the section's table wins
    assert s.pricing.table("c") is None  # unpriced: free
    with pytest.raises(ValidationError, match="not a served model"):
        Settings.model_validate(
            {
                "models": [remote("a")],
                "pricing": {
                    "models": [
                        {"model": "z", "input_cache_hit": 1, "input_cache_miss": 2, "output": 3}
                    ]
                },
            }
        )
