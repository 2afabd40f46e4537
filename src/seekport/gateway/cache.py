"""The exact response cache: the same request, from the same tenant, gets the same answer
again without calling the model.

The key is ``<tenant>:<model>:<endpoint>:<sha256 of the canonical request>:<max_tokens>``:
the tenant first, so two tenants never share an entry even for identical requests (the
failure of GHSA-h9ww-f95j-h54c); the canonical request is the body with sorted keys, minus
what does not shape the output (``stream``, ``stream_options``, ``user``, ``metadata``,
``store``). An entry holds the call's typed events, so a stream is replayed as a stream and a
body as a body, with the same event shapes, whichever way it was first asked. Only a call that
ended cleanly is stored: an error, a stream cut short or a client gone stores nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from seekport.config.cache import CacheConfig
from seekport.protocol.common import PromptTokensDetails
from seekport.protocol.events import (
    Event,
    Finish,
    KeepAlive,
    UsageReport,
    dump_events,
    load_events,
)
from seekport.store.kv.cache import ResponseCache
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.gateway.semantic_cache import Lookup, SemanticIndex

log = logging.getLogger("seekport.cache")

IGNORED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "max_tokens",
        "max_completion_tokens",
    }
)
STORED_FINISHES = frozenset({"stop", "length", "tool_calls"})
FORMAT = 1  # bump when the stored shape changes: old entries then miss


def cache_key(
    tenant: str, model: str, endpoint: str, body: dict[str, Any], max_tokens: int | None
) -> str:
    canonical = {k: v for k, v in body.items() if k not in IGNORED}
    digest = hashlib.sha256(
        orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    ).hexdigest()
    return f"{tenant}:{model}:{endpoint}:{digest}:{max_tokens if max_tokens else '-'}"


def deterministic(body: dict[str, Any]) -> bool:
    """One answer is asked for: temperature 0 or a seed (and one choice)."""
    if (body.get("n") or 1) != 1:
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None


class ResponseCacher:
    def __init__(self, store: ResponseCache, config: CacheConfig, metrics: Metrics) -> None:
        self._store = store
        self.config = config
        self._metrics = metrics
        self.semantic: SemanticIndex | None = None  # wired when an embedder exists

    def semantic_for(self, model: str, for_key: bool | None = None) -> SemanticIndex | None:
        """The semantic index, if the config asks for it for this model (``for_key``: the
        key's own switch — false never, true whatever the config and the model)."""
        c = self.config
        if self.semantic is None or for_key is False:
            return None
        if not for_key and (
            not c.semantic or (c.semantic_models and model not in c.semantic_models)
        ):
            return None
        self.semantic.threshold = c.semantic_threshold  # a reload may have changed it
        return self.semantic

    def key_for(
        self,
        tenant: str,
        model: str,
        endpoint: str,
        body: dict[str, Any],
        max_tokens: int | None,
        for_key: bool | None = None,
    ) -> str | None:
        """The request's cache key, or None when it is not to be cached (``for_key``: the
        key's own switch — false never, true whatever the model; unset, the tenant's)."""
        c = self.config
        if for_key is None:
            for_key = c.tenants.get(tenant)
        if not c.enabled or for_key is False:
            return None
        if c.models and model not in c.models and not for_key:
            return None
        if c.deterministic_only and not deterministic(body):
            return None
        return cache_key(tenant, model, endpoint, body, max_tokens)

    async def replay(self, key: str, model: str, *, semantic: bool = False) -> list[Event] | None:
        """The stored events for ``key`` (their usage as ``billing`` says), or None."""
        raw = await self._store.get(key)
        if raw is None:
            if not semantic:  # the exact lookup's miss is the one counted
                self._metrics.child(self._metrics.cache_lookups, model, "miss").inc()
            return None
        events = self.decode(raw, model)
        if events is not None:
            self.served(raw, model, semantic=semantic)
        return events

    async def stored(self, key: str) -> bytes | None:
        """The stored value under ``key`` as it is, counting nothing (``hit_memo``'s look)."""
        return await self._store.get(key)

    def served(
        self, raw: bytes, model: str, *, semantic: bool = False, short: bool = False
    ) -> None:
        """Count a stored answer served (``short``: the short way, ``hit_memo``)."""
        kind = "semantic_hit" if semantic else "hit"
        self._metrics.child(self._metrics.cache_lookups, model, kind).inc()
        if short:
            self._metrics.child(self._metrics.cache_short_hits, model).inc()
        self._metrics.child(self._metrics.cache_bytes, "served").inc(len(raw))

    def decode(self, raw: bytes, model: str) -> list[Event] | None:
        """A stored value's events, billed as ``billing`` says; None (a miss, counted) for an
        entry that cannot be read."""
        try:
            stored = orjson.loads(raw)
            if stored.get("v") != FORMAT:
                raise ValueError("an entry of another format")
            events = load_events(stored["events"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable cache entry: a miss", extra={"fields": {"model": model}})
            self._metrics.child(self._metrics.cache_lookups, model, "miss").inc()
            return None
        if self.config.billing == "cache_hit":
            for ev in events:
                if isinstance(ev, UsageReport):
                    _as_cache_hit(ev)
        return events

    def recording(
        self, key: str, events: AsyncIterator[Event], lookup: Lookup | None = None
    ) -> _Recording:
        """The events, stored under ``key`` when they end cleanly (and the question indexed
        for the semantic cache, when it was looked up)."""
        return _Recording(self, key, events, lookup)

    async def store(self, key: str, events: list[Event], lookup: Lookup | None = None) -> None:
        value = orjson.dumps({"v": FORMAT, "events": dump_events(events)})
        if len(value) > self.config.max_entry_bytes:
            return
        if lookup is not None and self.semantic is not None:
            self.semantic.add(lookup, key)
        await self._store.set(key, value, self.config.ttl_s)
        self._metrics.child(self._metrics.cache_bytes, "stored").inc(len(value))
        self._metrics.cache_memory_bytes.set(self._store.bytes_held())


def _as_cache_hit(ev: UsageReport) -> None:
    """DeepSeek's billing of a context-cache hit: the whole prompt came from the cache."""
    u = ev.usage.model_copy()
    u.prompt_cache_hit_tokens = u.prompt_tokens
    u.prompt_cache_miss_tokens = 0
    u.prompt_tokens_details = PromptTokensDetails(cached_tokens=u.prompt_tokens)
    ev.usage = u


class _Recording:
    """The backend's events, passed on unchanged and kept; stored when they end cleanly."""

    __slots__ = ("_cacher", "_events", "_finished", "_kept", "_key", "_lookup", "_stored")

    def __init__(
        self,
        cacher: ResponseCacher,
        key: str,
        events: AsyncIterator[Event],
        lookup: Lookup | None = None,
    ) -> None:
        self._cacher = cacher
        self._lookup = lookup
        self._key = key
        self._events = events
        self._kept: list[Event] = []
        self._finished = True  # every Finish seen so far was one worth keeping
        self._stored = False

    def __aiter__(self) -> _Recording:
        return self

    async def __anext__(self) -> Event:
        try:
            ev = await anext(self._events)
        except StopAsyncIteration:
            await self._store()
            raise
        if isinstance(ev, Finish) and ev.reason not in STORED_FINISHES:
            self._finished = False
        if not isinstance(ev, KeepAlive):
            self._kept.append(ev)
        return ev

    async def _store(self) -> None:
        done = any(isinstance(ev, Finish) for ev in self._kept)
        if self._stored or not done or not self._finished:
            return
        self._stored = True
        try:
            await self._cacher.store(self._key, self._kept, self._lookup)
        except Exception:  # a cache that cannot store is a cache that misses
            log.exception("answer not cached")

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
