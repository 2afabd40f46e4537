"""Usage records carry their cost (nano-units of the price table's currency), and are
indexed by user as they are by key and tenant (budgets sum a period's spend from them).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cost_nanos", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=True))
        batch.create_index("ix_usage_user_time", ["user_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index("ix_usage_user_time")
        batch.drop_column("currency")
        batch.drop_column("cost_nanos")
