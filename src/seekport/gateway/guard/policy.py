"""The guard as a policy over a call: the request's text checked before it leaves (personal
data allowed, redacted or blocked; sensitive words blocked), and the answer's text checked as
it streams (personal data redacted, the caller's redacted values restored, a sensitive word
ending the answer with ``finish_reason: "content_filter"``).

Streamed text is held back a little (``HOLDBACK`` characters, or back to the start of a match
that is not complete yet) so that a phone number, a placeholder or a word split across chunks
is still seen whole; it is scanned once ``BATCH`` more characters have come, and what is held
back goes out with a later chunk or at the answer's end.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import ahocorasick

from seekport.config.guard import GuardConfig, GuardPolicy
from seekport.errors import InvalidRequestError
from seekport.gateway.guard.pii import Detector, Match
from seekport.protocol.events import ContentDelta, Event, Finish, ReasoningDelta, ToolCallDelta
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.guard")
HOLDBACK = 64  # characters of streamed text held back at most (longer matches may split)
BATCH = 32  # characters past the holdback that are scanned and let out together
NAMES = {
    "email": "an e-mail address",
    "phone_cn": "a mobile phone number",
    "id_cn": "a resident ID number",
    "bank_card": "a bank card number",
    "ipv4": "an IPv4 address",
    "ipv6": "an IPv6 address",
}


class Words:
    """Sensitive words of named lists, found case-insensitively in one pass (Aho-Corasick)."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self._auto: Any = ahocorasick.Automaton()
        self.longest = 0
        for name, words in lists.items():
            for w in words:
                key = w.casefold()
                self._auto.add_word(key, (name, len(key)))
                self.longest = max(self.longest, len(key))
        self.empty = self.longest == 0
        if not self.empty:
            self._auto.make_automaton()

    def first(self, text: str) -> tuple[str, int] | None:
        """(list name, start) of the earliest listed word in ``text``, or None."""
        if self.empty:
            return None
        best: tuple[str, int] | None = None
        for end, (name, length) in self._auto.iter(text.casefold()):
            start = end - length + 1
            if best is None or start < best[1]:
                best = (name, start)
        return best


@dataclass
class Compiled:
    policy: GuardPolicy
    detector: Detector
    words: Words

    @classmethod
    def of(cls, policy: GuardPolicy) -> Compiled:
        return cls(
            policy, Detector(policy.pii.kinds, policy.pii.custom), Words(policy.words.words())
        )

    def action(self, kind: str) -> str:
        return self.policy.pii.actions.get(kind, self.policy.pii.input)

    @property
    def guards_output(self) -> bool:
        p = self.policy
        return (
            p.pii.output == "redact"
            or p.pii.restore
            or (p.words.output == "block" and not self.words.empty)
        )


