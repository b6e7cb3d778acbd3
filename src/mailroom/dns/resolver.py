"""The Resolver interface (A, AAAA, MX, TXT) and its dnspython implementation.

Contract, chosen so callers can follow Postfix's DNS_OK / DNS_NOTFOUND / DNS_RETRY split:
- a name that does not exist (NXDOMAIN) or has no record of the type (NODATA) gives [];
- anything that is not a definite answer (timeout, SERVFAIL, REFUSED, no reachable
  server, malformed reply) raises DnsTemporaryError.
Names are given without a trailing dot; returned host names have none either, so a
null MX (RFC 7505, "0 .") comes back as (0, "").
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailroom.dns.interface import DnsTemporaryError, Resolver

__all__ = ["DnsTemporaryError", "DnspythonResolver", "Resolver", "parse_nameserver"]

#: Seconds for one whole look-up (all servers, all retries): long enough for a slow
#: DNSBL, short enough that an SMTP client does not time out waiting for RCPT's answer.
LOOKUP_LIFETIME = 10.0


def parse_nameserver(entry: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address -> (host, port)."""
    port: str | None = None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest:
            port = rest[1:] if rest.startswith(":") else "bad"
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host = entry
    if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"bad nameserver '{entry}' (expected host[:port])")
    return host, 53 if port is None else int(port)


class DnspythonResolver:
    """Resolver over dnspython's asyncio resolver; `nameservers=None` uses the system's."""

    def __init__(
        self, nameservers: list[str] | None = None, lifetime: float = LOOKUP_LIFETIME
    ) -> None:
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port)
                for host, port in map(parse_nameserver, nameservers)
            ]
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = lifetime
        self._resolver.cache = None  # answers must follow the zone, not a process cache

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[object]:
        try:
            answer = await self._resolver.resolve(name.rstrip(".") + ".", rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTemporaryError(
                f"{name}/{dns.rdatatype.to_text(rdtype)}: {exc.__class__.__name__}"
            ) from exc
        return list(answer)

    async def a(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, dns.rdatatype.A)]  # type: ignore[attr-defined]

    async def aaaa(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, dns.rdatatype.AAAA)]  # type: ignore[attr-defined]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        records = await self._query(name, dns.rdatatype.MX)
        return sorted((r.preference, r.exchange.to_text().rstrip(".")) for r in records)  # type: ignore[attr-defined]

    async def txt(self, name: str) -> list[str]:
        records = await self._query(name, dns.rdatatype.TXT)
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]  # type: ignore[attr-defined]
