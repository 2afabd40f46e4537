"""Admission under limits: requests per minute, tokens per minute and calls at once, for every
scope a call counts against (its key, its user, its tenant, the model).

Tokens per minute cannot be known before the answer, so admission reserves an estimate (the
request's size in bytes / 4, plus its output limit) and the ticket settles it with the real
count when the call's events close: an over-estimate is given back, an under-estimate charged
(``force``: spent tokens are spent). A refusal by any scope undoes what the scopes before it
took, so a refused call costs no one anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seekport.errors import RateLimitError
from seekport.store.kv import Decision, Limiter

log = logging.getLogger("seekport.limits")

SLOT_LEASE_S = 3600.0  # the longest a concurrency slot outlives a replica that died holding it
DEFAULT_OUTPUT_ESTIMATE = 256  # tokens reserved for an answer whose request sets no limit


@dataclass(frozen=True, slots=True)
class Terms:
    """The limits of one scope. ``scope`` names its counters (``key:<id>``, ``user:<id>``,
    ``tenant:<id>``, ``model:<name>``); ``who`` names it in messages."""

    scope: str
    who: str
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_concurrent is not None


def estimate_tokens(payload_bytes: int, output_limit: int | None) -> int:
    """Tokens to reserve for a call: ~4 bytes of JSON per prompt token (Chinese runs ~3 bytes
    per character, a little under a token each), plus the output limit or a default."""
    return math.ceil(payload_bytes / 4) + (output_limit or DEFAULT_OUTPUT_ESTIMATE)


class Ticket:
    """An admitted call's holdings; ``settle`` (once, when its events close) trues up the
    tokens reserved and gives back its concurrency slots."""

    __slots__ = ("_limiter", "_reserved", "_slots", "_token", "headers")

    def __init__(self, limiter: Limiter | None, token: str) -> None:
        self._limiter = limiter
        self._token = token
        self._reserved: list[tuple[Terms, int]] = []  # (scope, tokens reserved)
        self._slots: list[str] = []
        self.headers: dict[str, str] = {}

    async def settle(self, used_tokens: int) -> None:
        reserved, self._reserved = self._reserved, []
        slots, self._slots = self._slots, []
        if self._limiter is None:
            return
        try:
            for terms, amount in reserved:
                if used_tokens != amount:
                    assert terms.tpm is not None
                    await self._limiter.hit(
                        f"tpm:{terms.scope}",
                        limit=terms.tpm,
                        period_s=60,
                        cost=used_tokens - amount,
                        force=True,
                    )
        finally:
            for key in slots:
                await self._limiter.release_slot(key, self._token)

    async def undo(self, requests: Sequence[Terms]) -> None:
        """A refused call's holdings, given back: its requests, its tokens, its slots."""
        if self._limiter is None:
            return
        for terms in requests:
            assert terms.rpm is not None
            await self._limiter.hit(
                f"rpm:{terms.scope}", limit=terms.rpm, period_s=60, cost=-1, force=True
            )
        await self.settle(0)


class Admission:
    def __init__(self, limiter: Limiter | None) -> None:
        self._limiter = limiter  # None: nothing is limited

    async def admit(
        self, scopes: Sequence[Terms], token: str, estimate: Callable[[], int]
    ) -> Ticket:
        """Charge each scope a request, ``estimate()`` tokens and a slot, or raise 429 with
        ``Retry-After`` and the ``x-ratelimit-*`` headers of the scope that refused."""
        ticket = Ticket(self._limiter, token)
        limiter = self._limiter
        scopes = [s for s in scopes if s.limited]
        if limiter is None or not scopes:
            return ticket
        charged: list[Terms] = []
        try:
            tightest_rpm = await self._requests(limiter, scopes, charged, ticket)
            tightest_tpm = await self._tokens(limiter, scopes, estimate, ticket)
            await self._slots(limiter, scopes, token, ticket)
        except BaseException:
            await ticket.undo(charged)
            raise
        ticket.headers = {**tightest_rpm, **tightest_tpm}
        return ticket

    @staticmethod
    async def _requests(
        limiter: Limiter, scopes: Sequence[Terms], charged: list[Terms], ticket: Ticket
    ) -> dict[str, str]:
        best: tuple[Decision, dict[str, str]] | None = None
        for terms in scopes:
            if terms.rpm is None:
                continue
            d = await limiter.hit(f"rpm:{terms.scope}", limit=terms.rpm, period_s=60)
            headers = _headers("requests", d)
            if not d.allowed:
                raise RateLimitError(
                    f"Rate limit reached: {terms.who} may make {terms.rpm} requests per "
                    f"minute; retry in {math.ceil(d.retry_after_s)} s",
                    retry_after=max(1, math.ceil(d.retry_after_s)),
                    headers={**(best[1] if best else {}), **headers},
                )
            charged.append(terms)
            if best is None or d.remaining < best[0].remaining:
                best = (d, headers)
        return best[1] if best else {}

    @staticmethod
    async def _tokens(
        limiter: Limiter, scopes: Sequence[Terms], estimate: Callable[[], int], ticket: Ticket
    ) -> dict[str, str]:
        best: tuple[Decision, dict[str, str]] | None = None
        wanted: int | None = None
        for terms in scopes:
            if terms.tpm is None:
                continue
            wanted = estimate() if wanted is None else wanted
            amount = min(wanted, terms.tpm)  # a call larger than a minute's worth still fits
            d = await limiter.hit(f"tpm:{terms.scope}", limit=terms.tpm, period_s=60, cost=amount)
            headers = _headers("tokens", d)
            if not d.allowed:
                raise RateLimitError(
                    f"Rate limit reached: {terms.who} may use {terms.tpm} tokens per minute "
                    f"and this request reserves {amount}; retry in "
                    f"{math.ceil(d.retry_after_s)} s",
                    retry_after=max(1, math.ceil(d.retry_after_s)),
                    headers=headers,
                )
            ticket._reserved.append((terms, amount))
            if best is None or d.remaining < best[0].remaining:
                best = (d, headers)
        return best[1] if best else {}

    @staticmethod
    async def _slots(limiter: Limiter, scopes: Sequence[Terms], token: str, ticket: Ticket) -> None:
        for terms in scopes:
            cap = terms.max_concurrent
            if cap is None:
                continue
            key = f"cc:{terms.scope}"
            if not await limiter.acquire_slot(key, token, limit=cap, ttl_s=SLOT_LEASE_S):
                raise RateLimitError(
                    f"Rate limit reached: {terms.who} may make {cap} requests at a time; "
                    "retry when one has finished",
                    retry_after=1,
                )
            ticket._slots.append(key)


def _headers(unit: str, d: Decision) -> dict[str, str]:
    """OpenAI's rate-limit headers for requests or tokens."""
    return {
        f"x-ratelimit-limit-{unit}": str(d.limit),
        f"x-ratelimit-remaining-{unit}": str(d.remaining),
        f"x-ratelimit-reset-{unit}": f"{math.ceil(d.reset_s)}s",
    }
