"""From a Nexthop to the addresses to try, in order (RFC 5321 §5.1, RFC 7505).

Rules, each as smtp(8) applies them:
- `[host]:port`: the host's A then AAAA records, no MX look-up.
- `domain`: its MX records by preference, shuffled among equal preferences
  (RFC 5321 §5.1 "MUST be randomized"); no MX at all means the implicit MX, the
  domain's own A/AAAA (RFC 5321 §5.1); a lone null MX "0 ." means the domain takes
  no mail: bounce at once (RFC 7505 §3, status 5.1.10 from its IANA section).
- a CNAME at the domain or at an MX host is followed by the recursive resolver
  (dnspython returns the records of the canonical name), RFC 5321 §5.1 "processed
  as if it were the initial domain".
- if this host is one of the MX hosts (by name or by listening address), only
  the strictly more preferred ones are kept; none left means a mail loop
  (RFC 5321 §5.1, Postfix's "mail for %s loops back to myself", 5.4.6).
- a DNS answer that is not definite defers (4.4.3); a name that does not exist
  bounces (5.4.4), unless another look-up for the same mail only failed for now.
IPv4 addresses come before IPv6 for each host: many hosts have a broken v6 route.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass

from mailroom.dns.interface import DnsTemporaryError, Resolver
from mailroom.routing.transport import Nexthop

MAX_MX_HOSTS = 20  # more MX records than this are not a real mail setup; bound the look-ups


@dataclass(frozen=True, slots=True)
class Candidate:
    """One address to connect to, with the name it was found under."""

    host: str  # the MX (or [host]) name, or the literal address
    ip: str
    port: int
    pref: int = 0

    @property
    def label(self) -> str:
        """Postfix's `host[ip]:port`, used in relay= and in reasons."""
        return f"{self.host}[{self.ip}]:{self.port}"

    @property
    def peer(self) -> str:
        """Postfix's `host[ip]` (reply texts leave the port out)."""
        return f"{self.host}[{self.ip}]"


class RouteFailure(Exception):
    """No address to try: `permanent` bounces, otherwise the recipient is deferred."""

    def __init__(self, dsn: str, reason: str) -> None:
        super().__init__(reason)
        self.dsn = dsn
        self.reason = reason

    @property
    def permanent(self) -> bool:
        return self.dsn.startswith("5")


class SelfCheck:
    """Is an MX host this mail system? By name (myhostname) or by the address and
    port it listens on; a wildcard listener owns loopback and `local_ips`."""

    _WILDCARDS = ("", "0.0.0.0", "::", "*")

    def __init__(
        self,
        hostnames: Iterable[str] = (),
        listeners: Iterable[tuple[str, int]] = (),
        local_ips: Iterable[str] = (),
    ) -> None:
        self.hostnames = {h.rstrip(".").lower() for h in hostnames if h}
        self.listeners = [(h.strip("[]"), p) for h, p in listeners]
        self.local_ips = {_norm_ip(ip) for ip in local_ips}

    def is_self_name(self, host: str) -> bool:
        return host.rstrip(".").lower() in self.hostnames

    def is_self_address(self, ip: str, port: int) -> bool:
        addr = _norm_ip(ip)
        for host, lport in self.listeners:
            if lport != port:
                continue
            if host in self._WILDCARDS:
                if addr in self.local_ips or ipaddress.ip_address(addr).is_loopback:
                    return True
            elif _norm_ip(host) == addr:
                return True
        return False


def _norm_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower()


def _not_found(name: str, rtype: str, temporary: bool) -> str:
    """Postfix's dns_lookup texts, kept so log searches written for Postfix still work."""
    tail = "Host not found, try again" if temporary else "Host not found"
    return f"Host or domain name not found. Name service error for name={name} type={rtype}: {tail}"


async def host_addresses(resolver: Resolver, host: str) -> tuple[list[str], str | None]:
    """A then AAAA of one host: (addresses, text of a temporary failure or None).

    A temporary failure of one family does not hide the other's answer: smtp(8)
    uses what it could look up.
    """
    try:
        return [str(ipaddress.ip_address(host))], None
    except ValueError:
        pass
    found: list[str] = []
    temp: str | None = None
    for rtype, lookup in (("A", resolver.a), ("AAAA", resolver.aaaa)):
        try:
            found += await lookup(host)
        except DnsTemporaryError:
            temp = _not_found(host, rtype, temporary=True)
    return found, temp


