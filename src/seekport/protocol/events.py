"""The typed events a backend yields for one call: the seam between backends and encoders.

Every backend, local engine or remote upstream, streamed or not, answers a call with the same
sequence::

    RoleDelta? (ReasoningDelta | ContentDelta | ToolCallDelta | KeepAlive)* Finish UsageReport?

per choice: with ``n`` > 1 the choices' events interleave, each carrying its ``choice`` index
(0 for the first and only choice otherwise), and one ``UsageReport`` for the whole call ends it.

Policies (metering, and later retries, cache, guard, budgets) read these objects, never bytes.
One encoder per wire format at the edge turns them into that format; a non-stream response is
the aggregate of the same events.

``raw``: a remote upstream that already speaks our OpenAI format hands its own encoded bytes
along, so an encoder may pass an unchanged stream on without re-serialising it. ``raw`` is the
upstream's bytes that *start* with this event: its whole body (non-stream), or the SSE events
of one read (streams; a usage-only chunk always has its own); ``b""`` marks an event those
bytes already cover; ``None`` means there is nothing to pass on (local output, or an event a
policy made or changed). A policy that changes an event must drop ``raw`` from the whole
stream (the encoder is told so).

Plain slotted dataclasses, not pydantic: a stream makes a few per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seekport.protocol.common import Usage


@dataclass(slots=True)
class TokenLogprob:
    """One sampled token, its log probability and the most likely alternatives."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)  # most likely first


@dataclass(slots=True)
class RoleDelta:
    role: str = "assistant"
    raw: bytes | None = None
    choice: int = 0


@dataclass(slots=True)
class ContentDelta:
    text: str
    logprobs: list[TokenLogprob] | None = None
    raw: bytes | None = None
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    """DeepSeek's ``reasoning_content`` (thinking), streamed before the answer."""

    text: str
    logprobs: list[TokenLogprob] | None = None
    raw: bytes | None = None
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of tool call ``index``: the first piece has ``id`` and ``name``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    raw: bytes | None = None
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: str  # stop | length | tool_calls | content_filter | insufficient_system_resource
    raw: bytes | None = None
    choice: int = 0
    # the stop string that ended the choice, where the backend knows it (the local engine);
    # the Anthropic encoder reports it as ``stop_reason: "stop_sequence"``
    stop_sequence: str | None = None


@dataclass(slots=True)
class UsageReport:
    usage: Usage
    raw: bytes | None = None


@dataclass(slots=True)
class KeepAlive:
    """Nothing to say yet (queued, or the upstream sent a comment): keep the line open."""

    raw: bytes | None = None


Event = RoleDelta | ContentDelta | ReasoningDelta | ToolCallDelta | Finish | UsageReport | KeepAlive
OUTPUT = (ContentDelta, ReasoningDelta, ToolCallDelta)


def has_output(ev: object) -> bool:
    """Whether an event carries generated output (text, thinking or a tool call)."""
    if isinstance(ev, ContentDelta | ReasoningDelta):
        return bool(ev.text)
    return isinstance(ev, ToolCallDelta)


def logprob_dict(lp: TokenLogprob, top_n: int) -> dict[str, Any]:
    """OpenAI chat ``logprobs.content[]`` entry."""
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in lp.top[:top_n]
        ],
    }


# ---- a call's events as bytes (the response cache stores them; ``raw`` is never kept)

_KINDS: dict[str, type] = {
    "role": RoleDelta,
    "content": ContentDelta,
    "reasoning": ReasoningDelta,
    "tool": ToolCallDelta,
    "finish": Finish,
    "usage": UsageReport,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def _lp(lp: TokenLogprob) -> list[Any]:
    return [lp.token, lp.logprob, [list(t) for t in lp.top]]


def dump_events(events: list[Event]) -> list[dict[str, Any]]:
    """JSON-ready dicts of the events (keep-alives and ``raw`` left out)."""
    out: list[dict[str, Any]] = []
    for ev in events:
        name = _NAMES.get(type(ev))
        if name is None:
            continue
        if isinstance(ev, UsageReport):
            out.append({"k": name, "usage": ev.usage.model_dump(exclude_none=True)})
            continue
        d: dict[str, Any] = {"k": name}
        for f in ev.__slots__:
            if f == "raw":
                continue
            value = getattr(ev, f)
            if f == "logprobs" and value is not None:
                value = [_lp(lp) for lp in value]
            d[f] = value
        out.append(d)
    return out


def load_events(items: list[dict[str, Any]]) -> list[Event]:
    """The events ``dump_events`` made (``raw`` None: an encoder serialises them itself)."""
    events: list[Event] = []
    for d in items:
        fields = dict(d)
        cls = _KINDS[fields.pop("k")]
        if cls is UsageReport:
            events.append(UsageReport(Usage.model_validate(fields["usage"])))
            continue
        if fields.get("logprobs") is not None:
            fields["logprobs"] = [
                TokenLogprob(t, lp, [(a, b) for a, b in top]) for t, lp, top in fields["logprobs"]
            ]
        events.append(cls(**fields))
    return events
