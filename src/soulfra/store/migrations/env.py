"""Alembic environment: runs migrations on the connection that ``soulfra.store.database`` hands over."""

from __future__ import annotations

from alembic import context

from soulfra.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
