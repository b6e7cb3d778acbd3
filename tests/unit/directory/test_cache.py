"""The directory cache: fewer queries, never stale after our own or another process's writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.directory.base import DirectoryUnavailable
from mailroom.directory.cache import CachedDirectory
from mailroom.directory.passwords import hash_password
from mailroom.directory.sql import SqlDirectory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A backend that counts look-ups and can be made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def is_local_domain(self, domain: str) -> bool:
        self.calls += 1
        if self.down:
            raise DirectoryUnavailable("database down")
        return domain.lower() == "example.org"


def test_hits_are_served_from_the_cache_until_the_ttl() -> None:
    clock, backend = Clock(), Counting()
    cache = CachedDirectory(backend, ttl=10, clock=clock)  # type: ignore[arg-type]
    assert cache.is_local_domain("EXAMPLE.org") and cache.is_local_domain("example.org")
    assert backend.calls == 1
    clock.now += 11
    assert cache.is_local_domain("example.org")
    assert backend.calls == 2


def test_failures_are_not_cached() -> None:
    clock, backend = Clock(), Counting()
    cache = CachedDirectory(backend, ttl=10, clock=clock)  # type: ignore[arg-type]
    backend.down = True
    with pytest.raises(DirectoryUnavailable):
        cache.is_local_domain("example.org")
    backend.down = False
    assert cache.is_local_domain("example.org")


def test_ttl_zero_disables_caching() -> None:
    backend = Counting()
    cache = CachedDirectory(backend, ttl=0)  # type: ignore[arg-type]
    cache.is_local_domain("example.org")
    cache.is_local_domain("example.org")
    assert backend.calls == 2


def test_another_process_write_is_seen_without_waiting_for_the_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    server_side = SqlDirectory(url, create=True)
    server_side.add_domain("example.org")
    clock = Clock()
    cache = CachedDirectory(server_side, ttl=3600, clock=clock)
    assert cache.expand("lisa@example.org") == []
    other = SqlDirectory(url)  # another process: the command line
    other.add_user("lisa@example.org", hash_password("x", "PLAIN"))
    other.close()
    clock.now += 1  # past the token check interval, far inside the TTL
    assert cache.expand("lisa@example.org") == ["lisa@example.org"]
    server_side.close()


def test_own_writes_invalidate(tmp_path: Path) -> None:
    cache = CachedDirectory(SqlDirectory(f"sqlite:///{tmp_path / 'd.db'}", create=True), ttl=3600, clock=Clock())
    assert not cache.is_local_domain("example.org")
    cache.add_domain("example.org")
    assert cache.is_local_domain("example.org")
    cache.close()
