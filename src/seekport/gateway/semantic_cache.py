"""The semantic cache: the answer to an earlier question that means the same.

Only the question may differ: two requests share a *context* when everything but the last user
message's text is the same (tenant, model, endpoint, system prompt, earlier turns, every
output-shaping parameter, ``max_tokens``) — the exact cache's key with that one text taken out.
Within one context, the last user messages are compared by embedding (the local e5, ``query:``
prefix on both sides: a symmetric task); the nearest earlier one at or above the threshold
gives its exact cache key, whose stored answer is replayed. Their numbers and codes must be
the same as well (embeddings barely tell ``ERR-4021`` from ``ERR-4022``, or 2023 from 2024).
So a tenant never gets another's answer, a different system prompt or temperature never
matches, and a hit replays a real, cleanly finished answer of the same model.

The index lives in this process (each replica learns its own; the answers themselves are in
the shared exact cache): per context, vectors as one matrix; oldest entries dropped beyond
``max_entries``; entries past ``ttl_s`` ignored and pruned.
"""

from __future__ import annotations

import copy
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from seekport.gateway.cache import cache_key

Vector = npt.NDArray[np.float32]
Embed = Callable[[str], Awaitable[Vector]]
MAX_QUESTION_CHARS = 2000  # longer questions are not looked up semantically
_EXACT = re.compile(r"\d+(?:[.,:/-]\d+)*|\b[A-Za-z]+[-_]?\d[\w-]*")


def exact_parts(question: str) -> frozenset[str]:
    """The numbers and codes of a question (``2024``, ``ERR-4021``, ``v2``): embeddings barely
    tell them apart, yet two questions differing in one never share an answer."""
    return frozenset(m.group(0).lower() for m in _EXACT.finditer(question))


def split_question(body: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The body without its question, and the question: the last message's text when it is
    a user message (chat), or the prompt (completions). None: nothing to compare."""
    messages = body.get("messages")
    if isinstance(messages, list):
        if not messages or not isinstance(messages[-1], dict):
            return None
        last = messages[-1]
        if last.get("role") != "user" or not isinstance(last.get("content"), str):
            return None
        rest = copy.copy(body)
        rest["messages"] = [*messages[:-1], {**last, "content": ""}]
        return rest, last["content"]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return {**body, "prompt": ""}, prompt
    return None


@dataclass(slots=True)
class _Context:
    keys: list[str] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    parts: list[frozenset[str]] = field(default_factory=list)
    vectors: Vector = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass(frozen=True, slots=True)
class Lookup:
    """A question looked up: its context and vector (to index it once its answer is
    stored), and the nearest earlier question's key and similarity when one is close enough."""

    context: str
    vector: Vector
    parts: frozenset[str] = frozenset()
    key: str | None = None
    similarity: float | None = None


class SemanticIndex:
    def __init__(self, embed: Embed, *, threshold: float, max_entries: int, ttl_s: float) -> None:
        self._embed = embed
        self.threshold = threshold
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._contexts: OrderedDict[str, _Context] = OrderedDict()
        self._size = 0

    async def lookup(
        self,
        tenant: str,
        model: str,
        endpoint: str,
        body: dict[str, Any],
        max_tokens: int | None,
    ) -> Lookup | None:
        split = split_question(body)
        if split is None or not split[1].strip() or len(split[1]) > MAX_QUESTION_CHARS:
            return None
        rest, question = split
        context = cache_key(tenant, model, endpoint, rest, max_tokens)
        vector = await self._embed(question)
        parts = exact_parts(question)
        found = self._nearest(context, vector, parts)
        if found is None:
            return Lookup(context, vector, parts)
        return Lookup(context, vector, parts, found[0], found[1])

    def _nearest(
        self, context: str, vector: Vector, parts: frozenset[str]
    ) -> tuple[str, float] | None:
        ctx = self._contexts.get(context)
        if ctx is None or not ctx.keys:
            return None
        now = time.monotonic()
        scores = ctx.vectors @ vector
        scores[np.asarray(ctx.expires) < now] = -1.0
        scores[np.asarray([p != parts for p in ctx.parts])] = -1.0
        best = int(np.argmax(scores))
        if float(scores[best]) < self.threshold:
            return None
        self._contexts.move_to_end(context)
        return ctx.keys[best], float(scores[best])

    def add(self, lookup: Lookup, key: str) -> None:
        """Index the question whose answer was just stored under ``key``."""
        ctx = self._contexts.get(lookup.context)
        if ctx is None:
            ctx = self._contexts[lookup.context] = _Context()
        now = time.monotonic()
        alive = [i for i, t in enumerate(ctx.expires) if t >= now]
        if len(alive) != len(ctx.keys):  # drop what has expired on the way
            self._size -= len(ctx.keys) - len(alive)
            ctx.keys = [ctx.keys[i] for i in alive]
            ctx.expires = [ctx.expires[i] for i in alive]
            ctx.parts = [ctx.parts[i] for i in alive]
            ctx.vectors = ctx.vectors[alive] if alive else ctx.vectors[:0]
        row = lookup.vector.reshape(1, -1).astype(np.float32, copy=False)
        ctx.vectors = row if not ctx.keys else np.vstack([ctx.vectors, row])
        ctx.keys.append(key)
        ctx.expires.append(now + self.ttl_s)
        ctx.parts.append(lookup.parts)
        self._size += 1
        self._contexts.move_to_end(lookup.context)
        while self._size > self.max_entries and self._contexts:
            _, old = self._contexts.popitem(last=False)
            self._size -= len(old.keys)

    def __len__(self) -> int:
        return self._size
