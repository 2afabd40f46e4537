"""An OpenAI-compatible upstream's SSE events and JSON chunks → the typed events of
``protocol.events`` (pure functions; ``openai_compat`` reads the wire)."""

from __future__ import annotations

from typing import Any

from seekport.protocol.events import (
    ContentDelta,
    Event,
    Finish,
    ReasoningDelta,
    RoleDelta,
    TokenLogprob,
    ToolCallDelta,
)

REASONING = b'"reasoning"'


def rename_reasoning(obj: Any, part: str) -> bool:
    """``choices[].<part>.reasoning`` → ``reasoning_content`` (vLLM since late 2025, OpenRouter);
    left alone where the upstream sends ``reasoning_content`` itself. True if changed."""
    changed = False
    choices = obj.get("choices") if isinstance(obj, dict) else None
    for ch in choices if isinstance(choices, list) else []:
        msg = ch.get(part) if isinstance(ch, dict) else None
        if isinstance(msg, dict) and "reasoning" in msg and "reasoning_content" not in msg:
            msg["reasoning_content"] = msg.pop("reasoning")
            changed = True
    return changed


def choice_events(
    ch: dict[str, Any], endpoint: str, part: str, out: list[Event], choice: int
) -> None:
    """Typed events of one upstream choice (chat delta or message, or completion text)."""
    lps = _logprobs(ch.get("logprobs"))
    if endpoint == "completion":
        text = ch.get("text")
        if (isinstance(text, str) and text) or lps:
            out.append(ContentDelta(text if isinstance(text, str) else "", lps, choice=choice))
    else:
        msg = ch.get(part)
        if isinstance(msg, dict):
            if msg.get("role"):
                out.append(RoleDelta(str(msg["role"]), choice=choice))
            thinking = msg.get("reasoning_content") or msg.get("reasoning")
            if isinstance(thinking, str) and thinking:
                out.append(ReasoningDelta(thinking, choice=choice))
            content = msg.get("content")
            if (isinstance(content, str) and content) or lps:
                text = content if isinstance(content, str) else ""
                out.append(ContentDelta(text, lps, choice=choice))
            for i, tc in enumerate(msg.get("tool_calls") or []):
                if isinstance(tc, dict):
                    out.append(_tool_call(tc, i, choice))
    if ch.get("finish_reason"):
        out.append(Finish(str(ch["finish_reason"]), choice=choice))


def _tool_call(tc: dict[str, Any], position: int, choice: int) -> ToolCallDelta:
    fn = tc.get("function")
    if not isinstance(fn, dict):
        fn = {}
    index = tc.get("index")
    return ToolCallDelta(
        index if isinstance(index, int) else position,
        tc.get("id"),
        fn.get("name"),
        str(fn.get("arguments") or ""),
        choice=choice,
    )


def _logprobs(lp: Any) -> list[TokenLogprob] | None:
    """Chat (``{"content": [...]}``) or text-completion logprobs as TokenLogprobs."""
    if not isinstance(lp, dict):
        return None
    out: list[TokenLogprob] = []
    if isinstance(lp.get("content"), list):
        for e in lp["content"]:
            if isinstance(e, dict):
                top = [
                    (t.get("token", ""), t.get("logprob", 0.0)) for t in e.get("top_logprobs") or []
                ]
                out.append(TokenLogprob(str(e.get("token", "")), float(e.get("logprob", 0.0)), top))
    elif isinstance(lp.get("tokens"), list):
        tops = lp.get("top_logprobs") or []
        for i, (tok, value) in enumerate(
            zip(lp["tokens"], lp.get("token_logprobs") or [], strict=False)
        ):
            top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
            out.append(TokenLogprob(str(tok), float(value or 0.0), list(top.items())))
    return out or None


def data_of(event: bytes) -> bytes | None:
    """The joined ``data:`` payload of one SSE event (comments and other fields dropped)."""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
    return b"\n".join(data) if data else None
