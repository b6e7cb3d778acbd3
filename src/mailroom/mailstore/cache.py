"""A folder's persistent summary cache: what FETCH needs without opening message files.

A message's content never changes once it is in a Maildir, so anything computed from
it (IMAP ENVELOPE, BODY and BODYSTRUCTURE, INTERNALDATE) can be computed once and kept,
keyed by the file name's base, which also never changes. This is what Dovecot's
`dovecot.index.cache` is for; without it, `UID FETCH 1:* (ENVELOPE)` on a folder of
10,000 messages reads and parses 10,000 files.

The cache is one SQLite file per folder (`mailroom.cache`, beside `dovecot-uidlist`;
Dovecot ignores it, so a mailbox moved back loses nothing). SQLite because several
sessions and delivery processes share a folder and it already does safe concurrent
writers; the journal is the default rollback one, not WAL, because WAL needs shared
memory that a mail root on NFS does not give.

It is only a cache: any SQLite error (locked too long, disk full, a damaged file) is
a miss, never a failed command. A file that is not a database is moved aside and
started afresh. Rows of messages expunged behind our back are pruned when they
outnumber the live ones.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

CACHE_NAME = "mailroom.cache"
BUSY_TIMEOUT = 2.0  # seconds a writer waits for another; then the write is skipped
SCHEMA = "CREATE TABLE IF NOT EXISTS summary (field TEXT NOT NULL, base TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (field, base)) WITHOUT ROWID"
FORMAT = 2  # bumped whenever what a field holds changes: older rows are then never read
FLUSH_EVERY = 1000  # pending rows written in one transaction at most
PRUNE_SLACK = 100  # orphan rows tolerated before pruning


def _stored(name: str) -> str:
    return f"{name}/{FORMAT}"


class SummaryCache:
    """One folder's cache, opened on first use; `get` and `put` never raise."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CACHE_NAME
        self._db: sqlite3.Connection | None = None
        self._loaded: dict[str, dict[str, bytes]] = {}
        self._pending: list[tuple[str, str, bytes]] = []
        self.broken = False  # after an error we stop trying for this session

    # ------------------------------------------------------------------ reads
    def field(self, name: str) -> dict[str, bytes]:
        """Every cached value of one field, by base (loaded once per session)."""
        values = self._loaded.get(name)
        if values is None:
            values = {}
            db = self._open()
            if db is not None:
                try:
                    values = {base: bytes(value) for base, value in
                              db.execute("SELECT base, value FROM summary WHERE field = ?", (_stored(name),))}
                except sqlite3.Error:
                    self._fail()
            self._loaded[name] = values
        return values

    def get(self, name: str, base: str) -> bytes | None:
        return self.field(name).get(base)

    def loaded(self, name: str) -> bool:
        """The field is in memory: `get` will not touch the file."""
        return name in self._loaded

    @property
    def pending(self) -> bool:
        """Computed values wait for `flush()`."""
        return bool(self._pending)

    def read_one(self, name: str, base: str) -> bytes | None:
        """One value straight from the file (not loaded with its field); no file, no value."""
        db = self._open(create=False)
        if db is None:
            return None
        try:
            row = db.execute("SELECT value FROM summary WHERE field = ? AND base = ?", (_stored(name), base)).fetchone()
        except sqlite3.Error:
            self._fail()
            return None
        return None if row is None else bytes(row[0])

    def write_one(self, name: str, base: str, value: bytes) -> None:
        """Write one value now, in its own transaction."""
        db = self._open()
        if db is not None:
            self._write(db, "INSERT OR REPLACE INTO summary (field, base, value) VALUES (?, ?, ?)",
                        [(_stored(name), base, value)])

    # ----------------------------------------------------------------- writes
    def put(self, name: str, base: str, value: bytes) -> None:
        """Remember a computed value; written by `flush()` (or when many are pending)."""
        self.field(name)[base] = value
        if not self.broken:
            self._pending.append((_stored(name), base, value))
            if len(self._pending) >= FLUSH_EVERY:
                self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        db = self._open()
        if db is None:
            return
        self._write(db, "INSERT OR REPLACE INTO summary (field, base, value) VALUES (?, ?, ?)", pending)

    def forget(self, bases: Iterable[str]) -> None:
        """Drop the rows of expunged messages."""
        gone = [(base,) for base in bases]
        for values in self._loaded.values():
            for (base,) in gone:
                values.pop(base, None)
        db = self._open(create=False)
        if db is None or not gone:
            return
        self._write(db, "DELETE FROM summary WHERE base = ?", gone)

    def prune(self, live: Callable[[], set[str]], count: int) -> None:
        """Forget rows of messages that are gone (expunged by Dovecot, a MUA, another node)
        when they clearly outnumber the `count` live ones; only fields this session loaded."""
        if not any(len(values) > count + PRUNE_SLACK for values in self._loaded.values()):
            return
        bases = live()
        self.forget({base for values in self._loaded.values() for base in values if base not in bases})

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # -------------------------------------------------------------- internals
    def _open(self, *, create: bool = True) -> sqlite3.Connection | None:
        if self._db is not None or self.broken:
            return self._db
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        except OSError:
            self._fail()
            return None
        if st is None and not create:
            return None
        if st is not None and not stat.S_ISREG(st.st_mode):
            self._fail()  # a symlink (or anything else) is never followed: it could point anywhere
            return None
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute(SCHEMA)
            except sqlite3.DatabaseError as exc:
                db.close()
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                self._set_aside()
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
                db.execute(SCHEMA)
            db.execute("PRAGMA trusted_schema = OFF")  # the file is data, not code to run
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        except (sqlite3.Error, OSError):
            self._fail()
            return None
        self._db = db
        return db

    def _write(self, db: sqlite3.Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """All rows in one transaction (one journal write, not one per row)."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            self._fail()

    def _set_aside(self) -> None:
        """A damaged cache is renamed (kept for a look), never trusted."""
        with contextlib.suppress(OSError):
            os.replace(self.path, self.path.with_name(f"{CACHE_NAME}.broken"))

    def _fail(self) -> None:
        self.broken = True
        self._pending.clear()
