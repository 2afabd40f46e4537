"""A scripted stand-in for the llama.cpp runner, for engine tests that need no model.

Each sequence "generates" the pieces of ``script`` in order (token id = index), then EOS.
Steps take ``step_s`` seconds, like a real decode would.
"""

from __future__ import annotations

import threading
from typing import Any

from seekport.engine.runners.llamacpp import PreparedPrompt, Sampled
from seekport.engine.scheduler import StepPlan
from seekport.engine.sequence import Sequence

EOS = 10_000


class FakeRunner:
    def __init__(self, script: list[str] | None = None, step_s: float = 0.0) -> None:
        self.script = script if script is not None else [f"t{i} " for i in range(1000)]
        self.step_s = step_s
        self.started: list[str] = []  # request ids in the order they were first scheduled
        self.ended: list[str] = []
        self.batch_sizes: list[int] = []

    # prompt side (LocalBackend)
    def prepare_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> PreparedPrompt:
        return PreparedPrompt(tokens=[1, 2, 3, 4], stop=[])

    def prepare_text(self, prompt: str, suffix: str | None) -> PreparedPrompt:
        return PreparedPrompt(tokens=[1, 2, 3], stop=[])

    def check_schema(self, schema: dict[str, Any] | None) -> None:
        return None

    # engine side
    def execute(self, plan: StepPlan) -> list[Sampled]:
        if self.step_s:
            threading.Event().wait(self.step_s)
        out = []
        self.batch_sizes.append(len(plan.work))
        for w in plan.work:
            if w.pos == w.seq.cached_tokens and w.seq.request_id not in self.started:
                self.started.append(w.seq.request_id)
            if w.sample:
                n = len(w.seq.output_tokens)
                out.append(Sampled(w.seq, n if n < len(self.script) else EOS, []))
        return out

    def end_sequence(self, seq: Sequence) -> None:
        self.ended.append(seq.request_id)

    def is_eog(self, token: int) -> bool:
        return token == EOS

    def piece(self, token: int) -> bytes:
        return self.script[token].encode()
