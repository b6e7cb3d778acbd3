"""Postfix transport syntax and route selection: transport_maps, relayhost, local domains.

A route is `transport:nexthop` as in transport(5). The search for a recipient
user@sub.example.com follows transport(5) with Postfix's default
parent_domain_matches_transport_maps behaviour spelled with a leading dot:
`user@sub.example.com`, `sub.example.com`, `.example.com`, `.com`, then `*`.
An empty transport means "the default for this address class" (virtual for a
local domain, smtp otherwise); an empty nexthop means "the default nexthop"
(relayhost when set, else the recipient domain), as trivial-rewrite(8) does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailroom.config.types import split_list
from mailroom.routing.tables import LookupTable, lookup_first

SMTP_PORT = 25  # the "smtp" service (RFC 5321 §4.5.4.2 leaves the port to IANA)
# Service names Postfix resolves through /etc/services that matter for mail.
SERVICE_PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465}
# transport(5) names and what mailroom runs for them.
TRANSPORT_ALIASES = {"smtp": "smtp", "relay": "smtp", "virtual": "virtual", "local": "virtual",
                     "error": "error", "retry": "retry"}
UNAVAILABLE = "4.3.0 mail transport unavailable"  # Postfix's text for an unknown transport
MAX_NEXTHOPS = 10  # smtp(8) accepts a list of destinations; more than this is a typo


@dataclass(frozen=True, slots=True)
class Route:
    """Where qmgr sends a recipient: a transport name and its nexthop text."""

    transport: str  # smtp | virtual | error | retry
    nexthop: str  # "[127.0.0.1]:2626", "example.com", "5.1.1 User unknown", ...


@dataclass(frozen=True, slots=True)
class Nexthop:
    """One smtp destination: `[host]:port` (no MX look-up) or `domain:port` (MX)."""

    host: str  # a name or an IP literal, no brackets
    port: int
    use_mx: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if not self.use_mx else self.host
        return host if self.port == SMTP_PORT else f"{host}:{self.port}"


class RouteSyntaxError(ValueError):
    """A nexthop or transport entry that cannot be parsed."""


def parse_route(value: str) -> Route:
    """`transport:nexthop` (transport(5)); the nexthop may itself contain colons."""
    transport, colon, nexthop = value.strip().partition(":")
    if not colon:
        # transport(5) requires the colon; a bare word is a transport with no nexthop.
        nexthop = ""
    name = TRANSPORT_ALIASES.get(transport.strip().lower(), None if transport.strip() else "")
    if name is None:
        return Route("retry", f"{UNAVAILABLE} ({transport.strip()})")
    return Route(name, nexthop.strip())


def _port(text: str, whole: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    if text.lower() in SERVICE_PORTS:
        return SERVICE_PORTS[text.lower()]
    raise RouteSyntaxError(f"bad port '{text}' in destination '{whole}'")


def parse_nexthop(text: str, default_port: int = SMTP_PORT) -> Nexthop:
    """smtp(8) destination syntax: `domain`, `domain:port`, `[host]`, `[host]:port`,
    `[ipv6:2001:db8::1]` or `[2001:db8::1]:port` (IPv6 only inside brackets)."""
    text = text.strip()
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not host:
            raise RouteSyntaxError(f"bad destination '{text}'")
        if host.lower().startswith("ipv6:"):
            host = host[5:]
        if rest and not rest.startswith(":"):
            raise RouteSyntaxError(f"bad destination '{text}'")
        port = _port(rest[1:], text) if rest else default_port
        return Nexthop(host.rstrip(".").lower(), port, use_mx=False)
    host, colon, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if ":" in host:
        raise RouteSyntaxError(f"bad destination '{text}' (IPv6 addresses need [brackets])")
    if not host:
        raise RouteSyntaxError(f"bad destination '{text}'")
    port = _port(port_text, text) if colon else default_port
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    return Nexthop(host.rstrip(".").lower(), port, use_mx=not literal)


def parse_nexthops(text: str, default_port: int = SMTP_PORT) -> list[Nexthop]:
    """Postfix 3.5+: several destinations separated by comma or white space, tried in order."""
    items = split_list(text)
    if not items:
        raise RouteSyntaxError("empty destination")
    if len(items) > MAX_NEXTHOPS:
        raise RouteSyntaxError(f"more than {MAX_NEXTHOPS} destinations in '{text}'")
    return [parse_nexthop(item, default_port) for item in items]


def search_keys(address: str) -> list[str]:
    """transport(5) search order for one recipient, most specific first."""
    local, at, domain = address.rpartition("@")
    domain = domain.rstrip(".").lower() if at else ""
    keys = [address.lower()] if at and local else []
    if domain:
        keys.append(domain)
        labels = domain.split(".")
        keys += ["." + ".".join(labels[i:]) for i in range(1, len(labels))]
    keys.append("*")
    return keys


class Router:
    """Chooses each recipient's Route from transport_maps, relayhost and local domains.

    `is_local_domain` is the directory's virtual_mailbox_domains check; it may raise
    (e.g. DirectoryUnavailable) and the caller decides what that means.
    """

    def __init__(
        self,
        transport_maps: Sequence[LookupTable] = (),
        relayhost: str = "",
        is_local_domain: Callable[[str], bool] | None = None,
    ) -> None:
        self.transport_maps = list(transport_maps)
        self.relayhost = relayhost.strip()
        if self.relayhost:
            parse_nexthops(self.relayhost)  # fail at start-up, not at the first delivery
        self.is_local_domain = is_local_domain or (lambda _domain: False)

    def route(self, address: str) -> Route:
        domain = address.rpartition("@")[2].rstrip(".").lower()
        found: str | None = None
        for key in search_keys(address):
            found = lookup_first(self.transport_maps, key)
            if found is not None:
                break
        local = self.is_local_domain(domain) if domain else False
        if found is None:
            return Route("virtual", domain) if local else Route("smtp", self.relayhost or domain)
        route = parse_route(found)
        transport = route.transport or ("virtual" if local else "smtp")
        nexthop = route.nexthop
        if not nexthop and transport == "smtp":
            nexthop = self.relayhost or domain
        elif not nexthop:
            nexthop = domain
        return Route(transport, nexthop)

    def transport_name(self, address: str) -> str:
        """The queue manager's router: the name of the transport to hand the recipient to."""
        return self.route(address).transport
