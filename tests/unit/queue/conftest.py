"""Fakes for queue tests: an in-memory Directory with ISPmail semantics and a settable clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.directory.base import AliasLoop, DirectoryUnavailable, User
from mailroom.queue.spool import Spool


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeDirectory:
    """Explicit alias rows win, then a mailbox, then a @domain catch-all (Directory.expand)."""

    MAX_DEPTH = 20

    def __init__(self) -> None:
        self.domains: set[str] = set()
        self.users: dict[str, User] = {}
        self.aliases: dict[str, list[str]] = {}
        self.unavailable = False

    def add_user(self, email: str, quota: int = 0) -> None:
        self.domains.add(email.split("@")[1])
        self.users[email] = User(email, quota)

    def add_alias(self, source: str, *destinations: str) -> None:
        self.domains.add(source.split("@")[1])
        self.aliases[source] = list(destinations)

    def _check(self) -> None:
        if self.unavailable:
            raise DirectoryUnavailable("database is down")

    def is_local_domain(self, domain: str) -> bool:
        self._check()
        return domain.lower() in self.domains

    def get_user(self, address: str) -> User | None:
        self._check()
        return self.users.get(address.lower())

    def expand(self, address: str) -> list[str]:
        self._check()
        result: list[str] = []
        self._expand(address.lower(), (), result)
        return result

    def _expand(self, address: str, path: tuple[str, ...], out: list[str]) -> None:
        domain = address.rpartition("@")[2]
        if domain not in self.domains:
            out.append(address) if address not in out else None
            return
        if address in path or len(path) > self.MAX_DEPTH:
            raise AliasLoop(address)
        targets = self.aliases.get(address)
        if targets is None and address in self.users:
            targets = []
            if address not in out:
                out.append(address)
        if targets is None:
            targets = self.aliases.get("@" + domain, [])
        for target in targets:
            if target == address and address in self.users:
                if address not in out:
                    out.append(address)
            else:
                self._expand(target.lower(), (*path, address), out)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory() -> FakeDirectory:
    d = FakeDirectory()
    d.add_user("john@example.org")
    d.add_user("lisa@example.org")
    d.add_user("fred@example.com")
    return d


@pytest.fixture
def spool(tmp_path: Path, clock: FakeClock):  # type: ignore[no-untyped-def]
    s = Spool(tmp_path / "queue", clock=clock)
    yield s
    s.close()