@dataclass
class Redaction:
    """One request's placeholders: the same value gets the same one, numbered per kind."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def placeholder(self, kind: str, value: str) -> str:
        known = self.by_value.get((kind, value))
        if known is not None:
            return known
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        mark = f"[{kind.upper()}_{n}]"
        self.by_value[(kind, value)] = mark
        self.values[mark] = value
        return mark


class Guard:
    def __init__(self, config: GuardConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self._metrics = metrics
        self._default = Compiled.of(config)
        self._tenants = {t: Compiled.of(p) for t, p in config.tenants.items()}
        self._models = {m: Compiled.of(p) for m, p in config.models.items()}
        self._named = {n: Compiled.of(p) for n, p in config.policies.items()}

    def policy_for(
        self, tenant_id: str | None, model: str, named: str | None = None
    ) -> Compiled | None:
        """A key's named policy (``off``: none), else its tenant's, its model's, the default.
        A name the config does not hold falls through to the rest (and is logged)."""
        if not self.config.enabled or named == "off":
            return None
        if named is not None:
            if named in self._named:
                return self._named[named]
            log.warning("a key names an unknown guard policy", extra={"fields": {"name": named}})
        if tenant_id is not None and tenant_id in self._tenants:
            return self._tenants[tenant_id]
        return self._models.get(model, self._default)

    # ---- the request

    def check_request(
        self, policy: Compiled, body: dict[str, Any], redactions: list[str] | None = None
    ) -> tuple[dict[str, Any], Redaction | None]:
        """Block (400) or redact the request's text: the body the model gets (``body`` itself
        when nothing was redacted, else a redacted copy) and the request's placeholders, or
        None when nothing was redacted (``redactions``: the kinds redacted, one per match)."""
        texts = list(_texts(body))
        if policy.policy.words.input == "block":
            for _, text in texts:
                hit = policy.words.first(text)
                if hit is not None:
                    self.count("words", "block")
                    raise InvalidRequestError(
                        f"the request contains a word of the blocked list '{hit[0]}'",
                        param="messages" if "messages" in body else "prompt",
                        code="content_blocked",
                    )
        redaction = Redaction()
        redacted: list[tuple[int, str]] = []  # (which text, its redacted form)
        for i, (_, text) in enumerate(texts):
            matches = [m for m in policy.detector.find(text) if policy.action(m.kind) != "allow"]
            for m in matches:
                if policy.action(m.kind) == "block":
                    self.count(m.kind, "block")
                    raise InvalidRequestError(
                        f"the request contains {NAMES.get(m.kind, 'data of kind ' + m.kind)}, "
                        "which this gateway's guard does not let through",
                        param="messages" if "messages" in body else "prompt",
                        code="pii_blocked",
                    )
            if matches:
                for m in matches:
                    self.count(m.kind, "redact")
                if redactions is not None:
                    redactions.extend(m.kind for m in matches)
                redacted.append(
                    (i, _replace(text, matches, lambda m: redaction.placeholder(m.kind, m.value)))
                )
        if not redacted:
            return body, None
        body = copy.deepcopy(body)  # the caller's body stays as it came
        setters = [setter for setter, _ in _texts(body)]
        for i, text in redacted:
            setters[i](text)
        return body, redaction if redaction.values else None

    # ---- the answer

    def answer(
        self,
        policy: Compiled,
        events: AsyncIterator[Event],
        redaction: Redaction | None,
        count: Callable[[str, str], None] | None = None,
    ) -> AsyncIterator[Event]:
        """The answer's events guarded (``count``: where its actions are counted; the
        guard's counters by default)."""
        restore = redaction if policy.policy.pii.restore else None
        return _Answer(policy, events, restore, count or self.count)

    def count(self, kind: str, action: str) -> None:
        """One action on ``guard_actions`` (a cache hit taken the short way, ``hit_memo``,
        counts its entry's again)."""
        if self._metrics is not None:
            self._metrics.child(self._metrics.guard_actions, kind, action).inc()


def _replace(text: str, matches: list[Match], mark: Any) -> str:
    out, at = [], 0
    for m in matches:
        out.append(text[at : m.start])
        out.append(mark(m))
        at = m.end
    out.append(text[at:])
    return "".join(out)


def _texts(body: dict[str, Any]) -> Any:
    """(setter, text) for every text a request sends: message contents (strings and text
    parts) and a completion's prompt."""
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            yield (lambda v, m=msg: m.__setitem__("content", v)), content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield (lambda v, p=part: p.__setitem__("text", v)), part["text"]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        yield (lambda v: body.__setitem__("prompt", v)), prompt
    elif isinstance(prompt, list):
        for i, p in enumerate(prompt):
            if isinstance(p, str):
                yield (lambda v, i=i: prompt.__setitem__(i, v)), p


