"""Adapter from the gateway to the in-process engine (the only importer of ``engine``).

Turns a validated request into a Sequence, runs it, and turns its TokenDeltas into the typed
events of ``protocol.events`` (reasoning split, tool calls parsed); the edge encodes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seekport.config import LocalModelConfig
from seekport.errors import ConfigError, InvalidRequestError, OverloadedError
from seekport.gateway.backends.base import BackendCall, OwnedEvents
from seekport.gateway.backends.local_engines import LocalEngines, SharedEngine
from seekport.gateway.backends.local_events import EventMaker
from seekport.gateway.backends.local_requests import (
    chat_prefix,
    reject_unsupported,
    sampling_params,
    template_message,
    warmup_call,
)
from seekport.gateway.backends.local_tools import (
    render_history,
    tool_prompt,
    tool_schema,
    with_tool_prompt,
)
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.common import Usage
from seekport.protocol.completions import CompletionRequest
from seekport.protocol.events import (
    Event,
    Finish,
    KeepAlive,
    RoleDelta,
    UsageReport,
)
from seekport.telemetry.metrics import Metrics

log = logging.getLogger("seekport.engine")

if TYPE_CHECKING:
    from seekport.engine.async_engine import AsyncEngine
    from seekport.engine.parsers.reasoning import ReasoningParser
    from seekport.engine.parsers.tools import GenericToolParser, HermesToolParser
    from seekport.engine.runners.llamacpp import LlamaCppRunner
    from seekport.engine.sequence import TokenDelta


def check_model_file(cfg: LocalModelConfig) -> None:
    """Raise ConfigError now if a local model's GGUF cannot be found (before serving)."""
    from seekport.engine.runners.llamacpp import resolve_model_path

    resolve_model_path(cfg.path)
    if cfg.adapter is not None and not Path(cfg.adapter).expanduser().is_file():
        raise ConfigError(f"models[].adapter: no adapter file at {cfg.adapter}")


