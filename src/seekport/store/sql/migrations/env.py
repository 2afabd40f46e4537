"""Alembic environment: seekport passes an open connection (see store.sql.db._upgrade)."""

from __future__ import annotations

from alembic import context

from seekport.store.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("seekport runs migrations itself at start-up (Database.open)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
