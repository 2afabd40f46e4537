"""The short way to a cache hit: what the service derived from one caller's exact request
bytes, kept so that the same bytes again skip straight to the stored answer.

A cache hit on the long way parses and validates the body, applies the key's output cap, runs
the guard over the request's text, reserves, resolves an alias, computes the cache key, then
decodes the stored answer, bills it as a cache hit and runs the guard over its text. Each of
those is a function of three things only: the request's bytes, the caller's principal (its
key's terms, tenant and limits) and the service's configuration. An entry is made when the long
way finds an exact hit, under (key id, endpoint, a BLAKE2b digest of the bytes), and holds what
those steps gave. It is used only while it was made for the very same principal object (the
key service re-reads a key at least every second: changed terms are a new object) and the
same configuration generation (a reload bumps it). A refused request never gets an entry:
entries are made only on the way to an answer.

What every request still does itself: authentication, admission (limits), budget reservations,
the cache lookup (a stored answer that expired or changed is looked at again), metering,
settlement, the usage record, the guard's counters (counted again from the entry), the content
log. Bounded: bodies over ``MAX_BODY`` bytes get no entry, and the entries' bodies together stay
under ``max_bytes`` (least recently used dropped first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from seekport.gateway.auth import Principal
from seekport.gateway.cache import ResponseCacher
from seekport.gateway.guard.policy import Compiled, Guard, Redaction
from seekport.gateway.metering import from_list
from seekport.gateway.shaping import estimate
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.protocol.events import Event

MAX_BODY = 64 * 1024  # bytes: longer requests take the long way (their fixed cost is small)
MAX_BYTES = 8 * 1024 * 1024  # the entries' request bodies together

Request = ChatCompletionRequest | CompletionRequest
MemoKey = tuple[str, str, bytes]


@dataclass(slots=True)
class Notes:
    """What the long way learns about one request on its way to the cache, in order."""

    raw: bytes
    generation: int  # the service's configuration when the request came
    admitted: tuple[Request, dict[str, Any]]  # as admission saw it (its token estimate)
    redactions: list[str] = field(default_factory=list)  # the guard's, one kind per match
    reserve: tuple[list[str], int, int] | None = None  # budgets.reserve's models, size, limit


@dataclass(slots=True, eq=False)
class Entry:
    principal: Principal
    generation: int
    req: Request  # as the cache key saw it: capped, redacted, through the alias; read only
    body: dict[str, Any]
    key: str  # the response cache's key
    estimate: int
    reserve: tuple[list[str], int, int] | None
    guard: Compiled | None
    redaction: Redaction | None
    redactions: tuple[str, ...]
    size: int
    # the stored answer as this caller gets it (billed as a hit, through the output guard),
    # and the stored bytes it was made from: another value under the key is made again
    source: bytes | None = None
    answer: list[Event] | None = None
    answer_actions: tuple[tuple[str, str], ...] = ()  # the output guard's, counted each time


class HitMemo:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[MemoKey, Entry] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0

    @staticmethod
    def key(who: Principal, kind: str, raw: bytes) -> MemoKey:
        return (who.key_id, kind, hashlib.blake2b(raw, digest_size=16).digest())

    def get(self, who: Principal, kind: str, raw: bytes, generation: int) -> Entry | None:
        if len(raw) > MAX_BODY or not self._entries:
            return None
        k = self.key(who, kind, raw)
        entry = self._entries.get(k)
        if entry is None:
            return None
        if entry.principal is not who or entry.generation != generation:
            self._drop(k)
            return None
        self._entries.move_to_end(k)
        return entry

    def remember(
        self,
        who: Principal,
        kind: str,
        notes: Notes,
        req: Request,
        body: dict[str, Any],
        key: str,
        guard: Compiled | None,
        redaction: Redaction | None,
    ) -> None:
        """An entry for the request ``notes`` followed, now that it found an exact hit."""
        if len(notes.raw) > MAX_BODY:
            return
        entry = Entry(
            principal=who,
            generation=notes.generation,
            req=req,
            body=body,
            key=key,
            estimate=estimate(*notes.admitted),
            reserve=notes.reserve,
            guard=guard,
            redaction=redaction,
            redactions=tuple(notes.redactions),
            size=len(notes.raw),
        )
        k = self.key(who, kind, notes.raw)
        self._drop(k)
        self._entries[k] = entry
        self._bytes += entry.size
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, k: MemoKey) -> None:
        entry = self._entries.pop(k, None)
        if entry is not None:
            self._bytes -= entry.size


async def answer_of(
    entry: Entry, stored: bytes, cacher: ResponseCacher, guard: Guard | None
) -> list[Event] | None:
    """The stored answer as the entry's caller gets it, made once per stored value (decoded,
    billed, through the output guard) and counted as served each time; None for a stored
    value that cannot be read (a miss, counted)."""
    model = entry.req.model
    if entry.answer is None or entry.source != stored:
        events = cacher.decode(stored, model)
        if events is None:
            return None
        actions: list[tuple[str, str]] = []
        if guard is not None and entry.guard is not None and entry.guard.guards_output:
            guarded = guard.answer(
                entry.guard, from_list(events), entry.redaction, lambda k, a: actions.append((k, a))
            )
            events = [ev async for ev in guarded]
        entry.source, entry.answer, entry.answer_actions = stored, events, tuple(actions)
    cacher.served(stored, model, short=True)
    if guard is not None:
        for kind in entry.redactions:
            guard.count(kind, "redact")
        for kind, action in entry.answer_actions:
            guard.count(kind, action)
    return entry.answer
