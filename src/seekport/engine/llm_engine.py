"""The engine loop body: ``step()`` = schedule → run → postprocess. One thread owns it."""

from __future__ import annotations

from typing import Protocol

from seekport.engine.detokenizer import Detokenizer
from seekport.engine.runners.llamacpp import Sampled
from seekport.engine.scheduler import Scheduler, SchedulerConfig, StepPlan
from seekport.engine.sequence import Sequence, TokenDelta


class BatchRunner(Protocol):
    """What the engine needs from a model runner (llama.cpp today; tests use a fake)."""

    def execute(self, plan: StepPlan) -> list[Sampled]: ...

    def end_sequence(self, seq: Sequence) -> None: ...

    def is_eog(self, token: int) -> bool: ...

    def piece(self, token: int) -> bytes: ...

    def reset(self) -> None:
        """Forget every sequence (sampler chains, KV cache): after a failed step."""


class LLMEngine:
    def __init__(self, runner: BatchRunner, cfg: SchedulerConfig) -> None:
        self.runner = runner
        self.scheduler = Scheduler(cfg)
        self._detok: dict[Sequence, Detokenizer] = {}
        self.last_plan = StepPlan()

    def add(self, seq: Sequence) -> None:
        """Queue ``seq``; if it raises, the engine holds nothing of ``seq``."""
        detok = Detokenizer(seq.params.stop)
        self.scheduler.add(seq)
        self._detok[seq] = detok

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[tuple[Sequence, TokenDelta]]:
        plan = self.scheduler.schedule()
        self.last_plan = plan
        events = [(seq, self._end(seq, "cancelled")) for seq in plan.aborted]
        sampled = self.runner.execute(plan)
        self.scheduler.complete(plan)
        events.extend((s.seq, self._postprocess(s)) for s in sampled)
        return events

    def _postprocess(self, s: Sampled) -> TokenDelta:
        seq, token = s.seq, s.token
        seq.completion_tokens += 1
        detok = self._detok[seq]
        if self.runner.is_eog(token):
            text, reason = detok.flush(), "stop"
        else:
            seq.output_tokens.append(token)  # decoded by the next step
            text = detok.feed(self.runner.piece(token))
            reason = None
            if detok.stopped:
                reason = "stop"
                seq.stop_sequence = detok.matched
            elif seq.completion_tokens >= seq.params.max_tokens:
                text += detok.flush()
                reason = "length"
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self._end(seq, reason)
        return TokenDelta(text, reason, s.logprobs)

    def _end(self, seq: Sequence, reason: str) -> TokenDelta:
        self.runner.end_sequence(seq)
        self._detok.pop(seq, None)
        return TokenDelta("", reason)
