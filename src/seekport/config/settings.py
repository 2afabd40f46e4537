"""The typed settings tree. Every field has a default, bounds and a description.

Sources, highest priority first: CLI flags, ``SEEKPORT_<FIELD>`` env vars (nested fields:
``SEEKPORT_MODELS__0__N_THREADS``), the YAML file (``--config`` or ``SEEKPORT_CONFIG``), the
defaults below. A ``models[]`` entry is one of the classes of ``ModelConfig`` (``models.py``),
chosen by its ``backend``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from seekport.config.audit_stream import AuditStreamConfig
from seekport.config.backup import BackupConfig
from seekport.config.cache import CacheConfig
from seekport.config.console import ConsoleConfig
from seekport.config.content_log import ContentLogConfig
from seekport.config.guard import GuardConfig
from seekport.config.knowledge import KnowledgeConfig
from seekport.config.models import (
    BUNDLED_EMBEDDING_NAME,
    BUNDLED_MODEL_NAME,
    LocalModelConfig,
    ModelConfig,
    patch_entries,
)
from seekport.config.pricing import PricingConfig
from seekport.config.routing import RoutingConfig
from seekport.config.tracing import TracingConfig
from seekport.protocol.keys import Limits

_ASYNC_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


_ALIAS_FIXED_FORBIDDEN = ("model", "messages", "prompt", "stream")


class AliasConfig(BaseModel):
    """One ``aliases[]`` entry: a public model name served by another model with fixed
    parameters (e.g. the retired ``deepseek-chat`` as ``deepseek-flash`` without thinking)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.:/-]+$")] = Field(
        description="The public model id clients send (listed in /models like a model)."
    )
    model: str = Field(description="The served model it stands for: a `models[].name`.")
    thinking: Literal["enabled", "disabled"] | None = Field(
        default=None,
        description="Fixed `thinking: {type: ...}` of every request through the alias "
        "(overrides the client's).",
    )
    reasoning_effort: (
        Literal["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"] | None
    ) = Field(
        default=None,
        description="Fixed `reasoning_effort` of every request through the alias (overrides "
        "the client's).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Other fixed request fields, merged over the client's body (e.g. "
        "`{temperature: 0}`); not model, messages, prompt or stream.",
    )

    @field_validator("params")
    @classmethod
    def _no_routing_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if k in _ALIAS_FIXED_FORBIDDEN]
        if bad:
            raise ValueError(f"params may not fix {', '.join(bad)}")
        return v

    def fixed(self) -> dict[str, Any]:
        """The body fields every request through the alias gets (over the client's)."""
        out = dict(self.params)
        if self.thinking is not None:
            out["thinking"] = {"type": self.thinking}
        if self.reasoning_effort is not None:
            out["reasoning_effort"] = self.reasoning_effort
        return out


def _default_models() -> list[ModelConfig]:
    return [
        LocalModelConfig(name=BUNDLED_MODEL_NAME, backend="local", path="bundled"),
        LocalModelConfig(
            name=BUNDLED_EMBEDDING_NAME, backend="local", kind="embedding", path="bundled"
        ),
    ]


