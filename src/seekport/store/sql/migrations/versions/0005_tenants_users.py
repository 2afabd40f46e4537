"""Tenants and users: every key belongs to a tenant (and may belong to a user); a rotated key
keeps its previous secret for a grace period. Keys made before are moved to a default tenant,
and admin keys, which could do everything then, become superadmin keys.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT_TENANT_ID = "ten_default"


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=True),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.UniqueConstraint("tenant_id", "name", name="uq_users_tenant_name"),
    )
    op.create_index("ix_users_tenant_id", "users", ["tenant_id"])
    op.bulk_insert(
        tenants,
        [{"id": DEFAULT_TENANT_ID, "name": "default", "created_at": dt.datetime.now(dt.UTC)}],
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("prev_secret_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("prev_valid_until", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text("UPDATE api_keys SET tenant_id = :t").bindparams(t=DEFAULT_TENANT_ID))
    op.execute(sa.text("UPDATE api_keys SET role = 'superadmin' WHERE role = 'admin'"))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("tenant_id", existing_type=sa.String(32), nullable=False)
        batch.create_foreign_key("fk_api_keys_tenant", "tenants", ["tenant_id"], ["id"])
        batch.create_foreign_key("fk_api_keys_user", "users", ["user_id"], ["id"])
        batch.create_index("ix_api_keys_tenant_id", ["tenant_id"])
        batch.create_index("ix_api_keys_user_id", ["user_id"])
        batch.create_index("ix_api_keys_prev_secret_hash", ["prev_secret_hash"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(32), nullable=True))
        batch.create_index("ix_usage_tenant_time", ["tenant_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index("ix_usage_tenant_time")
        batch.drop_column("user_id")
        batch.drop_column("tenant_id")
    op.execute(sa.text("UPDATE api_keys SET role = 'admin' WHERE role = 'superadmin'"))
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_prev_secret_hash")
        batch.drop_index("ix_api_keys_user_id")
        batch.drop_index("ix_api_keys_tenant_id")
        batch.drop_constraint("fk_api_keys_user", type_="foreignkey")
        batch.drop_constraint("fk_api_keys_tenant", type_="foreignkey")
        batch.drop_column("prev_valid_until")
        batch.drop_column("prev_secret_hash")
        batch.drop_column("user_id")
        batch.drop_column("tenant_id")
    op.drop_index("ix_users_tenant_id", "users")
    op.drop_table("users")
    op.drop_table("tenants")
