"""The content log: what was asked and answered, apart from usage records; a user's entries
can be erased (hidden at once, deleted after a grace period).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(32), nullable=True),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_content_tenant_time", "content_log", ["tenant_id", "created_at"])
    op.create_index("ix_content_user", "content_log", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_content_user", "content_log")
    op.drop_index("ix_content_tenant_time", "content_log")
    op.drop_table("content_log")