class _Text:
    """One stream of text (a choice's content, or its reasoning) through the guard."""

    def __init__(
        self,
        policy: Compiled,
        restore: dict[str, str] | None,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self._count = count
        self._policy = policy
        self._redact = policy.policy.pii.output == "redact"
        self._words = policy.words if policy.policy.words.output == "block" else None
        self._restore = restore
        self._marks = re.compile("|".join(re.escape(k) for k in restore)) if restore else None
        self._pending = ""
        self.blocked: str | None = None  # the list whose word ended the answer

    def push(self, text: str, final: bool = False) -> str:
        """What of the text so far may go out now (all of it when ``final``)."""
        if self.blocked is not None:
            return ""
        pending = self._pending + text
        if not final and len(pending) < HOLDBACK + BATCH:
            self._pending = pending  # nothing could go out yet: scan once there is a batch
            return ""
        if self._words is not None:
            hit = self._words.first(pending)
            if hit is not None:
                self.blocked = hit[0]
                self._pending = ""
                return self._transform(pending[: hit[1]], final=True)[0]
        if final:
            self._pending = ""
            return self._transform(pending, final=True)[0]
        out, rest = self._transform(pending, final=False)
        self._pending = rest
        return out

    def _transform(self, text: str, *, final: bool) -> tuple[str, str]:
        """(text ready to go out, changed; the tail held back)."""
        cut = len(text) if final else max(0, len(text) - HOLDBACK)
        if self._words is not None and not final:
            cut = min(cut, max(0, len(text) - self._words.longest + 1))
        matches = self._policy.detector.find(text) if self._redact else []
        marks = list(self._marks.finditer(text)) if self._marks is not None else []
        for start, end in [(m.start, m.end) for m in matches] + [m.span() for m in marks]:
            if start < cut < end:
                cut = start
        ready, rest = text[:cut], text[cut:]
        if self._redact:
            done = [m for m in matches if m.end <= cut]
            if self._count is not None:
                for m in done:
                    self._count(m.kind, "redact_output")
            ready = _replace(ready, done, lambda m: f"[{m.kind.upper()}]")
        if self._marks is not None and self._restore is not None:
            restore = self._restore
            ready = self._marks.sub(lambda m: restore[m.group(0)], ready)
        return ready, rest


class _Answer:
    """The answer's events with their text guarded, per choice; a choice that wrote a
    blocked word ends with ``content_filter`` (its further output is dropped, its usage kept)."""

    def __init__(
        self,
        policy: Compiled,
        events: AsyncIterator[Event],
        redaction: Redaction | None,
        count: Callable[[str, str], None],
    ) -> None:
        self._count = count
        self._policy = policy
        self._events = events
        self._restore = redaction.values if redaction is not None else None
        self._texts: dict[tuple[int, bool], _Text] = {}
        self._queue: list[Event] = []

    def __aiter__(self) -> _Answer:
        return self

    def _text(self, choice: int, reasoning: bool) -> _Text:
        key = (choice, reasoning)
        t = self._texts.get(key)
        if t is None:
            t = self._texts[key] = _Text(self._policy, self._restore, self._count)
        return t

    def _blocked(self, choice: int) -> bool:
        return any(t.blocked for (c, _), t in self._texts.items() if c == choice)

    async def __anext__(self) -> Event:
        while not self._queue:
            ev = await anext(self._events)
            self._queue.extend(self._guard(ev))
        return self._queue.pop(0)

    def _guard(self, ev: Event) -> list[Event]:
        if isinstance(ev, ContentDelta | ReasoningDelta):
            if self._blocked(ev.choice):
                return []
            out = self._text(ev.choice, isinstance(ev, ReasoningDelta)).push(ev.text)
            if not out and ev.text:
                return []
            return [type(ev)(out, ev.logprobs, None, ev.choice)]
        if isinstance(ev, ToolCallDelta):
            return [] if self._blocked(ev.choice) else [ev]
        if isinstance(ev, Finish):
            tail: list[Event] = []
            for reasoning in (True, False):
                t = self._texts.get((ev.choice, reasoning))
                if t is not None:
                    rest = t.push("", final=True)
                    if rest:
                        cls = ReasoningDelta if reasoning else ContentDelta
                        tail.append(cls(rest, None, None, ev.choice))
            if self._blocked(ev.choice):
                self._count("words", "content_filter")
                return [*tail, Finish("content_filter", None, ev.choice)]
            return [*tail, Finish(ev.reason, None, ev.choice, ev.stop_sequence)]
        return [ev]

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