class LocalBackend:
    kind = "local"

    def __init__(
        self,
        cfg: LocalModelConfig,
        metrics: Metrics | None = None,
        runner: Any = None,
        *,
        version: str | None = None,
        engines: LocalEngines | None = None,
    ) -> None:
        """``runner``: an already built runner (tests pass a fake one); default llama.cpp.
        ``version``: the registry version (NAME@VERSION) whose file ``cfg.path`` is.
        ``engines``: the server's engines, shared by entries over the same base (default:
        one of this entry's own)."""
        self.model = cfg.name
        self.version = version
        self._cfg = cfg
        self._metrics = metrics
        self._injected = runner
        self._engines = engines if engines is not None else LocalEngines()
        self._shared: SharedEngine | None = None
        self._runner: LlamaCppRunner | None = None
        self._engine: AsyncEngine | None = None
        self._adapter = 0  # the runner's id of this entry's adapter (0: the base alone)
        self.fingerprint: str | None = "fp_seekport_local"
        self.reasoning = cfg.reasoning is not None
        self._closed = False
        self._warm = False  # the engine's warm-up generation has run (start)

    async def start(self) -> None:
        cfg = self._cfg
        shared, new = await self._engines.acquire(cfg, self._metrics, self._injected)
        self._shared, self._runner, self._engine = shared, shared.runner, shared.engine
        try:
            if cfg.adapter is not None:
                self._adapter = await asyncio.to_thread(
                    shared.runner.add_adapter, Path(cfg.adapter), cfg.adapter_scale
                )
            if not new:
                await shared.warm.wait()
            elif self._injected is None:  # an injected runner (a test's) is already warm
                await self._warm_up()
        except BaseException:
            shared.warm.set()  # whoever waits finds the engine as it is
            self._closed = True
            await self._engines.release(shared)
            raise
        shared.warm.set()
        self._warm = True

    async def _warm_up(self) -> None:
        """One short generation before the model takes traffic (``ready`` is false until it
        ends): the engine thread starts, the weights are paged in and the first steps'
        buffers allocated, so the first caller does not pay for them."""
        started = time.perf_counter()
        call = warmup_call(self.model)
        events = await self.generate(call)
        async for _ in events:
            pass
        log.info(
            "model warmed up",
            extra={
                "fields": {
                    "model": self.model,
                    "version": self.version,
                    "ms": round((time.perf_counter() - started) * 1000),
                }
            },
        )

    async def aclose(self) -> None:
        """This entry lets go of its engine; the last entry on it closes it (open calls end
        with 503). Idempotent: a drain on SIGTERM closes first, the lifespan again."""
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:
            await self._engines.release(self._shared)

    def ready(self) -> bool:
        """Started, warmed up, and the engine is not recovering from a failure."""
        return self._warm and self._engine is not None and self._engine.ready

    # ---- request → sequence

    def _sequence(self, call: BackendCall) -> Any:
        """Template, tokenize, validate: CPU work, run off the event loop."""
        from seekport.engine.sequence import Sequence

        assert self._runner is not None
        req = call.request
        assert isinstance(req, ChatCompletionRequest | CompletionRequest)
        reject_unsupported(req, self.model, self._cfg.tool_parser)
        assert self._engine is not None
        slots = self._engine.cfg.max_num_seqs
        if req.choices > slots:
            raise InvalidRequestError(
                f"n is {req.choices}; the local model '{self.model}' runs at most {slots} "
                "sequences at once",
                param="n",
            )
        generic = self._generic_tools(req)
        if isinstance(req, ChatCompletionRequest):
            prefix = chat_prefix(
                req,
                self.model,
                beta=call.beta,
                tool_parser=self._cfg.tool_parser,
                reasoning=self.reasoning,
            )
            text, thought = (prefix.text(), prefix.reasoning_content) if prefix else (None, None)
            messages, tools = self._chat_prompt(req)
            # a template with a thinking switch gets the request's (on to continue a thought);
            # others ignore it
            prepared = self._runner.prepare_chat(
                messages,
                tools,
                True if thought else req.thinking_enabled,
                prefix=text,
                prefix_reasoning=thought or None,
            )
        else:
            prepared = self._runner.prepare_text(req.prompt_text, req.suffix)
        call.stats.prompt_tokens = len(prepared.tokens)
        params = sampling_params(self._cfg, req, len(prepared.tokens), prepared.stop)
        if generic:
            assert isinstance(req, ChatCompletionRequest)
            params.json_schema = tool_schema(req)
            try:
                self._runner.check_schema(params.json_schema)
            except InvalidRequestError as exc:
                raise InvalidRequestError(
                    f"the tools' parameters cannot be compiled into a grammar: {exc}",
                    param="tools",
                ) from exc
        elif params.json_schema:
            self._runner.check_schema(params.json_schema)
        return Sequence(
            request_id=call.request_id,
            prompt_tokens=prepared.tokens,
            params=params,
            adapter=self._adapter,
        )

    def _chat_prompt(
        self, req: ChatCompletionRequest
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The messages and tools the chat template gets. A model with a ``tool_parser`` has a
        template that takes tools; the others get earlier tool calls and results as text and,
        when tools are offered, their description in the system message (generic tools)."""
        prefix = req.messages[-1].prefix  # the model continues it: not in the template
        messages = [template_message(m) for m in req.messages[: -1 if prefix else None]]
        if self._cfg.tool_parser is None:
            messages = render_history(messages)
            if self._generic_tools(req):
                messages = with_tool_prompt(messages, tool_prompt(req))
            return messages, None
        tools = (
            [t.model_dump(exclude_none=True) for t in req.tools]
            if req.tools and self._tools_active(req)
            else None
        )
        return messages, tools

    def _tools_active(self, req: object) -> bool:
        """Tools are offered to the model (``tool_choice`` is not ``none``)."""
        return bool(
            isinstance(req, ChatCompletionRequest) and req.tools and req.tool_choice != "none"
        )

    def _generic_tools(self, req: object) -> bool:
        """Tools offered to a model without a native format: a grammar shapes the answer."""
        return self._cfg.tool_parser is None and self._tools_active(req)

    def _tool_parser(self, call: BackendCall) -> HermesToolParser | GenericToolParser | None:
        if not self._tools_active(call.request):
            return None
        from seekport.engine.parsers.tools import GenericToolParser, HermesToolParser

        return HermesToolParser() if self._cfg.tool_parser else GenericToolParser()

    def _parser(self, req: object) -> ReasoningParser | None:
        if self._cfg.reasoning != "deepseek-r1":
            return None
        from seekport.engine.parsers.reasoning import ReasoningParser

        if isinstance(req, ChatCompletionRequest) and req.messages[-1].prefix:
            # the prompt ends inside the prefix's think block, or after it (then it is all
            # answer): see LlamaCppRunner.prepare_chat
            last = req.messages[-1]
            if last.reasoning_content and not last.text():
                return ReasoningParser(start_in_reasoning=True)
            return None
        return ReasoningParser()

    async def count_prompt_tokens(self, req: ChatCompletionRequest) -> int:
        """The prompt's length in tokens as ``generate`` would template it (Anthropic's
        ``count_tokens``); nothing is generated."""
        if self._runner is None or not self.ready():
            raise OverloadedError(f"model '{self.model}' is not ready yet", retry_after=1)
        runner = self._runner
        messages, tools = self._chat_prompt(req)
        prepared = await asyncio.to_thread(runner.prepare_chat, messages, tools)
        return len(prepared.tokens)

    # ---- serving

    async def generate(self, call: BackendCall) -> AsyncIterator[Event]:
        """Admit the call (a full queue or a bad request raises here) and return its events."""
        assert self._engine is not None
        seq = await asyncio.to_thread(self._sequence, call)
        seqs = [seq, *_further_choices(call, seq)]
        streams = self._engine.submit_all(seqs)

        def release() -> None:
            for stream in streams:
                stream.close()

        return OwnedEvents(self._events(call, seqs, streams), release)

    async def _events(
        self, call: BackendCall, seqs: list[Any], streams: list[Any]
    ) -> AsyncGenerator[Event, None]:
        """The choices' events, interleaved as the engine makes them; one usage at the end
        (the shared prompt counted once, the completions summed)."""
        chat = call.endpoint == "chat"
        makers = [
            EventMaker(
                self._parser(call.request) if chat else None,
                self._tool_parser(call) if chat else None,
            )
            for _ in seqs
        ]
        waited = [self._waited(stream) for stream in streams]
        try:
            if chat:
                for i in range(len(seqs)):
                    yield RoleDelta(choice=i)
            async for i, delta in _merged(waited):
                if delta is None:
                    yield KeepAlive()  # still queued behind other requests
                    continue
                out = makers[i]
                if delta is _ENDED:  # choice i is complete
                    evs = out.flush()
                    finish = seqs[i].finish_reason or "stop"
                    if out.tool_calls and finish == "stop":
                        finish = "tool_calls"
                    evs.append(Finish(finish, stop_sequence=seqs[i].stop_sequence))
                else:
                    self._account(call, delta)
                    evs = out.feed(delta)
                for ev in evs:
                    if not isinstance(ev, UsageReport | KeepAlive):
                        ev.choice = i
                    yield ev
            reasoning = (
                sum(m.reasoning_tokens for m in makers) if self._cfg.reasoning and chat else None
            )
            completion = sum(seq.completion_tokens for seq in seqs)
            hit = seqs[0].cached_tokens
            yield UsageReport(Usage.of(len(seqs[0].prompt_tokens), completion, hit, reasoning))
        finally:
            for stream in streams:
                stream.close()

    def _account(self, call: BackendCall, delta: TokenDelta) -> None:
        if delta.finish_reason == "cancelled":  # the engine is shutting down under us
            raise OverloadedError("the server is shutting down; retry", retry_after=1)
        now = time.perf_counter()
        if call.stats.last_token_at is not None and self._metrics is not None:
            self._metrics.tpot.labels(self.model).observe(now - call.stats.last_token_at)
        call.stats.last_token_at = now

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


_ENDED: Any = object()  # marks the end of one choice in ``_merged``


async def _merged(
    its: list[AsyncIterator[TokenDelta | None]],
) -> AsyncIterator[tuple[int, Any]]:
    """``(i, item)`` from several iterators as their items come, then ``(i, _ENDED)`` when
    iterator ``i`` is exhausted. One iterator is passed through without tasks."""
    if len(its) == 1:
        async for item in its[0]:
            yield 0, item
        yield 0, _ENDED
        return
    pending = {asyncio.ensure_future(anext(it)): i for i, it in enumerate(its)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in sorted(done, key=pending.__getitem__):
                i = pending.pop(fut)
                try:
                    item = fut.result()
                except StopAsyncIteration:
                    yield i, _ENDED
                    continue
                yield i, item
                pending[asyncio.ensure_future(anext(its[i]))] = i
    finally:
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _further_choices(call: BackendCall, first: Any) -> list[Any]:
    """The sequences of choices 1 .. n-1: the first one's prompt, computed once (they wait for
    it and copy its KV, see the scheduler), and each its own sampler (a seed, when given, is
    offset by the choice's index, so seeded choices are reproducible and still differ)."""
    from seekport.engine.sequence import Sequence

    req = call.request
    assert isinstance(req, ChatCompletionRequest | CompletionRequest)
    out = []
    first.leads = req.choices > 1
    for i in range(1, req.choices):
        p = first.params
        params = dataclasses.replace(p, seed=None if p.seed is None else p.seed + i)
        out.append(
            Sequence(
                request_id=call.request_id,
                prompt_tokens=list(first.prompt_tokens),
                params=params,
                adapter=first.adapter,
                after=first,
            )
        )
    return out
