"""Sampling parameters of one sequence (plain dataclass: no validation on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: whole vocabulary (OpenAI semantics)
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None: off; n: top-n alternatives per token
    logit_bias: dict[int, float] | None = None
    json_schema: dict[str, Any] | None = None  # {} means any JSON object
