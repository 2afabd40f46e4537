"""Per-request state of the engine and what it emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seekport.engine.sampling import SamplingParams


@dataclass(slots=True, eq=False)  # identity semantics: sequences live in sets
class Sequence:
    """One generation request. ``prompt_tokens`` are final (template applied, FIM built)."""

    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    cached_tokens: int = 0  # prompt tokens whose KV was reused (filled by the runner)
    completion_tokens: int = 0  # sampled tokens, EOS included (as vLLM counts)
    cancelled: bool = False


@dataclass(slots=True)
class TokenDelta:
    """A piece of output text. ``logprobs`` holds OpenAI completion-style entries."""

    text: str
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)
