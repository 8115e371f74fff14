"""Alembic environment: runs migrations on the connection modelward hands in."""

from __future__ import annotations

from alembic import context

import modelward.storage.metadata.all_tables  # noqa: F401  (registers every table)
from modelward.storage.metadata.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("modelward runs its migrations in-process with a connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
