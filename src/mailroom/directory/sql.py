"""The ISPmail schema behind the Directory interface, through SQLAlchemy 2.

Tables, columns and constraints are exactly ISPmail's (virtual_domains, virtual_users,
virtual_aliases), so a database made for Postfix + Dovecot by the ISPmail guide works
here unchanged and vice versa, including its {SHA512-CRYPT}/{BLF-CRYPT} hashes and a
virtual_users without the later `quota` column (read as 0 = unlimited until `mailroom
directory migrate` adds it). SQLite is the default; PostgreSQL and MariaDB come through
the same code (engine.py: drivers, pooling, fast failure). The schema is created and
upgraded by the Alembic revisions in migrations/, never by hand.

Alias expansion follows Postfix's virtual_alias_maps as ISPmail sets it up: an explicit
alias row wins, then a mailbox of that name, then the `@domain` catch-all.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ForeignKey,
    Integer,
    String,
    delete,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from mailroom.directory import passwords
from mailroom.directory.base import Alias, AliasLoop, DirectoryError, DirectoryUnavailable, User
from mailroom.directory.engine import WRITE, make_engine, one_line

__all__ = ["Base", "SqlDirectory", "VirtualAlias", "VirtualDomain", "VirtualUser", "open_directory"]

# Postfix's virtual_alias_expansion_limit: most final addresses one expansion may give.
EXPANSION_LIMIT = 1000
# Postfix's virtual_alias_recursion_limit: deepest alias-of-alias nesting.
RECURSION_LIMIT = 100
# ISPmail's column width for virtual_users.password.
PASSWORD_HASH_MAX = 150
# ISPmail's column widths; RFC 5321 section 4.5.3.1.1 caps a local part at 64 octets.
DOMAIN_MAX = 50
ADDRESS_MAX = 100
LOCAL_PART_MAX = 64
# RFC 1035 section 2.3.4: a label is at most 63 octets.
LABEL_MAX = 63
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_FORBIDDEN_LOCAL = frozenset(' <>,;@"\\\x7f') | {chr(c) for c in range(32)}
_TABLES = ("virtual_domains", "virtual_users", "virtual_aliases")


class Base(DeclarativeBase):
    pass


class VirtualDomain(Base):
    __tablename__ = "virtual_domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50), nullable=False, unique=True)


class VirtualUser(Base):
    __tablename__ = "virtual_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("virtual_domains.id", ondelete="CASCADE"), nullable=False
    )
    email: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    password: Mapped[str] = mapped_column(String(150), nullable=False)
    # Server-side default only: an insert that leaves it out must work on a database
    # from before the column existed (see SqlDirectory.has_quota).
    quota: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"VirtualUser(email={self.email!r}, quota={self.quota!r})"


class VirtualAlias(Base):
    __tablename__ = "virtual_aliases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("virtual_domains.id", ondelete="CASCADE"), nullable=False
    )
    source: Mapped[str] = mapped_column(String(100), nullable=False)
    destination: Mapped[str] = mapped_column(String(100), nullable=False)


def open_directory(url: str, create: bool = False, *, defer_outage: bool = False) -> SqlDirectory:
    """Open the directory at `url`; DirectoryUnavailable with one line if it cannot be used.

    With `defer_outage`, a database that cannot be reached yet is not an error: the
    directory looks at its tables on first use instead (a server started before its
    database answers with temporary errors until the database is there)."""
    return SqlDirectory(url, create=create, defer_outage=defer_outage)


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check against for unknown users, so timing does not tell them apart."""
    return passwords.hash_password("mailroom-no-such-user")


