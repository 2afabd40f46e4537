"""Adapter from the gateway to the in-process engine (the only importer of ``engine``).

Turns a validated request into a Sequence, runs it, and shapes TokenDeltas into OpenAI chat or
text-completion chunks and bodies (orjson; no pydantic per token).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from seekport.config import LocalModelConfig
from seekport.errors import OverloadedError
from seekport.gateway.backends.base import BackendCall
from seekport.gateway.backends.local_requests import (
    reject_unsupported,
    sampling_params,
    template_message,
)
from seekport.gateway.backends.local_shapes import (
    ChunkWriter,
    chat_logprob,
    completion_logprobs,
    tool_call_dicts,
)
from seekport.protocol import sse
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from seekport.engine.async_engine import AsyncEngine
    from seekport.engine.parsers.reasoning import ReasoningParser
    from seekport.engine.parsers.tools import HermesToolParser
    from seekport.engine.runners.llamacpp import LlamaCppRunner
    from seekport.engine.scheduler import StepPlan
    from seekport.engine.sequence import TokenDelta


@dataclass(slots=True)
class _Output:
    """Accumulates one call's output for the non-stream body."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "stop"
    reasoning_tokens: int = 0


def check_model_file(cfg: LocalModelConfig) -> None:
    """Raise ConfigError now if a local model's GGUF cannot be found (before serving)."""
    from seekport.engine.runners.llamacpp import resolve_model_path

    resolve_model_path(cfg.path)


