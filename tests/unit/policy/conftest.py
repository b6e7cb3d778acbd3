"""In-memory stand-ins for the Directory and the Resolver, just big enough for policy tests."""

from __future__ import annotations

import pytest

from mailroom.directory.base import AliasLoop, DirectoryUnavailable
from mailroom.dns.interface import DnsTemporaryError


class FakeDirectory:
    """ISPmail look-ups over dicts: domains, mailboxes, alias rows (source -> destinations)."""

    def __init__(
        self,
        domains: set[str] | None = None,
        users: set[str] | None = None,
        aliases: dict[str, list[str]] | None = None,
    ) -> None:
        self.domains = {d.lower() for d in (domains or set())}
        self.users = {u.lower() for u in (users or set())}
        self.aliases = {k.lower(): v for k, v in (aliases or {}).items()}
        self.unavailable = False
        self.calls: list[tuple[str, str]] = []

    def _check(self, method: str, arg: str) -> None:
        self.calls.append((method, arg))
        if self.unavailable:
            raise DirectoryUnavailable("database is locked")

    def is_local_domain(self, domain: str) -> bool:
        self._check("is_local_domain", domain)
        return domain.lower() in self.domains

    def mailbox_exists(self, address: str) -> bool:
        self._check("mailbox_exists", address)
        return address.lower() in self.users

    def expand(self, address: str, _depth: int = 0) -> list[str]:
        self._check("expand", address)
        if _depth > 20:
            raise AliasLoop(address)
        addr = address.lower()
        local, _, domain = addr.rpartition("@")
        if domain not in self.domains:
            return [address]
        targets = self.aliases.get(addr)
        if targets is None and addr in self.users:
            return [addr]
        if targets is None:
            targets = self.aliases.get("@" + domain)
        out: list[str] = []
        for target in targets or []:
            if target.lower() == addr:
                out.append(addr)
                continue
            for final in self.expand(target, _depth + 1):
                if final not in out:
                    out.append(final)
        return out


class FakeResolver:
    """Records by (type, name); names in `failing` raise DnsTemporaryError for every type."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[object]] = {}
        self.failing: set[str] = set()
        self.queries: list[tuple[str, str]] = []

    def add(self, rtype: str, name: str, *values: object) -> FakeResolver:
        self.records.setdefault((rtype, name.lower()), []).extend(values)
        return self

    def _get(self, rtype: str, name: str) -> list[object]:
        self.queries.append((rtype, name))
        if name.lower() in self.failing:
            raise DnsTemporaryError(f"{name}: SERVFAIL")
        return list(self.records.get((rtype, name.lower()), []))

    async def a(self, name: str) -> list[str]:
        return [str(v) for v in self._get("A", name)]

    async def aaaa(self, name: str) -> list[str]:
        return [str(v) for v in self._get("AAAA", name)]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        return [v for v in self._get("MX", name) if isinstance(v, tuple)]

    async def txt(self, name: str) -> list[str]:
        return [str(v) for v in self._get("TXT", name)]


@pytest.fixture
def directory() -> FakeDirectory:
    """The demo data of `mailroom init --demo`, plus a second domain with a catch-all."""
    return FakeDirectory(
        domains={"example.org", "example.net"},
        users={"john@example.org", "jane@example.org", "joe@example.net"},
        aliases={
            "postmaster@example.org": ["john@example.org"],
            "team@example.org": ["john@example.org", "jane@example.org"],
            "@example.net": ["joe@example.net"],
        },
    )


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver()
