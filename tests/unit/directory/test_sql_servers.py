"""What only a database server (or a database made by someone else) brings: drivers and
URLs, fast failure and reconnection, a hand-made ISPmail database, and migrations.

Tests taking `directory_url` run on SQLite, PostgreSQL and MariaDB (conftest.py);
those taking `server_url` run on the two servers only.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from tests.unit.directory.servers import (
    GUIDE_BLF_CRYPT,
    SERVERS,
    TcpProxy,
    create_guide_database,
    scratch_database,
    unreachable,
)

from mailroom.directory import migrations
from mailroom.directory.base import DirectoryError, DirectoryUnavailable, User
from mailroom.directory.engine import CONNECT_TIMEOUT_SECONDS, make_engine, normalise_url
from mailroom.directory.sql import SqlDirectory, open_directory

PASSWORD = "summersun"
# A look-up against a database that is gone must fail well inside an SMTP client's wait.
FAIL_FAST_SECONDS = CONNECT_TIMEOUT_SECONDS + 3


@pytest.fixture(params=sorted(SERVERS))
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server = SERVERS[request.param]
    reason = unreachable(server)
    if reason:
        pytest.skip(reason)
    with scratch_database(server) as url:
        yield url


# -- URLs and drivers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db/mail", "postgresql+psycopg"),
        ("postgres://u@db/mail", "postgresql+psycopg"),
        ("mysql://u:p@db/mail", "mysql+pymysql"),
        ("mariadb://u@db/mail", "mariadb+pymysql"),
        ("postgresql+psycopg://u@db/mail", "postgresql+psycopg"),
        ("mysql+pymysql://u@db/mail", "mysql+pymysql"),
        ("sqlite:////var/lib/mailroom/directory.db", "sqlite"),
    ],
)
def test_short_schemes_get_a_maintained_driver(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


def test_server_engines_pool_ping_and_bound_time() -> None:
    engine = make_engine("mysql://root@127.0.0.1/mail?connect_timeout=2", create=False)
    try:
        assert engine.pool._pre_ping
        args = engine.dialect.create_connect_args(engine.url)[1]
        assert args["connect_timeout"] == 2  # the URL wins over our default
    finally:
        engine.dispose()


def test_closed_port_fails_fast_and_cleanly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in (f"postgresql://u@127.0.0.1:{port}/mail", f"mysql://u@127.0.0.1:{port}/mail"):
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable) as caught:
            open_directory(url)
        assert time.monotonic() - started < FAIL_FAST_SECONDS
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("scheme", "query"),
    [
        ("postgresql", "connect_timeout=2"),
        # PyMySQL waits for the server's greeting under read_timeout, not connect_timeout.
        ("mysql", "connect_timeout=2&read_timeout=2"),
    ],
)
def test_silent_server_times_out_instead_of_hanging(scheme: str, query: str) -> None:
    """A port that accepts TCP but never speaks (a hung server, a black hole)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            open_directory(f"{scheme}://u@127.0.0.1:{port}/mail?{query}")
        assert time.monotonic() - started < FAIL_FAST_SECONDS


# -- outage and recovery -----------------------------------------------------------------


def test_database_outage_is_temporary_and_heals_by_itself(server_url: str) -> None:
    """Cut the server off mid-use: look-ups fail fast as unavailable, then recover."""
    SqlDirectory(server_url, create=True).close()
    target = normalise_url(server_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 0)
    directory = SqlDirectory(proxy.url_for(server_url))
    try:
        directory.add_domain("example.org")
        assert directory.is_local_domain("example.org")
        proxy.cut()
        for _ in range(3):  # the broken pooled connection, then fresh refused ones
            started = time.monotonic()
            with pytest.raises(DirectoryUnavailable) as caught:
                directory.is_local_domain("example.org")
            assert time.monotonic() - started < FAIL_FAST_SECONDS
            assert "\n" not in str(caught.value)
        with pytest.raises(DirectoryUnavailable):
            directory.verify_password("john@example.org", PASSWORD)
        proxy.restore()
        assert directory.is_local_domain("example.org")  # same object: the pool reconnects
        assert directory.expand("x@example.com") == ["x@example.com"]
    finally:
        directory.close()
        proxy.close()


# -- an ISPmail database made by the guide's SQL ----------------------------------------


def test_guide_database_serves_without_quota_column(directory_url: str) -> None:
    create_guide_database(directory_url)
    directory = open_directory(directory_url)
    try:
        assert not directory.has_quota
        assert directory.get_user("John@Example.org") == User("john@example.org", 0)
        assert directory.list_users() == [User("john@example.org", 0)]
        assert directory.verify_password("john@example.org", PASSWORD)  # {SHA512-CRYPT}
        assert not directory.verify_password("john@example.org", "wrong")
        assert directory.expand("postmaster@example.org") == ["john@example.org"]
        directory.add_user("lisa@example.org", GUIDE_BLF_CRYPT)
        assert directory.verify_password("lisa@example.org", PASSWORD)  # {BLF-CRYPT}
        with pytest.raises(DirectoryError, match="migrate"):
            directory.add_user("bob@example.org", GUIDE_BLF_CRYPT, quota=1024)
        directory.set_password("lisa@example.org", "{PLAIN}x")
        assert directory.verify_password("lisa@example.org", "x")
    finally:
        directory.close()


