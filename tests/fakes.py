"""A scripted stand-in for the llama.cpp runner, for engine tests that need no model.

Each sequence "generates" the pieces of ``script`` in order (token id = index), then EOS.
Steps take ``step_s`` seconds, like a real decode would. ``words=True`` makes a chat prompt
three template tokens plus one token per word of its messages, so tests can send long prompts.
``fail_next()`` makes the next ``execute`` raise, as a broken llama.cpp call would.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Any

from seekport.engine.runners.llamacpp import PreparedPrompt, Sampled
from seekport.engine.scheduler import StepPlan
from seekport.engine.sequence import Sequence

EOS = 10_000


@dataclass(frozen=True, slots=True)
class Chunk:
    """One sequence's share of one executed step."""

    request_id: str
    tokens: int
    prefill: bool  # prompt tokens (else one decode token)


class RunnerFault(RuntimeError):
    """What a FakeRunner told to ``fail_next()`` raises."""


class FakeRunner:
    def __init__(
        self,
        script: list[str] | None = None,
        step_s: float = 0.0,
        *,
        words: bool = False,
        max_num_seqs: int = 16,
        reset_s: float = 0.0,
    ) -> None:
        self.script = script if script is not None else [f"t{i} " for i in range(1000)]
        self.step_s = step_s
        self.words = words
        self.max_num_seqs = max_num_seqs  # what a runner sized from memory would report
        self.started: list[str] = []  # request ids in the order they were first scheduled
        self.ended: list[str] = []
        self.batch_sizes: list[int] = []
        self.steps: list[list[Chunk]] = []  # what each executed step ran
        self.resets = 0
        self.reset_s = reset_s  # how long reset() takes (a real one clears the KV cache)
        self._fail: list[BaseException] = []
        # what LocalBackend asked for: templated (messages, tools), and grammars' schemas
        self.chats: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = []
        self.schemas: list[dict[str, Any] | None] = []
        # each chat's (thinking switch, prefix, prefix_reasoning)
        self.prefixes: list[tuple[bool | None, str | None, str | None]] = []

    # prompt side (LocalBackend)
    def prepare_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        thinking: bool | None = None,
        prefix: str | None = None,
        prefix_reasoning: str | None = None,
    ) -> PreparedPrompt:
        self.chats.append((messages, tools))
        self.prefixes.append((thinking, prefix, prefix_reasoning))
        if not self.words:
            return PreparedPrompt(tokens=[1, 2, 3, 4], stop=[])
        text = " ".join(str(m.get("content") or "") for m in messages)
        return PreparedPrompt([1, 2, 3, *(zlib.crc32(w.encode()) % 9000 for w in text.split())], [])

    def prepare_text(self, prompt: str, suffix: str | None) -> PreparedPrompt:
        return PreparedPrompt(tokens=[1, 2, 3], stop=[])

    def check_schema(self, schema: dict[str, Any] | None) -> None:
        self.schemas.append(schema)

    # engine side
    def fail_next(self, exc: BaseException | None = None) -> None:
        """The next ``execute`` raises ``exc`` (a RunnerFault by default), once."""
        self._fail.append(exc or RunnerFault("injected runner failure"))

    def execute(self, plan: StepPlan) -> list[Sampled]:
        if self.step_s:
            threading.Event().wait(self.step_s)
        if self._fail and plan.work:
            raise self._fail.pop()
        out = []
        self.batch_sizes.append(len(plan.work))
        self.steps.append(
            [
                Chunk(w.seq.request_id, len(w.tokens), w.pos < len(w.seq.prompt_tokens))
                for w in plan.work
            ]
        )
        for w in plan.work:
            if w.pos == w.seq.cached_tokens and w.seq.request_id not in self.started:
                self.started.append(w.seq.request_id)
            if w.sample:
                n = len(w.seq.output_tokens)
                out.append(Sampled(w.seq, n if n < len(self.script) else EOS, []))
        return out

    def end_sequence(self, seq: Sequence) -> None:
        self.ended.append(seq.request_id)

    def reset(self) -> None:
        if self.reset_s:
            threading.Event().wait(self.reset_s)
        self.resets += 1

    def is_eog(self, token: int) -> bool:
        return token == EOS

    def piece(self, token: int) -> bytes:
        return self.script[token].encode()
