"""Table definitions (SQLAlchemy Core). Change them only together with an Alembic revision."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("limits", JSON, nullable=True),  # Limits.stored(); NULL: none
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(32), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("limits", JSON, nullable=True),
    UniqueConstraint("tenant_id", "name", name="uq_users_tenant_name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    # SHA-256 hex of the whole secret; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("policy", JSON, nullable=True),  # KeyPolicy.stored(); NULL: no restriction
    Column("tenant_id", String(32), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=True, index=True),
    # a rotated key's previous secret, valid until prev_valid_until (the grace period)
    Column("prev_secret_hash", String(64), nullable=True, index=True),
    Column("prev_valid_until", DateTime(timezone=True), nullable=True),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("client_request_id", String(128), nullable=True, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("route", String(64), nullable=False),
    Column("model", String(256), nullable=True),  # as requested (an alias, or a model)
    Column("served_model", String(256), nullable=True),  # the model that served it
    Column("backend", String(64), nullable=True),
    Column("deployment", String(128), nullable=True),  # which of the group's deployments
    Column("stream", Integer, nullable=False, default=0),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("tenant_id", String(32), nullable=True),
    Column("user_id", String(32), nullable=True),
    Column("cost_nanos", BigInteger, nullable=True),  # 1e-9 of `currency`; NULL: unpriced
    Column("currency", String(3), nullable=True),
    Index("ix_usage_key_time", "key_id", "created_at"),
    Index("ix_usage_tenant_time", "tenant_id", "created_at"),
    Index("ix_usage_user_time", "user_id", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("actor_key_id", String(32), nullable=True),
    Column("actor_role", String(16), nullable=True),
    Column("tenant_id", String(32), nullable=True),
    Column("target_type", String(32), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("count", Integer, nullable=False, default=1),  # > 1: an aggregated row
    Column("detail", JSON, nullable=True),
    Index("ix_audit_tenant_at", "tenant_id", "at"),
    Index("ix_audit_at", "at"),
)

content_log = Table(
    "content_log",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("tenant_id", String(32), nullable=True),
    Column("user_id", String(32), nullable=True),
    Column("key_id", String(32), nullable=True),
    Column("model", String(256), nullable=True),
    Column("mode", String(16), nullable=False),  # redacted, full
    Column("request", JSON, nullable=True),  # the messages (or prompt) the model got
    Column("answer", JSON, nullable=True),  # per choice: content, reasoning, tool calls
    Column("erased_at", DateTime(timezone=True), nullable=True),  # hidden; deleted later
    Index("ix_content_tenant_time", "tenant_id", "created_at"),
    Index("ix_content_user", "user_id"),
)
