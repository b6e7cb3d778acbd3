"""Alembic's run-time environment for the directory schema (online only).

mailroom.directory.migrations hands in an open connection, so the same pool (and, for
an in-memory SQLite, the same database) is migrated; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from mailroom.directory.migrations import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
