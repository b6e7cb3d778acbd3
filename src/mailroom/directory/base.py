"""The one interface every part of mailroom uses to ask about domains, users and aliases.

The ISPmail schema (virtual_domains, virtual_users, virtual_aliases) sits behind it;
SQLite is the default backend, PostgreSQL and MariaDB come through the same code.
Methods are synchronous: SQLite answers in microseconds and adapters that need
isolation from a slow server run them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class DirectoryError(Exception):
    """A request the directory refuses (unknown domain, duplicate user, ...); message is one line."""


class DirectoryUnavailable(DirectoryError):
    """The database cannot be reached or read: callers answer with a temporary failure."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable  # no answer at all (as opposed to a database that is wrong)


class AliasLoop(DirectoryError):
    """Alias expansion went round in a circle or too deep."""


@dataclass(frozen=True, slots=True)
class User:
    email: str
    quota: int  # bytes; 0 = unlimited (ISPmail's convention)


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "user@domain" or "@domain" for a catch-all
    destination: str


class Directory(Protocol):
    """Look-ups the protocols need, plus the writes the command line makes.

    Addresses are compared case-insensitively; callers pass them as received and
    the directory normalises (lower-case domain, lower-case local part, as ISPmail's
    MySQL collation does).
    """

    # -- look-ups -----------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool: ...

    def mailbox_exists(self, address: str) -> bool: ...

    def get_user(self, address: str) -> User | None: ...

    def expand(self, address: str) -> list[str]:
        """Final destinations of `address` after virtual alias expansion.

        Explicit alias rows win, then a mailbox of that name, then a `@domain`
        catch-all; expansion recurses (loop-checked, raising AliasLoop) and returns
        each destination once, in order. An address in a local domain with no user,
        alias or catch-all gives []. An address in a remote domain gives [address].
        """
        ...

    def verify_password(self, address: str, password: str) -> bool: ...

    # -- administration (transactional) -------------------------------------------
    def add_domain(self, name: str) -> None: ...

    def remove_domain(self, name: str, *, force: bool = False) -> None: ...

    def list_domains(self) -> list[str]: ...

    def add_user(self, address: str, password_hash: str, quota: int = 0) -> None: ...

    def set_password(self, address: str, password_hash: str) -> None: ...

    def remove_user(self, address: str) -> None: ...

    def list_users(self, domain: str | None = None) -> list[User]: ...

    def add_alias(self, source: str, destinations: list[str]) -> None: ...

    def remove_alias(self, source: str, destination: str | None = None) -> None: ...

    def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    def close(self) -> None: ...
