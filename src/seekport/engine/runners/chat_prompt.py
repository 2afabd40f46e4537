"""What a chat template is rendered with and what follows it: the thinking switch a template
reads, and the text of an assistant prefix to continue (DeepSeek's chat prefix completion)."""

from __future__ import annotations

import re

from seekport.engine.parsers.reasoning import CLOSE, OPEN

_DEFINED_THINKING = re.compile(r"\bthinking\s+is\s+(?:not\s+)?defined\b")


def thinking_switch(template: str | None) -> str | None:
    """The Jinja variable a chat template reads as its thinking switch: ``enable_thinking``
    (Qwen3, SmolLM3), ``thinking`` where the template tests ``thinking is defined``
    (DeepSeek-V3.1); None when it has none (SmolLM2: a request's switch changes nothing)."""
    if not template:
        return None
    if "enable_thinking" in template:
        return "enable_thinking"
    if _DEFINED_THINKING.search(template):
        return "thinking"
    return None


def thinking_kwargs(switch: str | None, thinking: bool | None) -> dict[str, bool]:
    """What the template is rendered with for a request's thinking switch."""
    return {switch: thinking} if switch is not None and thinking is not None else {}


def prefix_text(prompt: str, content: str, reasoning: str | None) -> str:
    """What follows a rendered chat prompt (ending with the template's generation prompt)
    when the last assistant message is a prefix to continue (DeepSeek's chat prefix
    completion). With ``reasoning`` (a thinking model's chain-of-thought prefix) the text is
    inside a think block, opened here unless the generation prompt already opened it, and
    closed only when ``content`` follows. Without, it is the content; a think block the
    generation prompt opened is closed empty first, since the prefix is the answer."""
    opened = prompt.rstrip().endswith(OPEN)
    if reasoning is None:
        return f"{CLOSE}\n\n{content}" if opened else content
    think = reasoning if opened else f"{OPEN}\n{reasoning}"
    return f"{think.rstrip()}\n{CLOSE}\n\n{content}" if content else think
