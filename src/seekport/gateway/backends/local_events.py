"""The local engine's text deltas → the typed events of ``protocol.events``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from seekport.protocol.events import (
    ContentDelta,
    Event,
    ReasoningDelta,
    TokenLogprob,
    ToolCallDelta,
)

if TYPE_CHECKING:
    from seekport.engine.parsers.reasoning import ReasoningParser
    from seekport.engine.parsers.tools import GenericToolParser, HermesToolParser, ToolCallPiece
    from seekport.engine.sequence import TokenDelta


class EventMaker:
    """Engine deltas → typed events: thinking split off, tool calls parsed out of the text
    (a generic call streams as several ToolCallDeltas: id and name first, then arguments)."""

    def __init__(
        self, parser: ReasoningParser | None, tools: HermesToolParser | GenericToolParser | None
    ) -> None:
        self.parser = parser
        self.tools = tools
        self.reasoning_tokens = 0
        self.tool_calls = 0

    def feed(self, delta: TokenDelta) -> list[Event]:
        lps = [_logprob(e) for e in delta.logprobs] if delta.logprobs else None
        r, c = "", delta.text
        if self.parser is not None:
            self.reasoning_tokens += int(not self.parser.in_content)
            r, c = self.parser.feed(delta.text)
        return self._events(r, c, lps)

    def flush(self) -> list[Event]:
        """What the parsers still hold at the end of generation."""
        r, c = self.parser.flush() if self.parser is not None else ("", "")
        events = self._events(r, c, None)
        if self.tools is not None:
            rest = self.tools.flush()
            content, calls = (rest, []) if isinstance(rest, str) else rest
            if content:
                events.append(ContentDelta(content))
            events.extend(self._calls(calls))
        return events

    def _events(self, r: str, c: str, lps: list[TokenLogprob] | None) -> list[Event]:
        out: list[Event] = []
        if r:
            out.append(ReasoningDelta(r, lps))
            lps = None
        calls: list[ToolCallPiece] = []
        if self.tools is not None and c:
            c, calls = self.tools.feed(c)
        if c or lps:
            out.append(ContentDelta(c, lps))
        out.extend(self._calls(calls))
        return out

    def _calls(self, pieces: list[ToolCallPiece]) -> list[Event]:
        """A call's first piece (it has the name) gets the call's id; its others follow it."""
        out: list[Event] = []
        for p in pieces:
            if p.name is None:
                out.append(ToolCallDelta(p.index, arguments=p.arguments))
                continue
            call_id = "call_" + uuid.uuid4().hex[:24]
            out.append(ToolCallDelta(p.index, call_id, p.name, p.arguments))
            self.tool_calls += 1
        return out


def _logprob(entry: dict[str, Any]) -> TokenLogprob:
    top = sorted(entry["top"].items(), key=lambda kv: -kv[1])
    return TokenLogprob(entry["token"], entry["logprob"], top)
