"""Adapter from the gateway to the in-process engine (the only importer of ``engine``).

Turns a validated request into a Sequence, runs it, and shapes TokenDeltas into OpenAI chat or
text-completion chunks and bodies (orjson; no pydantic per token).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from seekport.config import ModelConfig
from seekport.errors import ContextLengthExceededError, InvalidRequestError
from seekport.gateway.backends.base import BackendCall
from seekport.protocol import sse
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest

if TYPE_CHECKING:
    from seekport.engine.async_engine import AsyncEngine
    from seekport.engine.parsers.reasoning import ReasoningParser
    from seekport.engine.runners.llamacpp import LlamaCppRunner
    from seekport.engine.sampling import SamplingParams
    from seekport.engine.sequence import TokenDelta

KEEP_ALIVE_S = 10.0


@dataclass(slots=True)
class _Output:
    """Accumulates one call's output for the non-stream body."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "stop"
    reasoning_tokens: int = 0


def _chat_logprob(entry: dict[str, Any], top_n: int) -> dict[str, Any]:
    tok = entry["token"]
    top = sorted(entry["top"].items(), key=lambda kv: -kv[1])[:top_n]
    return {
        "token": tok,
        "logprob": entry["logprob"],
        "bytes": list(tok.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top
        ],
    }


class LocalBackend:
    kind = "local"

    def __init__(self, cfg: ModelConfig, runner: LlamaCppRunner | None = None) -> None:
        """``runner``: an already built runner (tests pass a fake one); default llama.cpp."""
        self.model = cfg.name
        self._cfg = cfg
        self._runner: LlamaCppRunner | None = runner
        self._engine: AsyncEngine | None = None
        self.fingerprint = "fp_seekport_local"

    async def start(self) -> None:
        from seekport.engine.async_engine import AsyncEngine
        from seekport.engine.runners.llamacpp import LlamaCppRunner, resolve_model_path

        if self._runner is None:
            path = resolve_model_path(self._cfg.path)
            self._runner = await asyncio.to_thread(
                LlamaCppRunner,
                path,
                n_ctx=self._cfg.context_length,
                n_threads=self._cfg.n_threads,
            )
        self._engine = AsyncEngine(self._runner, max_waiting=self._cfg.max_waiting, name=self.model)

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()

    def ready(self) -> bool:
        return self._engine is not None

    @property
    def waiting(self) -> int:
        return self._engine.waiting if self._engine else 0

    # ---- request → sequence

    def _params(
        self, req: ChatCompletionRequest | CompletionRequest, prompt_len: int, stop: list[str]
    ) -> SamplingParams:
        from seekport.engine.sampling import SamplingParams

        cfg = self._cfg
        n_ctx = cfg.context_length
        room = n_ctx - prompt_len
        if room <= 0:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {n_ctx} tokens; your prompt has "
                f"{prompt_len} tokens. Shorten the messages.",
                param="messages",
            )
        asked = req.max_tokens if isinstance(req, CompletionRequest) else req.output_limit
        if asked is not None and prompt_len + asked > n_ctx:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{prompt_len + asked} tokens ({prompt_len} in the prompt, {asked} for "
                f"max_tokens). Reduce the prompt or max_tokens.",
                param="max_tokens",
            )
        default = 16 if isinstance(req, CompletionRequest) else self._cfg.max_output_tokens
        max_tokens = min(asked if asked is not None else default, room, self._cfg.max_output_tokens)
        json_schema: dict[str, Any] | None = None
        logprobs: int | None = None
        logit_bias: dict[int, float] | None = None
        if isinstance(req, ChatCompletionRequest):
            rf = req.response_format
            if rf is not None and rf.type == "json_object":
                json_schema = {}
            elif rf is not None and rf.type == "json_schema":
                schema = (rf.json_schema or {}).get("schema")
                if not isinstance(schema, dict):
                    raise InvalidRequestError(
                        "response_format.json_schema.schema must be an object",
                        param="response_format",
                    )
                json_schema = schema
            if req.logprobs:
                logprobs = max(1, req.top_logprobs or 0)
            if req.logit_bias:
                try:
                    logit_bias = {int(k): v for k, v in req.logit_bias.items()}
                except ValueError as exc:
                    raise InvalidRequestError(
                        "logit_bias keys must be token ids", param="logit_bias"
                    ) from exc
        elif req.logprobs:
            logprobs = req.logprobs
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=cfg.default_temperature if req.temperature is None else req.temperature,
            top_p=cfg.default_top_p if req.top_p is None else req.top_p,
            top_k=cfg.default_top_k if req.top_k is None else req.top_k,
            min_p=cfg.default_min_p if req.min_p is None else req.min_p,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            seed=req.seed,
            stop=[*req.stop_list, *stop],
            logprobs=logprobs,
            logit_bias=logit_bias,
            json_schema=json_schema,
        )

    def _sequence(self, call: BackendCall) -> Any:
        from seekport.engine.sequence import Sequence

        assert self._runner is not None
        req = call.request
        if isinstance(req, ChatCompletionRequest):
            if req.tools and req.tool_choice != "none":
                raise InvalidRequestError(
                    f"model '{self.model}' (local) does not support tools yet", param="tools"
                )
            messages = [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in req.messages
            ]
            prepared = self._runner.prepare_chat(messages)
        else:
            assert isinstance(req, CompletionRequest)
            prepared = self._runner.prepare_text(req.prompt_text, req.suffix)
        params = self._params(req, len(prepared.tokens), prepared.stop)
        if params.json_schema:
            self._runner.check_schema(params.json_schema)
        return Sequence(request_id=call.request_id, prompt_tokens=prepared.tokens, params=params)

    def _parser(self) -> ReasoningParser | None:
        if self._cfg.reasoning != "deepseek-r1":
            return None
        from seekport.engine.parsers.reasoning import ReasoningParser

        return ReasoningParser()

    # ---- serving

    async def complete(self, call: BackendCall) -> bytes:
        assert self._engine is not None
        seq = self._sequence(call)
        stream = self._engine.submit(seq)
        out = _Output()
        parser = self._parser() if call.endpoint == "chat" else None
        top_n = getattr(call.request, "top_logprobs", None) or 0
        async for delta in stream:
            self._account(call, seq, delta)
            self._collect(out, delta, parser, call.endpoint, top_n)
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
                else [_chat_logprob(e, top_n) for e in delta.logprobs]
            )
        if delta.finish_reason:
            out.finish = delta.finish_reason

    def _account(self, call: BackendCall, seq: Any, delta: TokenDelta) -> None:
        if call.stats.first_token_at is None and (delta.text or delta.finish_reason):
            call.stats.first_token_at = time.perf_counter()
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
            lp = None
            if out.logprobs:
                lp = {
                    "tokens": [e["token"] for e in out.logprobs],
                    "token_logprobs": [e["logprob"] for e in out.logprobs],
                    "top_logprobs": [e["top"] for e in out.logprobs],
                    "text_offset": [],
                }
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
                    "finish_reason": out.finish,
                }
            ],
            "usage": self._usage(call, seq, reasoning_tokens),
        }

    async def stream(self, call: BackendCall) -> AsyncIterator[bytes]:
        assert self._engine is not None
        seq = self._sequence(call)
        stream = self._engine.submit(seq)
        return self._events(call, seq, stream)

    async def _events(self, call: BackendCall, seq: Any, stream: Any) -> AsyncIterator[bytes]:
        chat = call.endpoint == "chat"
        created = int(time.time())
        cid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        head = {
            "id": cid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }
        top_n = getattr(call.request, "top_logprobs", None) or 0
        parser = self._parser() if chat else None
        wants_usage = bool(getattr(call.request, "wants_usage_in_stream", False))

        def chunk(
            delta: dict[str, Any] | None,
            finish: str | None = None,
            logprobs: Any = None,
            text: str = "",
        ) -> bytes:
            choice: dict[str, Any] = (
                {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
                if chat
                else {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
            )
            return sse.event(orjson.dumps({**head, "choices": [choice]}))

        it = aiter(stream)
        nxt: asyncio.Future[Any] | None = None
        reasoning_tokens = 0
        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            while True:
                nxt = asyncio.ensure_future(anext(it))
                while not nxt.done():
                    done, _ = await asyncio.wait({nxt}, timeout=KEEP_ALIVE_S)
                    if not done:
                        yield sse.KEEP_ALIVE  # still queued behind other requests
                try:
                    delta = nxt.result()
                except StopAsyncIteration:
                    break
                self._account(call, seq, delta)
                if parser is not None:
                    reasoning_tokens += int(not parser.in_content)
                event = self._delta_events(chunk, delta, parser, top_n, chat)
                if event:
                    yield event
            if parser is not None:
                r, c = parser.flush()
                if r or c:
                    yield chunk({k: v for k, v in (("reasoning_content", r), ("content", c)) if v})
            self._finish_stats(call, seq)
            finish = call.stats.finish_reason or "stop"
            usage = self._usage(call, seq, reasoning_tokens if self._cfg.reasoning else None)
            if chat:
                last = orjson.dumps(
                    {
                        **head,
                        "choices": [
                            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
                        ],
                        "usage": usage if not wants_usage else None,
                    }
                )
                yield sse.event(last)
            else:
                yield chunk(None, finish)
            if wants_usage:
                yield sse.event(orjson.dumps({**head, "choices": [], "usage": usage}))
        finally:
            stream.close()
            if nxt is not None and not nxt.done():
                nxt.cancel()

    def _delta_events(
        self, chunk: Any, delta: TokenDelta, parser: ReasoningParser | None, top_n: int, chat: bool
    ) -> bytes:
        if not chat:
            lp = None
            if delta.logprobs:
                lp = {
                    "tokens": [e["token"] for e in delta.logprobs],
                    "token_logprobs": [e["logprob"] for e in delta.logprobs],
                    "top_logprobs": [e["top"] for e in delta.logprobs],
                    "text_offset": [],
                }
            return chunk(None, None, lp, delta.text) if (delta.text or lp) else b""
        lp = (
            {"content": [_chat_logprob(e, top_n) for e in delta.logprobs]}
            if delta.logprobs
            else None
        )
        if parser is not None:
            r, c = parser.feed(delta.text)
            d = {k: v for k, v in (("reasoning_content", r), ("content", c)) if v}
        else:
            d = {"content": delta.text} if delta.text else {}
        if not d and lp is None:
            return b""
        event: bytes = chunk(d or {"content": ""}, None, lp)
        return event
