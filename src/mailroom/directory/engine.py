"""SQLAlchemy engines for the directory: one URL in, a pooled engine that fails fast out.

`directory_url` takes the interface contract's short forms and picks a maintained pure
or binary driver for each: `postgresql://` (and `postgres://`) means psycopg 3,
`mysql://` and `mariadb://` mean PyMySQL. An explicit `+driver` is kept as given.

Servers are reached through a connection pool that pings each connection on checkout
(so a database restart costs one failed ping, not a failed look-up), with a connect
timeout and a per-statement timeout, so a database that is down or stuck turns into
DirectoryUnavailable within seconds instead of a hang; callers answer that with a
temporary failure (SMTP 451 4.3.0, IMAP/POP3 NO [UNAVAILABLE]) and nothing is lost.
A timeout given in the URL's query (`?connect_timeout=...`) wins over ours.

SQLite runs in WAL mode with a busy timeout and takes the write lock at the start of
every write transaction (BEGIN IMMEDIATE), so several processes may read and write the
same file at once without "database is locked".
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from mailroom.directory.base import DirectoryUnavailable

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "STATEMENT_TIMEOUT_SECONDS",
    "SUPPORTED_BACKENDS",
    "WRITE",
    "make_engine",
    "normalise_url",
    "one_line",
]

# How long an SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# A server that has not answered the TCP handshake and login by then is down for us.
CONNECT_TIMEOUT_SECONDS = 5
# Longest a directory query may take; look-ups are single-row index reads, so this only
# fires on a stuck server. SMTP clients wait minutes for a reply, so this is safe.
STATEMENT_TIMEOUT_SECONDS = 10
# Connections per process: a few for concurrent look-ups, some overflow for bursts.
POOL_SIZE = 5
MAX_OVERFLOW = 10
# Waiting for a free pooled connection is waiting for the database: same bound.
POOL_TIMEOUT_SECONDS = 10
# Re-open connections older than this, below MySQL's and proxies' idle cut-offs.
POOL_RECYCLE_SECONDS = 1800
# Longest driver message carried into a DirectoryUnavailable line.
ERROR_TEXT_MAX = 200

SUPPORTED_BACKENDS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})
# The driver a bare scheme means (the interface contract's `postgresql://`, `mysql://`).
_DEFAULT_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
WRITE = "mailroom_write"  # execution option: this transaction will write


def one_line(exc: BaseException) -> str:
    """The first line of the driver's own message, bounded; never a traceback."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:ERROR_TEXT_MAX]


def normalise_url(url: str | URL) -> URL:
    """Parse `url` and give a bare server scheme its maintained driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DirectoryUnavailable("unsupported directory URL (not a SQLAlchemy URL)") from None
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def make_engine(
    url: str | URL, create: bool, *, statement_timeout: float = STATEMENT_TIMEOUT_SECONDS
) -> Engine:
    """An engine for `url`, refusing what cannot work before anything touches disk.

    `statement_timeout` 0 lifts the per-statement bound (schema migrations on big tables).
    """
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise DirectoryUnavailable(f"unsupported directory URL scheme {parsed.drivername}")
    if backend == "sqlite":
        kwargs = _sqlite_kwargs(parsed, create)
    else:
        kwargs = {
            "pool_pre_ping": True,
            "pool_size": POOL_SIZE,
            "max_overflow": MAX_OVERFLOW,
            "pool_timeout": POOL_TIMEOUT_SECONDS,
            "pool_recycle": POOL_RECYCLE_SECONDS,
            "connect_args": _server_connect_args(parsed, statement_timeout),
        }
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise DirectoryUnavailable(f"no database driver for {parsed.drivername}: {exc}") from None
    if backend == "sqlite":
        _tune_sqlite(engine)
    return engine


def _sqlite_kwargs(parsed: URL, create: bool) -> dict[str, Any]:
    path = parsed.database or ""
    memory = path in ("", ":memory:")
    if memory and not create:
        raise DirectoryUnavailable("an in-memory directory must be created, not opened")
    if not memory:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DirectoryUnavailable(f"directory database folder {parent} does not exist")
        if not create and not os.path.isfile(path):
            raise DirectoryUnavailable(f"directory database {path} does not exist")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:  # one shared connection, or every checkout would see an empty database
        kwargs["poolclass"] = StaticPool
    return kwargs


def _server_connect_args(parsed: URL, statement_timeout: float) -> dict[str, Any]:
    """Driver keywords for fast failure; anything the URL's query sets is left alone."""
    query = parsed.query
    args: dict[str, Any] = {}
    if parsed.get_driver_name() == "psycopg":
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # A peer that vanishes without a reset: give up on unacknowledged data, and
        # probe idle connections, instead of waiting for the kernel's 15 minutes.
        args["tcp_user_timeout"] = CONNECT_TIMEOUT_SECONDS * 1000
        args["keepalives"] = 1
        args["keepalives_idle"] = 30
        args["keepalives_interval"] = 5
        args["keepalives_count"] = 3
        options = str(query.get("options", ""))
        if "statement_timeout" not in options:
            bound = f"-c statement_timeout={int(statement_timeout * 1000)}"
            args["options"] = f"{options} {bound}".strip()
    elif parsed.get_driver_name() == "pymysql":
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        if statement_timeout:
            args["read_timeout"] = statement_timeout
            args["write_timeout"] = statement_timeout
        args["charset"] = "utf8mb4"
    return {k: v for k, v in args.items() if k not in query or k == "options"}


def _tune_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, busy timeout; writers take the lock up front (BEGIN IMMEDIATE).

    pysqlite's own lazy BEGIN lets two writers both read, then deadlock upgrading to
    the write lock, which SQLite reports at once as "database is locked" whatever the
    busy timeout; taking the lock at BEGIN makes the second writer wait instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        writing = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
