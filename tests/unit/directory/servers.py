"""The database servers the directory tests run against, and a TCP proxy to cut them off.

PostgreSQL and MariaDB are the machine's own (started before the session and in CI);
MAILROOM_TEST_POSTGRESQL_URL / MAILROOM_TEST_MARIADB_URL point elsewhere, and a server
that does not answer makes its tests skip with a one-line reason. Each user of a
server gets a scratch schema (PostgreSQL) or database (MariaDB) of its own, dropped
afterwards, so runs in parallel and other engineers' data are never touched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import struct
import threading
from collections.abc import Iterator

from sqlalchemy import MetaData, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from mailroom.directory.base import DirectoryUnavailable
from mailroom.directory.engine import make_engine, normalise_url, one_line

POSTGRESQL_URL = os.environ.get(
    "MAILROOM_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("MAILROOM_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
SERVERS = {"postgresql": POSTGRESQL_URL, "mariadb": MARIADB_URL}


def _label(url: URL) -> str:
    return f"{url.get_backend_name()} at {url.host}:{url.port}"


@functools.cache
def unreachable(server_url: str) -> str | None:
    """Why `server_url` cannot be used (one line), or None when it answers."""
    try:
        engine = make_engine(server_url, create=False)
    except DirectoryUnavailable as exc:
        return str(exc)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"{_label(engine.url)} unreachable: {one_line(exc)}"
    finally:
        engine.dispose()
    return None


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "mailroom_test") -> Iterator[str]:
    """A URL for a new, empty schema (PostgreSQL) or database (MariaDB); dropped after."""
    url = normalise_url(server_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    engine = make_engine(url, create=False).execution_options(isolation_level="AUTOCOMMIT")
    postgres = url.get_backend_name() == "postgresql"
    with engine.connect() as connection:
        connection.execute(text(f"CREATE {'SCHEMA' if postgres else 'DATABASE'} {name}"))
    if postgres:
        scratch = url.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        scratch = url.set(database=name)
    try:
        yield scratch.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            drop = f"DROP SCHEMA {name} CASCADE" if postgres else f"DROP DATABASE {name}"
            connection.execute(text(drop))
        engine.dispose()


def drop_tables(url: str) -> None:
    """Empty the scratch schema/database (or SQLite file) for the next test."""
    engine = make_engine(url, create=True)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


class TcpProxy:
    """A loopback TCP relay to a database server that a test can cut and restore.

    `cut()` closes the listener and resets every relayed connection, as a server that
    stops does; `restore()` listens again on the same port, as one that comes back.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.restore()

    def url_for(self, url: str) -> str:
        return (
            normalise_url(url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                # RST, not FIN: the client sees "connection reset", as from a dead server.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


# -- a database made by hand with the ISPmail guide's SQL ---------------------------------

# `doveadm pw -s SHA512-CRYPT -p summersun` / `-s BLF-CRYPT`, as the guide stores them.
GUIDE_SHA512_CRYPT = (
    "{SHA512-CRYPT}$6$mpnsJ69IOIQ1bk0B$cxVpGFYcJEpW2hh958h6JvUK15GLRaR8Y0Rir5LV02A3xi7e42Dn80b"
    "QeveWwqSr0qtiIk54Le/L.nrGcqBHx0"
)
GUIDE_BLF_CRYPT = "{BLF-CRYPT}$2y$05$jXUCe17zq04kbLQxfs8uVOcgr71sUIdPQ.GYwdaE8Hrc4mLqcBLbe"

# The guide's MariaDB statements, as printed there (before quota was added).
GUIDE_MYSQL_TABLES = [
    """CREATE TABLE `virtual_domains` (
      `id` int(11) NOT NULL auto_increment,
      `name` varchar(50) NOT NULL,
      PRIMARY KEY (`id`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE `virtual_users` (
      `id` int(11) NOT NULL auto_increment,
      `domain_id` int(11) NOT NULL,
      `password` varchar(150) NOT NULL,
      `email` varchar(100) NOT NULL,
      PRIMARY KEY (`id`),
      UNIQUE KEY `email` (`email`),
      FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE `virtual_aliases` (
      `id` int(11) NOT NULL auto_increment,
      `domain_id` int(11) NOT NULL,
      `source` varchar(100) NOT NULL,
      `destination` varchar(100) NOT NULL,
      PRIMARY KEY (`id`),
      FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
]
# The same tables in PostgreSQL's and SQLite's words.
_GUIDE_PORTABLE_TABLES = [
    "CREATE TABLE virtual_domains (id {serial} PRIMARY KEY, name varchar(50) NOT NULL)",
    """CREATE TABLE virtual_users (id {serial} PRIMARY KEY,
      domain_id int NOT NULL REFERENCES virtual_domains(id) ON DELETE CASCADE,
      password varchar(150) NOT NULL, email varchar(100) NOT NULL UNIQUE)""",
    """CREATE TABLE virtual_aliases (id {serial} PRIMARY KEY,
      domain_id int NOT NULL REFERENCES virtual_domains(id) ON DELETE CASCADE,
      source varchar(100) NOT NULL, destination varchar(100) NOT NULL)""",
]
GUIDE_ROWS = [
    "INSERT INTO virtual_domains (name) VALUES ('example.org')",
    "INSERT INTO virtual_users (domain_id, password, email) VALUES"
    " ((SELECT id FROM virtual_domains WHERE name = 'example.org'), :hash, 'john@example.org')",
    "INSERT INTO virtual_aliases (domain_id, source, destination) VALUES"
    " ((SELECT id FROM virtual_domains WHERE name = 'example.org'),"
    " 'postmaster@example.org', 'john@example.org')",
]


def create_guide_database(url: str, password_hash: str = GUIDE_SHA512_CRYPT) -> None:
    """ISPmail's tables and demo rows, made with plain SQL as the guide does: no mailroom."""
    engine = make_engine(url, create=True)
    backend = engine.url.get_backend_name()
    if backend in ("mysql", "mariadb"):
        tables = GUIDE_MYSQL_TABLES
    else:
        serial = "serial" if backend == "postgresql" else "integer"
        tables = [t.format(serial=serial) for t in _GUIDE_PORTABLE_TABLES]
    try:
        with engine.begin() as connection:
            for statement in tables:
                connection.execute(text(statement))
            for statement in GUIDE_ROWS:
                connection.execute(text(statement), {"hash": password_hash})
    finally:
        engine.dispose()
