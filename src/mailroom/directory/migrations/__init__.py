"""The directory schema's history, applied with Alembic: ISPmail's tables, then its later additions.

Every revision is idempotent against a database the ISPmail guide made by hand: it
creates or adds only what is missing, so `mailroom directory migrate` adopts such a
database (recording its revision in VERSION_TABLE) without touching its rows. The
version table has mailroom's own name so it cannot clash with another application's
Alembic history in a shared database. Nothing here ever drops a table.

A new revision: copy the newest file in versions/, set `revision` and `down_revision`,
and keep it idempotent (inspect first, then create or add).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from mailroom.directory.engine import WRITE

VERSION_TABLE = "mailroom_schema_version"
_HERE = Path(__file__).resolve().parent

__all__ = ["VERSION_TABLE", "current", "head", "is_known", "upgrade"]


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this mailroom knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None  # versions/ is never empty
    return revision


def is_known(revision: str) -> bool:
    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except Exception:  # alembic raises several kinds for an unknown id
        return False
    return True


def current(connection: Connection) -> str | None:
    """The revision recorded in the database; None for a database mailroom never migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision` in one transaction where the database allows; (before, after)."""
    with engine.execution_options(**{WRITE: True}).begin() as connection:
        before = current(connection)
        command.upgrade(_config(connection), revision)
        after = current(connection)
    return before, after
