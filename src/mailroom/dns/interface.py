"""The Resolver interface alone, free of dnspython and asyncio imports, for pure cores.

Contract: NXDOMAIN or NODATA gives []; no definite answer raises DnsTemporaryError.
Names carry no trailing dot; a null MX (RFC 7505) is (0, ""). `mailroom.dns.resolver`
re-exports these next to the dnspython implementation.
"""

from __future__ import annotations

from typing import Protocol


class DnsTemporaryError(Exception):
    """No definite answer (timeout, SERVFAIL, ...): the caller should defer, not reject."""


class Resolver(Protocol):
    async def a(self, name: str) -> list[str]: ...

    async def aaaa(self, name: str) -> list[str]: ...

    async def mx(self, name: str) -> list[tuple[int, str]]: ...

    async def txt(self, name: str) -> list[str]: ...