def test_migrate_adopts_a_guide_database(directory_url: str) -> None:
    create_guide_database(directory_url)
    engine = make_engine(directory_url, create=False, statement_timeout=0)
    try:
        assert migrations.upgrade(engine) == (None, migrations.head())
        assert migrations.upgrade(engine) == (migrations.head(), migrations.head())
        columns = {c["name"] for c in inspect(engine).get_columns("virtual_users")}
        assert "quota" in columns
    finally:
        engine.dispose()
    directory = open_directory(directory_url)
    try:
        assert directory.has_quota
        assert directory.verify_password("john@example.org", PASSWORD)  # rows untouched
        assert directory.get_user("john@example.org") == User("john@example.org", 0)
        directory.add_user("bob@example.org", GUIDE_BLF_CRYPT, quota=1024)
        assert directory.get_user("bob@example.org") == User("bob@example.org", 1024)
    finally:
        directory.close()


def test_create_records_the_newest_revision(directory_url: str) -> None:
    SqlDirectory(directory_url, create=True).close()
    engine = make_engine(directory_url, create=False)
    try:
        with engine.connect() as connection:
            assert migrations.current(connection) == migrations.head()
        assert inspect(engine).has_table(migrations.VERSION_TABLE)
    finally:
        engine.dispose()


def test_open_server_database_without_tables(server_url: str) -> None:
    with pytest.raises(DirectoryUnavailable, match="lacks table virtual_domains.*migrate"):
        open_directory(server_url)


# -- `mailroom directory migrate|check` ---------------------------------------------------


def _mailroom(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from mailroom.cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_directory_commands_adopt_a_guide_database(
    directory_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = str(tmp_path / "etc")
    assert _mailroom(capsys, "-c", etc, "init")[0] == 0
    assert _mailroom(capsys, "-c", etc, "postconf", "-e", f"directory_url={directory_url}")[0] == 0
    if directory_url.startswith("sqlite"):  # an empty database file, as for a server
        sqlite3.connect(directory_url.removeprefix("sqlite:///")).close()
    code, out, err = _mailroom(capsys, "-c", etc, "directory", "check")
    assert code == 1 and err.count("\n") == 1 and "virtual_domains is missing" in err, err

    create_guide_database(directory_url)
    code, out, err = _mailroom(capsys, "-c", etc, "directory", "check")
    assert code == 0, err
    assert "revision: none" in out and "quota: missing" in out and "SHA512-CRYPT 1" in out
    code, out, err = _mailroom(capsys, "-c", etc, "directory", "migrate")
    assert code == 0 and f"from revision none to {migrations.head()}" in out, (out, err)
    code, out, err = _mailroom(capsys, "-c", etc, "directory", "migrate")
    assert code == 0 and "nothing to do" in out, (out, err)
    code, out, err = _mailroom(capsys, "-c", etc, "directory", "check")
    assert code == 0 and "(the newest)" in out and "quota" not in out, (out, err)
    assert _mailroom(capsys, "-c", etc, "user", "list")[1].split() == ["john@example.org"]


def test_directory_check_on_a_down_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    etc = str(tmp_path / "etc")
    assert _mailroom(capsys, "-c", etc, "init")[0] == 0
    url = f"postgresql://mail:secret@127.0.0.1:{port}/mail"
    assert _mailroom(capsys, "-c", etc, "postconf", "-e", f"directory_url={url}")[0] == 0
    for command in ("check", "migrate"):
        code, out, err = _mailroom(capsys, "-c", etc, "directory", command)
        assert code == 1 and err.startswith("mailroom: error: ") and err.count("\n") == 1, err
        assert "secret" not in err and "refused" in err.lower(), err


def test_a_directory_opened_while_the_database_is_down_heals_on_first_use(server_url: str) -> None:
    """What `serve` does: start with the database down, answer temporarily, recover alone."""
    SqlDirectory(server_url, create=True).close()
    target = normalise_url(server_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 0)
    proxy.cut()
    url = proxy.url_for(server_url)
    try:
        with pytest.raises(DirectoryUnavailable):
            open_directory(url)  # without defer_outage: an error, as `mailroom check` wants
        directory = open_directory(url, defer_outage=True)
        try:
            assert directory.deferred_error
            with pytest.raises(DirectoryUnavailable):
                directory.get_user("john@example.org")
            with pytest.raises(DirectoryUnavailable):
                directory.is_local_domain("example.org")
            proxy.restore()
            directory.add_domain("example.org")
            directory.add_user("john@example.org", "{PLAIN}x", quota=1024)
            assert directory.get_user("john@example.org") == User("john@example.org", 1024)
            assert directory.has_quota
        finally:
            directory.close()
    finally:
        proxy.close()