class LocalBackend:
    kind = "local"

    def __init__(
        self, cfg: LocalModelConfig, metrics: Metrics | None = None, runner: Any = None
    ) -> None:
        """``runner``: an already built runner (tests pass a fake one); default llama.cpp."""
        self.model = cfg.name
        self._cfg = cfg
        self._metrics = metrics
        self._runner: LlamaCppRunner | None = runner
        self._engine: AsyncEngine | None = None
        self.fingerprint = "fp_seekport_local"

    async def start(self) -> None:
        from seekport.engine.async_engine import AsyncEngine
        from seekport.engine.runners.llamacpp import LlamaCppRunner, resolve_model_path
        from seekport.engine.scheduler import SchedulerConfig

        cfg = self._cfg
        if self._runner is None:
            path = resolve_model_path(cfg.path)
            self._runner = await asyncio.to_thread(
                LlamaCppRunner,
                path,
                n_ctx=cfg.context_length,
                n_threads=cfg.n_threads,
                kv_cells=cfg.kv_cells,
                max_num_seqs=cfg.max_num_seqs,
                n_batch=cfg.max_step_tokens,
            )
        self._engine = AsyncEngine(
            self._runner,
            SchedulerConfig(
                max_num_seqs=cfg.max_num_seqs,
                max_kv_cells=cfg.kv_cells,
                max_seq_cells=cfg.context_length,
                max_step_tokens=cfg.max_step_tokens,
                max_prefill_while_decoding=cfg.max_prefill_while_decoding,
                max_waiting=cfg.max_waiting,
            ),
            name=self.model,
            on_step=self._observe_step if self._metrics else None,
        )
        if self._metrics is not None:
            m, engine, name = self._metrics, self._engine, self.model
            m.engine_waiting.labels(name).set_function(lambda: engine.num_waiting)
            m.engine_running.labels(name).set_function(lambda: engine.num_running)
            m.engine_kv_cells.labels(name).set_function(lambda: engine.kv_cells_used)

    def _observe_step(self, plan: StepPlan) -> None:
        """Engine thread, after each step: token and batch metrics (prometheus is thread-safe)."""
        assert self._metrics is not None
        if not plan.work:
            return
        m, name = self._metrics, self.model
        decode = plan.num_decode
        m.engine_tokens.labels(name, "decode").inc(decode)
        m.engine_tokens.labels(name, "prefill").inc(plan.num_tokens - decode)
        m.engine_batch.labels(name).observe(len(plan.work))
        for w in plan.work:
            if w.pos == w.seq.cached_tokens and w.seq.cached_tokens:  # first chunk after a hit
                m.engine_prefix_hits.labels(name).inc(w.seq.cached_tokens)

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()
        if self._runner is not None and hasattr(self._runner, "close"):
            self._runner.close()

    def ready(self) -> bool:
        return self._engine is not None

    # ---- request → sequence

    def _sequence(self, call: BackendCall) -> Any:
        """Template, tokenize, validate: CPU work, run off the event loop."""
        from seekport.engine.sequence import Sequence

        assert self._runner is not None
        req = call.request
        assert isinstance(req, ChatCompletionRequest | CompletionRequest)
        reject_unsupported(req, self.model, self._cfg.tool_parser)
        if isinstance(req, ChatCompletionRequest):
            messages = [template_message(m) for m in req.messages]
            tools = (
                [t.model_dump(exclude_none=True) for t in req.tools]
                if req.tools and self._tools_active(req)
                else None
            )
            prepared = self._runner.prepare_chat(messages, tools)
        else:
            prepared = self._runner.prepare_text(req.prompt_text, req.suffix)
        call.stats.prompt_tokens = len(prepared.tokens)
        params = sampling_params(self._cfg, req, len(prepared.tokens), prepared.stop)
        if params.json_schema:
            self._runner.check_schema(params.json_schema)
        return Sequence(request_id=call.request_id, prompt_tokens=prepared.tokens, params=params)

    def _tools_active(self, req: object) -> bool:
        return bool(
            self._cfg.tool_parser
            and isinstance(req, ChatCompletionRequest)
            and req.tools
            and req.tool_choice != "none"
        )

    def _tool_parser(self, call: BackendCall) -> HermesToolParser | None:
        if not self._tools_active(call.request):
            return None
        from seekport.engine.parsers.tools import HermesToolParser

        return HermesToolParser()

    def _parser(self) -> ReasoningParser | None:
        if self._cfg.reasoning != "deepseek-r1":
            return None
        from seekport.engine.parsers.reasoning import ReasoningParser

        return ReasoningParser()

    # ---- serving

    async def complete(self, call: BackendCall) -> bytes:
        assert self._engine is not None
        seq = await asyncio.to_thread(self._sequence, call)
        stream = self._engine.submit(seq)
        out = _Output()
        parser = self._parser() if call.endpoint == "chat" else None
        top_n = getattr(call.request, "top_logprobs", None) or 0
        try:
            async for delta in self._waited(stream):
                if delta is None:
                    continue  # a non-stream body has nothing to send while it waits
                self._account(call, seq, delta)
                self._collect(out, delta, parser, call.endpoint, top_n)
        finally:
            stream.close()
        if parser is not None:
            r, c = parser.flush()
            out.reasoning.append(r)
            out.content.append(c)
        self._finish_stats(call, seq)
        return orjson.dumps(self._body(call, seq, out))

    def _collect(
        self,
        out: _Output,
        delta: TokenDelta,
        parser: ReasoningParser | None,
        endpoint: str,
        top_n: int,
    ) -> None:
        if parser is not None:
            out.reasoning_tokens += int(not parser.in_content)
            r, c = parser.feed(delta.text)
            out.reasoning.append(r)
            out.content.append(c)
        else:
            out.content.append(delta.text)
        if delta.logprobs:
            out.logprobs.extend(
                delta.logprobs
                if endpoint == "completion"
                else [chat_logprob(e, top_n) for e in delta.logprobs]
            )
        if delta.finish_reason:
            out.finish = delta.finish_reason

    def _account(self, call: BackendCall, seq: Any, delta: TokenDelta) -> None:
        if delta.finish_reason == "cancelled":  # the engine is shutting down under us
            raise OverloadedError("the server is shutting down; retry", retry_after=1)
        now = time.perf_counter()
        if call.stats.first_token_at is None and (delta.text or delta.finish_reason):
            call.stats.first_token_at = now
        elif call.stats.last_token_at is not None and self._metrics is not None:
            self._metrics.tpot.labels(self.model).observe(now - call.stats.last_token_at)
        call.stats.last_token_at = now
        if delta.finish_reason:
            call.stats.finish_reason = delta.finish_reason
        call.stats.completion_tokens = seq.completion_tokens

    def _finish_stats(self, call: BackendCall, seq: Any) -> None:
        call.stats.prompt_tokens = len(seq.prompt_tokens)
        call.stats.cached_tokens = seq.cached_tokens
        call.stats.completion_tokens = seq.completion_tokens

    def _usage(self, call: BackendCall, seq: Any, reasoning_tokens: int | None) -> dict[str, Any]:
        p, c, hit = len(seq.prompt_tokens), seq.completion_tokens, seq.cached_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": hit},
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": p - hit,
        }
        if reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return usage

    def _body(self, call: BackendCall, seq: Any, out: _Output) -> dict[str, Any]:
        created = int(time.time())
        cid = "chatcmpl-" + uuid.uuid4().hex
        text = "".join(out.content)
        if call.endpoint == "completion":
            lp = completion_logprobs(out.logprobs, 0) if out.logprobs else None
            return {
                "id": "cmpl-" + uuid.uuid4().hex,
                "object": "text_completion",
                "created": created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": [
                    {"index": 0, "text": text, "logprobs": lp, "finish_reason": out.finish}
                ],
                "usage": self._usage(call, seq, None),
            }
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = out.finish
        tools = self._tool_parser(call)
        if tools is not None:
            content, calls = tools.feed(text)
            content += tools.flush()
            if calls:
                message["content"] = content or None
                message["tool_calls"] = [
                    {k: v for k, v in d.items() if k != "index"} for d in tool_call_dicts(calls)
                ]
                finish = "tool_calls" if finish == "stop" else finish
        reasoning_tokens = None
        if self._cfg.reasoning:
            message["reasoning_content"] = "".join(out.reasoning)
            reasoning_tokens = out.reasoning_tokens
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": {"content": out.logprobs} if out.logprobs else None,
                    "finish_reason": finish,
                }
            ],
            "usage": self._usage(call, seq, reasoning_tokens),
        }

    async def stream(self, call: BackendCall) -> AsyncIterator[bytes]:
        assert self._engine is not None
        seq = await asyncio.to_thread(self._sequence, call)
        stream = self._engine.submit(seq)
        return self._events(call, seq, stream)

    async def _events(self, call: BackendCall, seq: Any, stream: Any) -> AsyncIterator[bytes]:
        chat = call.endpoint == "chat"
        writer = ChunkWriter(
            model=self.model,
            fingerprint=self.fingerprint,
            chat=chat,
            wants_usage=bool(getattr(call.request, "wants_usage_in_stream", False)),
            top_n=getattr(call.request, "top_logprobs", None) or 0,
            parser=self._parser() if chat else None,
            tools=self._tool_parser(call) if chat else None,
        )
        try:
            if chat:
                yield writer.role()
            async for delta in self._waited(stream):
                if delta is None:
                    yield sse.KEEP_ALIVE  # still queued behind other requests
                    continue
                self._account(call, seq, delta)
                event = writer.delta(delta)
                if event:
                    yield event
            tail = writer.flush()
            if tail:
                yield tail
            self._finish_stats(call, seq)
            reasoning = writer.reasoning_tokens if self._cfg.reasoning else None
            yield writer.finish(
                call.stats.finish_reason or "stop", self._usage(call, seq, reasoning)
            )
        finally:
            stream.close()

    def _waited(self, stream: AsyncIterable[TokenDelta]) -> AsyncIterator[TokenDelta | None]:
        cfg = self._cfg
        return _with_keepalive(aiter(stream), cfg.keepalive_interval_s, cfg.max_queue_wait_s)


async def _with_keepalive(
    it: AsyncIterator[TokenDelta], interval_s: float, max_wait_s: float
) -> AsyncIterator[TokenDelta | None]:
    """The deltas of ``it``, with a None every ``interval_s`` until the first one arrives;
    OverloadedError if none has arrived after ``max_wait_s`` (the caller then closes the
    stream, which takes the sequence out of the waiting line).

    Only the wait for a slot can be long; once generation runs, deltas are passed on
    directly (no timer per token).
    """
    first: asyncio.Future[TokenDelta] = asyncio.ensure_future(anext(it))
    deadline = time.monotonic() + max_wait_s
    try:
        while not first.done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise OverloadedError(
                    f"the request waited {max_wait_s:g} s for the local engine without "
                    "starting; retry later",
                    retry_after=1,
                )
            done, _ = await asyncio.wait({first}, timeout=min(interval_s, left))
            if not done and time.monotonic() < deadline:
                yield None
    finally:
        if not first.done():
            first.cancel()
    try:
        yield first.result()
    except StopAsyncIteration:
        return
    async for delta in it:
        yield delta