class Settings(BaseSettings):
    """All of seekport's settings. Env vars: ``SEEKPORT_<FIELD>`` (e.g. SEEKPORT_PORT=9000);
    nested fields join their path with ``__`` (``SEEKPORT_MODELS__0__N_THREADS=2``)."""

    model_config = SettingsConfigDict(
        env_prefix="SEEKPORT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    host: str = Field(
        default="127.0.0.1",
        description="Bind address. Loopback by default; set 0.0.0.0 to expose it deliberately.",
    )
    port: Annotated[int, Field(ge=0, le=65535)] = Field(default=8000, description="TCP port.")
    data_dir: Path = Field(
        default=Path("~/.seekport"),
        description="Holds the SQLite database (usage records, keys) and logs/<model>.log, "
        "the output of managed engines.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Where models converted on first use are kept (the bundled embedder's "
        "ONNX file, ~115 MB). Default: data_dir/models.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default SQLite in data_dir. "
        "e.g. postgresql+asyncpg://127.0.0.1:5432/test",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for state shared by replicas (rate limits, concurrency), e.g. "
        "`redis://127.0.0.1:6379/0`; unset: in-process state (one replica).",
    )
    redis_fail_open: bool = Field(
        default=True,
        description="When Redis does not answer: admit requests (true) or refuse them with "
        "503 and `Retry-After` (false). Either way a warning is logged.",
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
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=8.0,
        description="On SIGTERM, answers under way get this long to finish; then each ends "
        "with an in-band 503 (streams) or a 503 (bodies) and its usage record, and the server "
        "exits. New requests get 503 meanwhile.",
    )
    auth_cache_ttl_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0, description="How long a resolved key is cached (bounds revocation delay)."
    )
    audit_retention_days: Annotated[int, Field(ge=1, le=36_500)] = Field(
        default=180,
        description="Audit rows older than this are deleted by a daily job (huey; 03:17 UTC) "
        "or POST /admin/audit/purge.",
    )
    auth_failures_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=20,
        description="Failed authentications one client address may make per minute (burst "
        "as large); past it the address gets 429 with `Retry-After` before any key lookup. "
        "Kept in Redis when `redis_url` is set, so the limit holds across replicas.",
    )
    usage_batch_max: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=256, description="Usage records committed together at most (group commit)."
    )
    anthropic_model_map: dict[str, str] = Field(
        default={},
        description="Anthropic Messages API (`/anthropic`): model-name patterns (fnmatch; "
        "the longest match wins) to served models, e.g. "
        '`{"claude-opus*": big, "claude*": small}`. A served name is used as is; any other '
        "`claude*` name goes to the first model; other names are 404.",
    )
    models: list[ModelConfig] = Field(
        default_factory=_default_models,
        description="Models served. Entries sharing a `name` form a routing group: one public "
        "model served by several deployments (see `routing`).",
    )
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig,
        description="How requests pick among a group's deployments: strategy, retries, "
        "circuit breakers and fallbacks.",
    )
    cache: CacheConfig = Field(
        default_factory=CacheConfig,
        description="The exact response cache (off by default); see `cache`.",
    )
    knowledge: KnowledgeConfig = Field(
        default_factory=KnowledgeConfig,
        description="Knowledge bases: their embedding model, chunking and upload bound.",
    )
    tracing: TracingConfig = Field(
        default_factory=TracingConfig,
        description="OpenTelemetry spans of each request to an OTLP endpoint (off by default).",
    )
    audit_stream: AuditStreamConfig = Field(
        default_factory=AuditStreamConfig,
        description="Audit rows streamed to a SIEM as they are committed (JSON Lines file, "
        "syslog).",
    )
    backup: BackupConfig = Field(
        default_factory=BackupConfig,
        description="Scheduled backups of the embedded SQLite store (`seekport backup`).",
    )
    console: ConsoleConfig = Field(
        default_factory=ConsoleConfig,
        description="The web console at `/console` and its login sessions.",
    )
    content_log: ContentLogConfig = Field(
        default_factory=ContentLogConfig,
        description="What was asked and answered, per tenant off, redacted or full; see "
        "`content_log`.",
    )
    guard: GuardConfig = Field(
        default_factory=GuardConfig,
        description="Personal data and sensitive words (off by default); see `guard`.",
    )
    model_limits: dict[str, Limits] = Field(
        default_factory=dict,
        description="Limits over every call of a served model, whoever makes it: "
        "`{deepseek-v4-pro: {rpm: 600, tpm: 2000000, max_concurrent: 64}}` (no budget here).",
    )
    pricing: PricingConfig = Field(
        default_factory=PricingConfig,
        description="Prices per served model (per 1M tokens: cache-hit input, cache-miss "
        "input, output; time-of-day factors), the currency of budgets, exchange rates.",
    )
    aliases: list[AliasConfig] = Field(
        default_factory=list,
        description="Public names served by a model of `models` with fixed parameters, e.g. "
        "`{name: deepseek-reasoner, model: deepseek-flash, thinking: enabled}`. Listed in "
        "/models; usage records keep the requested and the served name.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _env_patches(cls, v: Any) -> Any:
        """``SEEKPORT_MODELS__<i>__<FIELD>`` alone arrives as ``{"<i>": {...}}``: it changes
        entry ``i`` of the default list (the loader applies it to the YAML file's list)."""
        if isinstance(v, dict):
            return patch_entries(_default_models(), v)
        return v

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @field_validator("models_dir")
    @classmethod
    def _expand_models(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser()

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return v

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
        if not self.chat_models():
            raise ValueError("models must list at least one chat model")
        ids = self.deployment_ids()
        dupes = sorted({d for d in ids if ids.count(d) > 1})
        if dupes:
            raise ValueError(f"models: deployment id {', '.join(dupes)} is used more than once")
        kinds: dict[str, str] = {}
        for m in self.models:
            if kinds.setdefault(m.name, m.kind) != m.kind:
                raise ValueError(f"models: '{m.name}' is both a chat and an embedding model")
        self.pricing.check_models(set(kinds))
        served = {m.name for m in self.chat_models()}
        self.routing.check_models(served)
        if self.cache.semantic and not any(m.backend == "local" for m in self.embedding_models()):
            raise ValueError(
                "cache.semantic needs a local embedding model (a models[] entry with kind: "
                "embedding, backend: local; the default config has one)"
            )
        unknown = sorted(m for m in self.cache.semantic_models if m not in served)
        if unknown:
            raise ValueError(f"cache.semantic_models: {', '.join(unknown)} is not a served model")
        emb = self.knowledge.embedding_model
        if emb is not None and kinds.get(emb) != "embedding":
            raise ValueError(f"knowledge.embedding_model: '{emb}' is not an embedding model")
        unknown = sorted(m for m in self.guard.models if m not in served)
        if unknown:
            raise ValueError(f"guard.models: {', '.join(unknown)} is not a served model")
        unknown = sorted(m for m in self.cache.models if m not in served)
        if unknown:
            raise ValueError(f"cache.models: {', '.join(unknown)} is not a served model")
        for name, lim in self.model_limits.items():
            if name not in kinds:
                raise ValueError(
                    f"model_limits: '{name}' is not a served model "
                    f"(models: {', '.join(sorted(served))})"
                )
            if lim.budget is not None:
                raise ValueError(f"model_limits: '{name}': budgets belong to keys, users, tenants")
        for m in self.models:  # entries' own prices: flat tables, where the section has none
            table = m.pricing.table(m.name, self.pricing.currency)
            if table is not None and self.pricing.table(m.name) is None:
                self.pricing.models.append(table)
        seen: set[str] = set()
        for a in self.aliases:
            if a.name in served:
                raise ValueError(f"aliases: '{a.name}' is the name of a model already")
            if a.name in seen:
                raise ValueError(f"aliases: '{a.name}' listed more than once")
            if a.model not in served:
                raise ValueError(
                    f"aliases: '{a.name}' stands for '{a.model}', which is not a served model "
                    f"(models: {', '.join(sorted(served))})"
                )
            seen.add(a.name)
        return self

    @model_validator(mode="after")
    def _check_anthropic_map(self) -> Settings:
        served = {m.name for m in self.chat_models()}
        unknown = sorted({t for t in self.anthropic_model_map.values() if t not in served})
        if unknown:
            raise ValueError(
                f"anthropic_model_map: {', '.join(unknown)} is not a served model; "
                "map claude-* names to names listed under models"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'seekport.db'}"

    def deployment_ids(self) -> list[str]:
        """Each entry's deployment id: its own, or ``<name>#<index in its group>``."""
        seen: dict[str, int] = {}
        ids = []
        for m in self.models:
            i = seen.get(m.name, 0)
            seen[m.name] = i + 1
            ids.append(m.deployment or f"{m.name}#{i}")
        return ids

    def chat_models(self) -> list[ModelConfig]:
        return [m for m in self.models if m.kind == "chat"]

    def embedding_models(self) -> list[ModelConfig]:
        return [m for m in self.models if m.kind == "embedding"]

    def knowledge_embedder(self) -> ModelConfig | None:
        """The embedding model knowledge bases use (its first deployment)."""
        name = self.knowledge.embedding_model
        for m in self.embedding_models():
            if name is None or m.name == name:
                return m
        return None

    def model_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.models:
            seen.setdefault(m.name, None)
        return list(seen)