async def _addresses_or_fail(resolver: Resolver, host: str, port: int, pref: int) -> list[Candidate]:
    addrs, temp = await host_addresses(resolver, host)
    if not addrs:
        if temp:
            raise RouteFailure("4.4.3", temp)
        raise RouteFailure("5.4.4", _not_found(host, "A", temporary=False))
    return [Candidate(host, ip, port, pref) for ip in addrs]


def order_mx(records: list[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """Sort by preference, shuffling equal preferences (RFC 5321 §5.1)."""
    shuffled = list(records)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda r: r[0])  # sorted() is stable: the shuffle survives


async def resolve_nexthop(
    resolver: Resolver,
    nexthop: Nexthop,
    *,
    rng: random.Random | None = None,
    self_check: SelfCheck | None = None,
) -> list[Candidate]:
    """Every address to try for one destination, best first; RouteFailure if none."""
    if not nexthop.use_mx:
        return await _addresses_or_fail(resolver, nexthop.host, nexthop.port, 0)
    rng = rng or random.Random()
    domain = nexthop.host
    try:
        records = await resolver.mx(domain)
    except DnsTemporaryError:
        raise RouteFailure("4.4.3", _not_found(domain, "MX", temporary=True)) from None
    real = [(pref, host) for pref, host in records if host]
    if records and not real:
        # RFC 7505 §3: "0 ." alone; IANA 5.1.10 "Recipient address has null MX".
        raise RouteFailure("5.1.10", f"Domain {domain} does not accept mail (nullMX)")
    check = self_check or SelfCheck()
    if not real:
        candidates = await _addresses_or_fail(resolver, domain, nexthop.port, 0)  # implicit MX
        if any(check.is_self_address(c.ip, c.port) for c in candidates) or check.is_self_name(domain):
            raise RouteFailure("5.4.6", f"mail for {domain} loops back to myself")
        return candidates
    ordered = order_mx(real, rng)[:MAX_MX_HOSTS]
    best_pref = ordered[0][0]
    out: list[Candidate] = []
    temp: str | None = None
    last_missing: str | None = None
    self_pref: int | None = None
    for pref, host in ordered:
        if self_pref is not None and pref >= self_pref:
            break
        if check.is_self_name(host):
            self_pref = pref
            break
        addrs, host_temp = await host_addresses(resolver, host)
        temp = host_temp or temp
        if not addrs and not host_temp:
            last_missing = _not_found(host, "A", temporary=False)
        if any(check.is_self_address(ip, nexthop.port) for ip in addrs):
            self_pref = pref
            break
        out += [Candidate(host, ip, nexthop.port, pref) for ip in addrs]
    if self_pref is not None:
        out = [c for c in out if c.pref < self_pref]  # RFC 5321 §5.1: discard ours and worse
        if not out:
            if self_pref == best_pref:
                raise RouteFailure("5.4.6", f"mail for {domain} loops back to myself")
            raise RouteFailure("4.4.4", f"unable to find primary relay for {domain}")
    if not out:
        if temp:
            raise RouteFailure("4.4.3", temp)
        raise RouteFailure("5.4.4", last_missing or _not_found(domain, "MX", temporary=False))
    return out


async def resolve_nexthops(
    resolver: Resolver,
    nexthops: list[Nexthop],
    *,
    rng: random.Random | None = None,
    self_check: SelfCheck | None = None,
) -> list[Candidate]:
    """Several destinations (Postfix 3.5 list syntax): their candidates in order.

    Fails only when every destination fails; a temporary failure wins over a
    permanent one so a half-broken list is retried rather than bounced.
    """
    out: list[Candidate] = []
    failures: list[RouteFailure] = []
    for nexthop in nexthops:
        try:
            out += await resolve_nexthop(resolver, nexthop, rng=rng, self_check=self_check)
        except RouteFailure as exc:
            failures.append(exc)
    if out:
        return out
    temporary = [f for f in failures if not f.permanent]
    raise (temporary or failures)[-1]
