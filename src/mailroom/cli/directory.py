"""`mailroom directory migrate|check`: the directory database's schema, through Alembic.

`migrate` creates ISPmail's tables in an empty database, or adopts one the ISPmail
guide made by hand (adding what later editions added, such as virtual_users.quota)
without touching its rows; running it again does nothing. `check` connects, reports
the server, schema revision and contents, and exits 1 when mailroom cannot serve from
this database (unreachable, tables missing, a schema newer than this mailroom).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from sqlalchemy import Connection, Engine, func, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError

from mailroom.cli.errors import CommandError
from mailroom.config.settings import Config
from mailroom.directory.base import DirectoryUnavailable

_TABLES = ("virtual_domains", "virtual_users", "virtual_aliases")
_SCHEME_RE = re.compile(r"^\{([^}]+)\}")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    directory = sub.add_parser(
        "directory", help="the directory database named by directory_url"
    ).add_subparsers(dest="action", required=True)
    p = directory.add_parser(
        "migrate", help="create or upgrade the ISPmail tables (adopts a guide-made database)"
    )
    p.set_defaults(func=migrate)
    p = directory.add_parser("check", help="connect and report schema revision and contents")
    p.set_defaults(func=check)


def _engine(config: Config, *, create: bool) -> Engine:
    from mailroom.directory.engine import make_engine

    try:
        # Schema changes may take a while on a big table: no per-statement bound.
        return make_engine(config.expanded("directory_url"), create, statement_timeout=0)
    except DirectoryUnavailable as exc:
        raise CommandError(f"directory_url: {exc}") from None


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError as AlembicError

    from mailroom.directory import migrations
    from mailroom.directory.engine import one_line

    engine = _engine(args.config, create=True)
    try:
        before, after = migrations.upgrade(engine)
    except AlembicError as exc:
        raise CommandError(
            f"directory migrate: {exc} (is this mailroom older than the database?)"
        ) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"directory migrate {_shown(engine)}: {one_line(exc)}") from None
    finally:
        engine.dispose()
    if before == after:
        print(f"directory: {_shown(engine)} is at revision {after}, the newest; nothing to do")
    else:
        print(f"directory: migrated {_shown(engine)} from revision {before or 'none'} to {after}")
    return 0


def check(args: argparse.Namespace) -> int:
    from mailroom.directory.engine import one_line

    engine = _engine(args.config, create=False)
    try:
        with engine.connect() as connection:
            problems = _report(engine, connection)
    except SQLAlchemyError as exc:
        raise CommandError(f"directory {_shown(engine)}: {one_line(exc)}") from None
    finally:
        engine.dispose()
    if problems:
        raise CommandError(f"directory: {problems[0]}")
    print("directory: OK")
    return 0


def _report(engine: Engine, connection: Connection) -> list[str]:
    """Print what the database holds; return the problems that stop mailroom serving it."""
    from mailroom.directory import migrations
    from mailroom.directory.sql import VirtualUser

    dialect = connection.dialect
    product = "MariaDB" if getattr(dialect, "is_mariadb", False) else dialect.name
    version = ".".join(str(part) for part in dialect.server_version_info or ())
    print(f"directory_url: {_shown(engine)} ({product} {version}, driver {dialect.driver})")
    insp = inspect(connection)
    missing = [t for t in _TABLES if not insp.has_table(t)]
    revision = migrations.current(connection)
    head = migrations.head()
    if revision is None:
        state = "none (not yet managed by mailroom; `mailroom directory migrate` adopts it)"
    elif revision == head:
        state = f"{revision} (the newest)"
    elif migrations.is_known(revision):
        state = f"{revision} (upgrade to {head} pending: run `mailroom directory migrate`)"
    else:
        state = f"{revision} (unknown: newer than this mailroom)"
    print(f"schema revision: {state}")
    if missing:
        return [f"table {missing[0]} is missing (run `mailroom directory migrate`)"]
    problems = []
    if revision is not None and not migrations.is_known(revision):
        problems.append(f"schema revision {revision} is newer than this mailroom knows")
    columns = {c["name"] for c in insp.get_columns("virtual_users")}
    if "quota" not in columns:
        print("virtual_users.quota: missing, every user is unlimited (migrate adds it)")
    counts = [connection.scalar(select(func.count()).select_from(table(t))) for t in _TABLES]
    print(f"contents: {counts[0]} domains, {counts[1]} users, {counts[2]} aliases")
    schemes: Counter[str] = Counter()
    for stored in connection.scalars(select(VirtualUser.password)):
        match = _SCHEME_RE.match(stored or "")
        schemes[match.group(1).upper() if match else "CRYPT (no prefix)"] += 1
    if schemes:
        print("password schemes: " + ", ".join(f"{s} {n}" for s, n in sorted(schemes.items())))
    return problems
