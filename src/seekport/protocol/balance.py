"""``GET /user/balance`` in DeepSeek's shape; ``budgets`` (ours) details each budget over the
key. Amounts are decimal strings, as DeepSeek's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BalanceInfo(BaseModel):
    currency: str
    total_balance: str
    granted_balance: str
    topped_up_balance: str


class BudgetState(BaseModel):
    scope: Literal["key", "user", "tenant"]
    id: str
    period: str
    amount: str
    spent: str = Field(description="Spent and reserved by calls under way, this period.")
    remaining: str
    resets_at: int | None = Field(description="Unix time the period ends; None: never.")


class UserBalance(BaseModel):
    is_available: bool = Field(description="False when a budget over the key is spent.")
    balance_infos: list[BalanceInfo] = Field(
        description="The tightest budget's remainder; empty when no budget applies."
    )
    budgets: list[BudgetState] = Field(default_factory=list)
