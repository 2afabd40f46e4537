"""Per-request state of the engine and what it emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seekport.engine.sampling import SamplingParams


@dataclass(slots=True, eq=False)  # identity semantics: sequences live in sets
class Sequence:
    """One generation request. ``prompt_tokens`` are final (template applied, FIM built).

    Invariant while running: the KV cache of ``slot`` holds ``prompt_tokens + output_tokens``
    up to position ``num_computed``; the last sampled token is not in it until decoded.
    """

    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    adapter: int = 0  # the LoRA adapter it runs with (the runner's id; 0: the base alone)
    cached_tokens: int = 0  # prompt tokens whose KV was reused from an earlier request
    completion_tokens: int = 0  # sampled tokens, EOS included (as vLLM counts)
    cancelled: bool = False  # set by the client side; honoured at the next step
    output_tokens: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose KV is in the cache
    slot: int = -1  # llama.cpp seq_id while running, else -1
    finish_reason: str | None = None
    stop_sequence: str | None = None  # the stop string that ended it, if one did
    # another choice of the same request (``n`` > 1) with the same prompt: this sequence is
    # admitted once that one has computed the prompt, and copies its KV instead of recomputing
    after: Sequence | None = None
    # the first choice of such a request: the logits its last prompt token gave, kept for the
    # other choices to sample their first token from (the same row: a batch of another shape
    # may round a near-tie the other way)
    leads: bool = False
    prompt_logits: Any = None

    @property
    def prefilling(self) -> bool:
        return self.num_computed < len(self.prompt_tokens)

    @property
    def kv_need(self) -> int:
        """KV cells this sequence may use at most: its reservation."""
        return len(self.prompt_tokens) + self.params.max_tokens


@dataclass(slots=True)
class TokenDelta:
    """A piece of output text. ``logprobs`` holds OpenAI completion-style entries."""

    text: str
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)
