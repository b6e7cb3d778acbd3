"""A read cache in front of the directory, like Postfix's proxymap, so each RCPT is not a query.

Entries live `ttl` seconds. Writes made through this object clear the cache at once;
writes by another process (the `mailroom user add` command line, another node) are
seen when the backend's change token moves (SQLite: the database and WAL files
change) or, where a backend has no token, within the TTL. Failures are never cached:
a database outage must not outlive the outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mailroom.directory.base import Alias, Directory, User

T = TypeVar("T")
TOKEN_CHECK_INTERVAL = 0.25  # seconds between looks at the backend's change token
MAX_ENTRIES = 100_000  # bound on memory; the cache starts over when it is full


class CachedDirectory:
    def __init__(self, backend: Directory, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._token: object = self._change_token()
        self._token_checked = clock()

    def _change_token(self) -> object:
        token = getattr(self.backend, "change_token", None)
        return token() if token is not None else None

    def _cached(self, kind: str, key: str, compute: Callable[[], T]) -> T:
        if self.ttl <= 0:
            return compute()
        now = self.clock()
        if now - self._token_checked >= TOKEN_CHECK_INTERVAL:
            self._token_checked = now
            token = self._change_token()
            if token != self._token:
                self._token = token
                self.invalidate()
        entry = self._entries.get((kind, key))
        if entry is not None and entry[0] > now:
            value: T = entry[1]
            return value
        value = compute()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[(kind, key)] = (now + self.ttl, value)
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- look-ups (cached) -----------------------------------------------------------------
    def is_local_domain(self, domain: str) -> bool:
        return self._cached("domain", domain.lower(), lambda: self.backend.is_local_domain(domain))

    def mailbox_exists(self, address: str) -> bool:
        return self._cached("mailbox", address.lower(), lambda: self.backend.mailbox_exists(address))

    def get_user(self, address: str) -> User | None:
        return self._cached("user", address.lower(), lambda: self.backend.get_user(address))

    def expand(self, address: str) -> list[str]:
        return list(self._cached("expand", address.lower(), lambda: tuple(self.backend.expand(address))))

    def verify_password(self, address: str, password: str) -> bool:
        return self.backend.verify_password(address, password)  # never cached

    # -- writes (pass through, then forget everything) ---------------------------------------
    def _write(self, action: Callable[[], T]) -> T:
        try:
            return action()
        finally:
            self.invalidate()

    def add_domain(self, name: str) -> None:
        self._write(lambda: self.backend.add_domain(name))

    def remove_domain(self, name: str, *, force: bool = False) -> None:
        self._write(lambda: self.backend.remove_domain(name, force=force))

    def list_domains(self) -> list[str]:
        return self.backend.list_domains()

    def add_user(self, address: str, password_hash: str, quota: int = 0) -> None:
        self._write(lambda: self.backend.add_user(address, password_hash, quota))

    def set_password(self, address: str, password_hash: str) -> None:
        self._write(lambda: self.backend.set_password(address, password_hash))

    def remove_user(self, address: str) -> None:
        self._write(lambda: self.backend.remove_user(address))

    def list_users(self, domain: str | None = None) -> list[User]:
        return self.backend.list_users(domain)

    def add_alias(self, source: str, destinations: list[str]) -> None:
        self._write(lambda: self.backend.add_alias(source, destinations))

    def remove_alias(self, source: str, destination: str | None = None) -> None:
        self._write(lambda: self.backend.remove_alias(source, destination))

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return self.backend.list_aliases(domain)

    def close(self) -> None:
        self.backend.close()