class SqlDirectory:
    """Directory over the ISPmail tables; safe to share between threads."""

    def __init__(self, url: str, *, create: bool = False, defer_outage: bool = False) -> None:
        self._engine = make_engine(url, create)
        self._write_engine = self._engine.execution_options(**{WRITE: True})
        self._inspect_lock = threading.Lock()
        self._has_quota = False
        self._quota_column: ColumnElement[int] | None = None
        self.deferred_error = ""  # why the tables could not be looked at when opening, if so
        try:
            if create:
                from mailroom.directory import migrations  # Alembic: only when creating

                migrations.upgrade(self._engine)
            self._inspect()
        except DirectoryUnavailable as exc:
            # A file database that cannot be opened is a configuration error, not an outage.
            if not (defer_outage and exc.unreachable and self._engine.url.get_backend_name() != "sqlite"):
                self._engine.dispose()
                raise
            self.deferred_error = str(exc)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise DirectoryUnavailable(f"cannot open directory: {one_line(exc)}") from None

    def _inspect(self) -> None:
        """Check the tables and learn whether virtual_users has a quota column."""
        try:
            insp = inspect(self._engine)
            missing = [t for t in _TABLES if not insp.has_table(t)]
            has_quota = not missing and any(
                c["name"] == "quota" for c in insp.get_columns("virtual_users")
            )
        except SQLAlchemyError as exc:
            raise DirectoryUnavailable(f"cannot open directory: {one_line(exc)}", unreachable=True) from None
        if missing:
            raise DirectoryUnavailable(
                f"directory database lacks table {missing[0]} (mailroom directory migrate creates it)"
            )
        # An ISPmail database from before the quota column: every user is unlimited.
        self._has_quota = has_quota
        self._quota_column = (VirtualUser.quota if has_quota else literal(0, BigInteger)).label("quota")

    @property
    def has_quota(self) -> bool:
        """virtual_users has a quota column (asks the database first if it was down at open)."""
        self._quota  # noqa: B018 - inspects the tables when that has not happened yet
        return self._has_quota

    @property
    def _quota(self) -> ColumnElement[int]:
        """The quota column, once the tables have been seen (at open, or at first use)."""
        column = self._quota_column
        if column is None:
            with self._inspect_lock:
                if self._quota_column is None:
                    self._inspect()
                column = self._quota_column
        assert column is not None
        return column

    def change_token(self) -> object:
        """Something that changes when another process commits (SQLite: file stamps), else None.

        Lets a cache in front of this directory notice `mailroom user add` at once
        without asking the database on every look-up.
        """
        database = self._engine.url.database if self._engine.url.get_backend_name() == "sqlite" else None
        if not database or database == ":memory:":
            return None
        stamps: list[int] = []
        for path in (database, database + "-wal"):
            try:
                st = os.stat(path)
            except OSError:
                stamps += [0, 0]
                continue
            stamps += [st.st_mtime_ns, st.st_size]
        return tuple(stamps)

    def __repr__(self) -> str:  # the URL may carry a database password
        return f"SqlDirectory({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        """One transaction; database failures become Directory errors with one line."""
        engine = self._write_engine if write else self._engine
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise DirectoryError(f"refused by the database: {one_line(exc)}") from None
        except SQLAlchemyError as exc:
            raise DirectoryUnavailable(f"directory unavailable: {one_line(exc)}") from None

    @staticmethod
    def _domain_id(session: Session, domain: str) -> int | None:
        return session.scalar(select(VirtualDomain.id).where(VirtualDomain.name == domain))

    def _require_domain(self, session: Session, domain: str) -> int:
        domain_id = self._domain_id(session, domain)
        if domain_id is None:
            raise DirectoryError(f"domain {domain} is not a local domain")
        return domain_id

    def _user(self, session: Session, address: str) -> User | None:
        query = select(VirtualUser.email, self._quota).where(VirtualUser.email == address)
        row = session.execute(query).first()
        return None if row is None else User(row.email, int(row.quota))

    # -- look-ups -------------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        with self._session(write=False) as session:
            return self._domain_id(session, normalise(domain)) is not None

    def mailbox_exists(self, address: str) -> bool:
        return self.get_user(address) is not None

    def get_user(self, address: str) -> User | None:
        with self._session(write=False) as session:
            return self._user(session, normalise(address))

    def expand(self, address: str) -> list[str]:
        """Postfix-style virtual alias expansion; see Directory.expand."""
        addr = normalise(address)
        result: dict[str, None] = {}  # ordered set
        with self._session(write=False) as session:
            self._expand(session, addr, (), set(), result)
        return list(result)

    def _expand(
        self,
        session: Session,
        addr: str,
        path: tuple[str, ...],
        done: set[str],
        result: dict[str, None],
    ) -> None:
        """Depth-first expansion; `path` catches loops, `done` skips repeated sub-trees."""
        if len(path) >= RECURSION_LIMIT:
            raise AliasLoop(f"alias nesting for {path[0]} deeper than {RECURSION_LIMIT}")
        done.add(addr)
        domain = domain_of(addr)
        if self._domain_id(session, domain) is None:
            self._emit(addr, path, result)
            return
        targets = self._destinations(session, addr)
        if not targets:
            if self._user(session, addr) is not None:
                self._emit(addr, path, result)
                return
            targets = self._destinations(session, "@" + domain)
        inner = (*path, addr)
        for target in targets:
            if target == addr:  # an alias to itself: deliver to the mailbox as well
                self._emit(addr, path, result)
            elif target in inner:
                raise AliasLoop(f"alias loop: {' -> '.join((*inner, target))}")
            elif target not in done:
                self._expand(session, target, inner, done, result)

    @staticmethod
    def _destinations(session: Session, source: str) -> list[str]:
        rows = session.scalars(
            select(VirtualAlias.destination)
            .where(VirtualAlias.source == source)
            .order_by(VirtualAlias.id)
        )
        return [normalise(d) for d in rows]

    @staticmethod
    def _emit(addr: str, path: tuple[str, ...], result: dict[str, None]) -> None:
        result[addr] = None
        if len(result) > EXPANSION_LIMIT:
            origin = path[0] if path else addr
            raise AliasLoop(f"alias expansion of {origin} exceeds {EXPANSION_LIMIT} addresses")

    def verify_password(self, address: str, password: str) -> bool:
        with self._session(write=False) as session:
            query = select(VirtualUser.password).where(VirtualUser.email == normalise(address))
            stored = session.scalar(query)
        if stored is None:
            passwords.verify_password(_dummy_hash(), password)
            return False
        return passwords.verify_password(stored, password)

    # -- domains --------------------------------------------------------------------
    def add_domain(self, name: str) -> None:
        domain = normalise(name)
        validate_domain(domain)
        with self._session(write=True) as session:
            if self._domain_id(session, domain) is not None:
                raise DirectoryError(f"domain {domain} already exists")
            session.add(VirtualDomain(name=domain))

    def remove_domain(self, name: str, *, force: bool = False) -> None:
        domain = normalise(name)
        with self._session(write=True) as session:
            domain_id = self._require_domain(session, domain)
            users = self._count(session, VirtualUser, domain_id)
            aliases = self._count(session, VirtualAlias, domain_id)
            if (users or aliases) and not force:
                raise DirectoryError(
                    f"domain {domain} still has {users} users and {aliases} aliases"
                    " (force removes them)"
                )
            # Explicit deletes: not every MySQL/SQLite setup enforces ON DELETE CASCADE.
            session.execute(delete(VirtualAlias).where(VirtualAlias.domain_id == domain_id))
            session.execute(delete(VirtualUser).where(VirtualUser.domain_id == domain_id))
            session.execute(delete(VirtualDomain).where(VirtualDomain.id == domain_id))

    @staticmethod
    def _count(
        session: Session, model: type[VirtualUser] | type[VirtualAlias], domain_id: int
    ) -> int:
        query = select(func.count()).select_from(model).where(model.domain_id == domain_id)
        return int(session.scalar(query) or 0)

    def list_domains(self) -> list[str]:
        with self._session(write=False) as session:
            return list(session.scalars(select(VirtualDomain.name).order_by(VirtualDomain.name)))

    # -- users ----------------------------------------------------------------------
    def add_user(self, address: str, password_hash: str, quota: int = 0) -> None:
        addr = normalise(address)
        validate_address(addr)
        _check_hash(password_hash)
        _check_quota(quota)
        values: dict[str, Any] = {"email": addr, "password": password_hash}
        if self.has_quota:
            values["quota"] = quota
        elif quota:
            raise DirectoryError(
                "this database has no quota column yet (mailroom directory migrate adds it)"
            )
        with self._session(write=True) as session:
            values["domain_id"] = self._require_domain(session, domain_of(addr))
            if self._user(session, addr) is not None:
                raise DirectoryError(f"user {addr} already exists")
            session.execute(insert(VirtualUser).values(**values))

    def set_password(self, address: str, password_hash: str) -> None:
        addr = normalise(address)
        _check_hash(password_hash)
        query = update(VirtualUser).where(VirtualUser.email == addr).values(password=password_hash)
        with self._session(write=True) as session:
            done = session.execute(query)
            if not getattr(done, "rowcount", 0):
                raise DirectoryError(f"no such user {addr}")

    def remove_user(self, address: str) -> None:
        addr = normalise(address)
        with self._session(write=True) as session:
            done = session.execute(delete(VirtualUser).where(VirtualUser.email == addr))
            if not getattr(done, "rowcount", 0):
                raise DirectoryError(f"no such user {addr}")

    def list_users(self, domain: str | None = None) -> list[User]:
        with self._session(write=False) as session:
            query = select(VirtualUser.email, self._quota).order_by(VirtualUser.email)
            if domain is not None:
                domain_id = self._require_domain(session, normalise(domain))
                query = query.where(VirtualUser.domain_id == domain_id)
            return [User(row.email, int(row.quota)) for row in session.execute(query)]

    # -- aliases --------------------------------------------------------------------
    def add_alias(self, source: str, destinations: list[str]) -> None:
        src = normalise(source)
        validate_alias_source(src)
        targets = list(dict.fromkeys(normalise(d) for d in destinations))
        if not targets:
            raise DirectoryError(f"alias {src} needs at least one destination")
        for target in targets:
            validate_address(target)
        with self._session(write=True) as session:
            domain_id = self._require_domain(session, domain_of(src))
            existing = set(self._destinations(session, src))
            for target in targets:
                if target in existing:
                    raise DirectoryError(f"alias {src} -> {target} already exists")
                session.add(VirtualAlias(domain_id=domain_id, source=src, destination=target))

    def remove_alias(self, source: str, destination: str | None = None) -> None:
        src = normalise(source)
        query = delete(VirtualAlias).where(VirtualAlias.source == src)
        if destination is not None:
            query = query.where(VirtualAlias.destination == normalise(destination))
        with self._session(write=True) as session:
            done = session.execute(query)
            if not getattr(done, "rowcount", 0):
                target = "" if destination is None else f" -> {normalise(destination)}"
                raise DirectoryError(f"no such alias {src}{target}")

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        with self._session(write=False) as session:
            query = select(VirtualAlias).order_by(VirtualAlias.source, VirtualAlias.id)
            if domain is not None:
                domain_id = self._require_domain(session, normalise(domain))
                query = query.where(VirtualAlias.domain_id == domain_id)
            return [Alias(row.source, row.destination) for row in session.scalars(query)]

    def close(self) -> None:
        self._engine.dispose()


def normalise(address: str) -> str:
    """ISPmail compares case-insensitively (MySQL collation); we store lower case."""
    return address.strip().lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def validate_domain(domain: str) -> None:
    """A hostname: dot-separated LDH labels, not an IP address, fits the column."""
    labels = domain.split(".")
    if (
        not domain
        or len(domain) > DOMAIN_MAX
        or any(len(label) > LABEL_MAX or not _LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise DirectoryError(f"invalid domain name {domain!r}")


def validate_address(address: str) -> None:
    """local@domain with one @, a plain non-empty local part and a hostname domain."""
    local, at, domain = address.partition("@")
    if (
        not at
        or not local
        or len(local) > LOCAL_PART_MAX
        or len(address) > ADDRESS_MAX
        or any(ch in _FORBIDDEN_LOCAL for ch in local)
    ):
        raise DirectoryError(f"invalid address {address!r}")
    validate_domain(domain)


def validate_alias_source(source: str) -> None:
    """An address, or `@domain` for the catch-all."""
    if source.startswith("@"):
        validate_domain(source[1:])
    else:
        validate_address(source)


def _check_hash(password_hash: str) -> None:
    """Keep the column's width and one-line shape; the hash itself never goes in a message."""
    if not password_hash or len(password_hash) > PASSWORD_HASH_MAX:
        raise DirectoryError(f"password hash must be 1 to {PASSWORD_HASH_MAX} characters")
    if any(ch in password_hash for ch in "\r\n\x00"):
        raise DirectoryError("password hash must be a single line")


def _check_quota(quota: int) -> None:
    if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
        raise DirectoryError("quota must be a whole number of bytes, 0 for unlimited")
