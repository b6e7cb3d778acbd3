"""SqlDirectory against a real database: ISPmail semantics, errors, concurrency.

Every test that takes `directory_url` runs against SQLite, PostgreSQL and MariaDB
(conftest.py; a server that is down skips with a reason). Set
MAILROOM_TEST_DIRECTORY_URL (e.g. postgresql://...) to use that server instead.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import String, create_engine, inspect
from sqlalchemy.engine.interfaces import ReflectedColumn

from mailroom.directory.base import Alias, AliasLoop, DirectoryError, DirectoryUnavailable, User
from mailroom.directory.passwords import hash_password
from mailroom.directory.sql import (
    EXPANSION_LIMIT,
    RECURSION_LIMIT,
    SqlDirectory,
    VirtualUser,
    open_directory,
)

PASSWORD = "summersun"
# Cheap but real: the directory stores whatever hash it is given.
JOHN_HASH = hash_password(PASSWORD, "SSHA512")


@pytest.fixture
def directory(directory_url: str) -> Iterator[SqlDirectory]:
    d = SqlDirectory(directory_url, create=True)
    yield d
    d.close()


@pytest.fixture
def demo(directory: SqlDirectory) -> SqlDirectory:
    """The `init --demo` state plus a second domain."""
    directory.add_domain("example.org")
    directory.add_domain("example.net")
    directory.add_user("john@example.org", JOHN_HASH)
    directory.add_alias("postmaster@example.org", ["john@example.org"])
    return directory


def _length(column: ReflectedColumn) -> int | None:
    assert isinstance(column["type"], String)
    return column["type"].length


# -- schema ----------------------------------------------------------------------------


def test_schema_is_ispmail(directory_url: str, directory: SqlDirectory) -> None:
    engine = create_engine(directory_url)
    insp = inspect(engine)
    columns = {t: {c["name"]: c for c in insp.get_columns(t)} for t in insp.get_table_names()}
    assert set(columns) >= {"virtual_domains", "virtual_users", "virtual_aliases"}
    assert set(columns["virtual_domains"]) == {"id", "name"}
    assert set(columns["virtual_users"]) == {"id", "domain_id", "email", "password", "quota"}
    assert set(columns["virtual_aliases"]) == {"id", "domain_id", "source", "destination"}
    assert _length(columns["virtual_domains"]["name"]) == 50
    assert _length(columns["virtual_users"]["email"]) == 100
    assert _length(columns["virtual_users"]["password"]) == 150
    assert not any(c["nullable"] for c in columns["virtual_users"].values())
    for table in ("virtual_users", "virtual_aliases"):
        (fk,) = insp.get_foreign_keys(table)
        assert fk["referred_table"] == "virtual_domains"
        assert fk["options"].get("ondelete") == "CASCADE"
    engine.dispose()


def test_sqlite_cascade_is_enforced(directory_url: str, demo: SqlDirectory) -> None:
    """A plain ISPmail `DELETE FROM virtual_domains` takes users along, as in MySQL."""
    if not directory_url.startswith("sqlite"):
        pytest.skip("checks SQLite's per-connection foreign_keys pragma")
    db = sqlite3.connect(directory_url.removeprefix("sqlite:///"))
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("DELETE FROM virtual_domains WHERE name = 'example.org'")
    db.commit()
    db.close()
    assert demo.list_users() == []
    with pytest.raises(DirectoryError):
        demo.add_user("x@example.org", "{PLAIN}x")  # domain really gone


def test_repr_hides_password(demo: SqlDirectory) -> None:
    assert "SSHA512" not in repr(VirtualUser(email="a@b.c", password=JOHN_HASH, quota=0))
    assert "SqlDirectory" in repr(demo)


# -- look-ups --------------------------------------------------------------------------


def test_lookups_are_case_insensitive(demo: SqlDirectory) -> None:
    assert demo.is_local_domain("EXAMPLE.org")
    assert not demo.is_local_domain("example.com")
    assert demo.mailbox_exists("John@Example.ORG")
    assert not demo.mailbox_exists("postmaster@example.org")  # an alias, not a mailbox
    assert demo.get_user("JOHN@example.org") == User("john@example.org", 0)
    assert demo.get_user("jane@example.org") is None


def test_verify_password(demo: SqlDirectory) -> None:
    assert demo.verify_password("john@example.org", PASSWORD)
    assert demo.verify_password("JOHN@EXAMPLE.ORG", PASSWORD)
    assert not demo.verify_password("john@example.org", "wintersun")
    assert not demo.verify_password("nobody@example.org", PASSWORD)
    assert not demo.verify_password("postmaster@example.org", PASSWORD)


def test_unknown_user_spends_time_on_a_dummy_hash(
    demo: SqlDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailroom.directory import passwords

    seen: list[str] = []
    real = passwords.verify_password

    def spy(stored: str, password: str) -> bool:
        seen.append(stored)
        return real(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    assert not demo.verify_password("nobody@example.org", PASSWORD)
    assert len(seen) == 1 and seen[0].startswith("{")


# -- expansion -------------------------------------------------------------------------


def test_expand_mailbox_remote_and_unknown(demo: SqlDirectory) -> None:
    assert demo.expand("john@example.org") == ["john@example.org"]
    assert demo.expand("JOHN@Example.Org") == ["john@example.org"]
    assert demo.expand("Lisa@Remote.example") == ["lisa@remote.example"]
    assert demo.expand("nobody@example.org") == []
    assert demo.expand("postmaster@example.org") == ["john@example.org"]


def test_expand_multiple_destinations_recursive_and_deduplicated(demo: SqlDirectory) -> None:
    demo.add_user("jane@example.org", JOHN_HASH)
    demo.add_alias("team@example.org", ["john@example.org", "jane@example.org", "x@remote.test"])
    demo.add_alias(
        "all@example.org", ["team@example.org", "postmaster@example.org", "jane@example.org"]
    )
    assert demo.expand("all@example.org") == [
        "john@example.org",
        "jane@example.org",
        "x@remote.test",
    ]


def test_explicit_alias_beats_mailbox_and_self_alias_keeps_mailbox(demo: SqlDirectory) -> None:
    demo.add_alias("john@example.org", ["archive@remote.test"])
    assert demo.expand("john@example.org") == ["archive@remote.test"]
    demo.add_alias("john@example.org", ["john@example.org"])
    assert demo.expand("john@example.org") == ["archive@remote.test", "john@example.org"]
    assert demo.expand("postmaster@example.org") == ["archive@remote.test", "john@example.org"]


def test_catch_all_precedence(demo: SqlDirectory) -> None:
    demo.add_user("jane@example.org", JOHN_HASH)
    demo.add_alias("@example.org", ["jane@example.org"])
    assert demo.expand("random@example.org") == ["jane@example.org"]
    assert demo.expand("john@example.org") == ["john@example.org"]  # mailbox wins
    assert demo.expand("postmaster@example.org") == ["john@example.org"]  # alias wins
    assert demo.expand("random@example.net") == []  # catch-all is per domain


def test_catch_all_to_several_and_nested(demo: SqlDirectory) -> None:
    demo.add_alias("@example.net", ["postmaster@example.org", "ext@remote.test"])
    assert demo.expand("any@EXAMPLE.net") == ["john@example.org", "ext@remote.test"]


def test_alias_loop_raises(demo: SqlDirectory) -> None:
    demo.add_alias("a@example.org", ["b@example.org"])
    demo.add_alias("b@example.org", ["c@example.org"])
    demo.add_alias("c@example.org", ["a@example.org"])
    with pytest.raises(AliasLoop, match="a@example.org"):
        demo.expand("a@example.org")


def test_catch_all_reaching_itself_stops_like_postfix(demo: SqlDirectory) -> None:
    """ghost@ maps to itself through the catch-all: Postfix stops there and delivers."""
    demo.add_alias("@example.net", ["ghost@example.net"])
    assert demo.expand("anyone@example.net") == ["ghost@example.net"]
    assert not demo.mailbox_exists("ghost@example.net")


def test_diamond_is_not_a_loop(demo: SqlDirectory) -> None:
    demo.add_alias("top@example.org", ["left@example.org", "right@example.org"])
    demo.add_alias("left@example.org", ["john@example.org"])
    demo.add_alias("right@example.org", ["john@example.org", "left@example.org"])
    assert demo.expand("top@example.org") == ["john@example.org"]


def test_nesting_limit(demo: SqlDirectory) -> None:
    depth = RECURSION_LIMIT + 1
    for i in range(depth):
        demo.add_alias(f"n{i}@example.org", [f"n{i + 1}@example.org"])
    demo.add_alias(f"n{depth}@example.org", ["john@example.org"])
    with pytest.raises(AliasLoop, match="deeper"):
        demo.expand("n0@example.org")
    assert demo.expand(f"n{depth - RECURSION_LIMIT + 2}@example.org") == ["john@example.org"]


def test_expansion_size_limit(demo: SqlDirectory) -> None:
    demo.add_alias("big@example.org", [f"r{i}@remote.test" for i in range(EXPANSION_LIMIT + 1)])
    with pytest.raises(AliasLoop, match="exceeds"):
        demo.expand("big@example.org")


# -- administration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "-bad.org", "bad-.org", "a..b", "under_score.org", "1.2.3.4", "x" * 51, "sp ace.org"],
)
def test_add_domain_validates(directory: SqlDirectory, name: str) -> None:
    with pytest.raises(DirectoryError, match="invalid domain"):
        directory.add_domain(name)
    assert directory.list_domains() == []


def test_add_domain_refuses_duplicates_case_insensitively(demo: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="already exists"):
        demo.add_domain("Example.ORG")
    assert demo.list_domains() == ["example.net", "example.org"]


@pytest.mark.parametrize(
    "address",
    [
        "john",
        "@example.org",
        "a@b@example.org",
        "jo hn@example.org",
        "<j>@example.org",
        "a,b@example.org",
        "a;b@example.org",
        "tab\t@example.org",
        "x@bad_domain.org",
        "x" * 65 + "@example.org",
    ],
)
def test_add_user_validates_address(demo: SqlDirectory, address: str) -> None:
    with pytest.raises(DirectoryError, match="invalid"):
        demo.add_user(address, JOHN_HASH)


def test_add_user_refusals(demo: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="not a local domain"):
        demo.add_user("x@example.com", JOHN_HASH)
    with pytest.raises(DirectoryError, match="already exists"):
        demo.add_user("JOHN@example.org", JOHN_HASH)
    with pytest.raises(DirectoryError, match="quota"):
        demo.add_user("q@example.org", JOHN_HASH, quota=-1)
    with pytest.raises(DirectoryError) as caught:
        demo.add_user("h@example.org", "x" * 151)
    assert "x" * 20 not in str(caught.value)


def test_user_lifecycle(demo: SqlDirectory) -> None:
    demo.add_user("Jane@Example.NET", "{PLAIN}old", quota=1_000_000)
    assert demo.list_users("example.net") == [User("jane@example.net", 1_000_000)]
    assert demo.list_users() == [User("jane@example.net", 1_000_000), User("john@example.org", 0)]
    demo.set_password("jane@example.net", "{PLAIN}new")
    assert demo.verify_password("jane@example.net", "new")
    assert not demo.verify_password("jane@example.net", "old")
    demo.remove_user("JANE@example.net")
    assert demo.get_user("jane@example.net") is None
    with pytest.raises(DirectoryError, match="no such user"):
        demo.remove_user("jane@example.net")
    with pytest.raises(DirectoryError, match="no such user"):
        demo.set_password("jane@example.net", "{PLAIN}x")


def test_remove_domain_refuses_then_force(demo: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="1 users and 1 aliases"):
        demo.remove_domain("example.org")
    assert demo.mailbox_exists("john@example.org")
    demo.remove_domain("example.net")  # empty: fine without force
    demo.remove_domain("EXAMPLE.org", force=True)
    assert demo.list_domains() == []
    assert demo.list_users() == [] and demo.list_aliases() == []
    with pytest.raises(DirectoryError, match="not a local domain"):
        demo.remove_domain("example.org")


def test_alias_administration(demo: SqlDirectory) -> None:
    demo.add_alias("Sales@Example.org", ["john@example.org", "boss@remote.test"])
    demo.add_alias("@example.net", ["john@example.org"])
    assert demo.list_aliases("example.org") == [
        Alias("postmaster@example.org", "john@example.org"),
        Alias("sales@example.org", "john@example.org"),
        Alias("sales@example.org", "boss@remote.test"),
    ]
    assert demo.list_aliases("example.net") == [Alias("@example.net", "john@example.org")]
    with pytest.raises(DirectoryError, match="already exists"):
        demo.add_alias("sales@example.org", ["new@remote.test", "JOHN@example.org"])
    assert len(demo.list_aliases("example.org")) == 3  # nothing half-written
    demo.remove_alias("sales@example.org", "BOSS@remote.test")
    assert demo.expand("sales@example.org") == ["john@example.org"]
    with pytest.raises(DirectoryError, match="no such alias"):
        demo.remove_alias("sales@example.org", "boss@remote.test")
    demo.remove_alias("sales@example.org")
    assert demo.expand("sales@example.org") == []
    with pytest.raises(DirectoryError, match="no such alias"):
        demo.remove_alias("sales@example.org")


def test_add_alias_refusals(demo: SqlDirectory) -> None:
    with pytest.raises(DirectoryError, match="not a local domain"):
        demo.add_alias("x@remote.test", ["john@example.org"])
    with pytest.raises(DirectoryError, match="at least one"):
        demo.add_alias("x@example.org", [])
    with pytest.raises(DirectoryError, match="invalid"):
        demo.add_alias("x@example.org", ["@other.org"])  # no catch-all destinations
    with pytest.raises(DirectoryError, match="invalid"):
        demo.add_alias("@bad_domain", ["john@example.org"])


# -- opening ---------------------------------------------------------------------------


def test_open_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryUnavailable, match="does not exist"):
        open_directory(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(DirectoryUnavailable, match="folder"):
        open_directory(f"sqlite:///{tmp_path / 'no' / 'dir.db'}", create=True)


def test_open_without_tables_or_garbage(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(DirectoryUnavailable, match="lacks table"):
        open_directory(f"sqlite:///{tmp_path / 'empty.db'}")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DirectoryUnavailable) as caught:
        open_directory(f"sqlite:///{tmp_path / 'junk.db'}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("url", ["nonsense", "redis://localhost/0", "sqlite://"])
def test_open_unsupported(url: str) -> None:
    with pytest.raises(DirectoryUnavailable):
        open_directory(url)


def test_create_then_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    first = open_directory(url, create=True)
    first.add_domain("example.org")
    first.close()
    again = open_directory(url)
    assert again.list_domains() == ["example.org"]
    again.close()


def test_in_memory_directory_for_tests() -> None:
    d = SqlDirectory("sqlite://", create=True)
    d.add_domain("example.org")
    assert d.is_local_domain("example.org")
    d.close()


def test_database_vanishing_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    d = open_directory(url, create=True)
    d.add_domain("example.org")
    db = sqlite3.connect(tmp_path / "d.db")
    db.execute("DROP TABLE virtual_aliases")
    db.commit()
    db.close()
    with pytest.raises(DirectoryUnavailable, match="no such table"):
        d.expand("x@example.org")
    d.close()


# -- concurrency -----------------------------------------------------------------------

WRITERS = 4
USERS_PER_WRITER = 25
READERS = 4
CONCURRENCY_DEADLINE_SECONDS = 60


def test_concurrent_writers_and_readers(directory_url: str, directory: SqlDirectory) -> None:
    """Separate SqlDirectory objects (own pools, as separate processes have) at once."""
    directory.add_domain("example.org")
    stop = threading.Event()
    reads = [0] * READERS

    def write(n: int) -> None:
        d = SqlDirectory(directory_url)
        try:
            for i in range(USERS_PER_WRITER):
                d.add_user(f"w{n}u{i}@example.org", "{PLAIN}x")
                d.add_alias(f"a{n}u{i}@example.org", [f"w{n}u{i}@example.org"])
        finally:
            d.close()

    def read(n: int) -> None:
        d = SqlDirectory(directory_url)
        try:
            while not stop.is_set():
                d.list_users("example.org")
                d.expand(f"a0u{reads[n] % USERS_PER_WRITER}@example.org")
                d.verify_password("w0u0@example.org", "x")
                reads[n] += 1
        finally:
            d.close()

    started = time.monotonic()
    with ThreadPoolExecutor(WRITERS + READERS) as pool:
        readers = [pool.submit(read, n) for n in range(READERS)]
        writers = [pool.submit(write, n) for n in range(WRITERS)]
        try:
            for f in writers:
                f.result(timeout=CONCURRENCY_DEADLINE_SECONDS)
        finally:
            stop.set()
        for f in readers:
            f.result(timeout=CONCURRENCY_DEADLINE_SECONDS)
    assert time.monotonic() - started < CONCURRENCY_DEADLINE_SECONDS
    assert len(directory.list_users()) == WRITERS * USERS_PER_WRITER
    assert directory.expand("a3u7@example.org") == ["w3u7@example.org"]
    assert all(reads)


def _process_writer(url: str, n: int) -> None:
    d = SqlDirectory(url)
    try:
        for i in range(USERS_PER_WRITER):
            d.add_user(f"p{n}u{i}@example.org", "{PLAIN}x")
            d.list_users("example.org")
    finally:
        d.close()


def test_concurrent_processes(directory_url: str, directory: SqlDirectory) -> None:
    """Real separate processes, as `mailroom user add` runs beside the server."""
    directory.add_domain("example.org")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_writer, args=(directory_url, n)) for n in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(CONCURRENCY_DEADLINE_SECONDS)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    assert len(directory.list_users("example.org")) == WRITERS * USERS_PER_WRITER
