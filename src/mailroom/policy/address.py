"""Where an envelope address really goes: the relay-safety half of reject_unauth_destination.

Postfix decides relaying on the address its resolver *routes*, not on the text after the
last '@'. With the defaults an ISPmail site runs (allow_percent_hack = yes,
swap_bangpath = yes, resolve_dequoted_address = yes) all of these leave the local domain:

    user%remote.com@local.org        percent hack   -> user@remote.com
    remote.com!user@local.org        bang path      -> user@remote.com
    user@remote.com@local.org        inner '@'      -> user@remote.com
    "user@remote.com"@local.org      dequoted       -> user@remote.com
    @a,@b:user@local.org             source route   (RFC 5321 §4.1.1.3: ignored here)

Postfix's trivial-rewrite marks an address whose local part still holds '@', '%' or '!'
as RESOLVE_FLAG_ROUTED, and permit_auth_destination refuses routed addresses while
allow_untrusted_routing = no (smtpd_check.c). mailroom does the same: a routed address is
never a local destination, whatever its outer domain. Everything here is pure; the only
look-up, "is this one of our domains", is a callable the caller injects.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

#: Routing operators in a local part (Postfix resolve.c: '@' always, '%' with
#: allow_percent_hack, '!' with swap_bangpath; both default to yes).
ROUTING_OPERATORS = frozenset("@%!")

#: RFC 5321 §4.5.1: "postmaster" without a domain must be accepted (case-insensitive).
POSTMASTER = "postmaster"

# RFC 1035 §2.3.1 labels, plus '_' which Postfix's valid_hostname() also accepts, plus
# any non-ASCII character (SMTPUTF8 domains; the directory decides whether they are ours).
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9_\-\u0080-\U0010ffff]{1,63}(?<!-)")
_MAX_DOMAIN = 255  # RFC 1035 §2.3.4


@dataclass(frozen=True, slots=True)
class Route:
    """An RCPT/MAIL address taken apart the way Postfix's resolver sees it."""

    address: str  # as given
    local_part: str  # dequoted (resolve_dequoted_address = yes)
    domain: str  # lower case, one trailing dot removed; "" when there is none
    source_route: bool  # an "@a,@b:" prefix was present (and is ignored)
    literal: bool  # domain is an address literal such as [192.0.2.1]
    valid: bool  # syntactically usable; an invalid address is never local
    final_domain: str  # where percent hack / bang path / inner '@' would move it

    @property
    def routed(self) -> bool:
        """Postfix RESOLVE_FLAG_ROUTED: the local part still carries a routing operator."""
        return any(c in ROUTING_OPERATORS for c in self.local_part)

    @property
    def bare_postmaster(self) -> bool:
        """The literal domainless "postmaster" of RFC 5321 §4.5.1."""
        return (
            self.valid
            and not self.domain
            and self.local_part.lower() == POSTMASTER
            and not self.routed
        )

    @property
    def normalized(self) -> str:
        """local@domain with the domain in lower case; the form given to the directory."""
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part

    def is_local(self, is_local_domain: Callable[[str], bool]) -> bool:
        """True only when the address truly routes to one of our domains.

        A routed local part, an address literal, a missing or malformed domain all say
        no (Postfix permit_auth_destination with allow_untrusted_routing = no).
        """
        if not self.valid or self.routed or self.literal or not self.local_part:
            return False
        if not self.domain:
            return self.bare_postmaster
        return is_local_domain(self.domain)

    def domain_is_ours(self, is_local_domain: Callable[[str], bool]) -> bool:
        """The outer domain is local (whether or not the local part is routed)."""
        return (
            self.valid and bool(self.domain) and not self.literal and is_local_domain(self.domain)
        )


@functools.lru_cache(maxsize=4096)
def route(address: str) -> Route:
    """Take an address apart; never raises (malformed input gives valid=False).

    Memoized: the SMTP adapter and several restrictions ask about the same address
    for one RCPT, and Route is immutable.
    """
    text = address.strip()
    if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
        text = text[1:-1]
    source_route = False
    if text.startswith("@"):
        # RFC 5321 §4.1.2 A-d-l: "@one,@two:" — drop it, route to what follows.
        colon = text.find(":")
        if colon < 0 or '"' in text[:colon]:
            return _invalid(address, source_route=True)
        text, source_route = text[colon + 1 :], True
    split = _split_at_last_at(text)
    if split is None:
        return _invalid(address, source_route)
    raw_local, raw_domain = split
    local = _dequote(raw_local)
    if local is None or any(ord(c) < 32 or c == "\x7f" for c in local):
        return _invalid(address, source_route)
    domain, valid = _normalize_domain(raw_domain)
    literal = domain.startswith("[")
    final = _final_domain(local, domain)
    return Route(address, local, domain, source_route, literal, valid, final)


def _invalid(address: str, source_route: bool) -> Route:
    return Route(address, "", "", source_route, False, False, "")


def _split_at_last_at(text: str) -> tuple[str, str | None] | None:
    """Split at the last '@' outside a quoted string; None when quotes do not balance."""
    in_quotes = escaped = False
    last_at = -1
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and in_quotes:
            escaped = True
        elif c == '"':
            in_quotes = not in_quotes
        elif c == "@" and not in_quotes:
            last_at = i
    if in_quotes or escaped:
        return None
    if last_at < 0:
        return text, None
    return text[:last_at], text[last_at + 1 :]


def _dequote(raw: str) -> str | None:
    """RFC 5321 §4.1.2 Quoted-string -> its content; a dot-atom stays as it is.

    A quote that does not enclose the whole local part ("a"b) is malformed: None.
    """
    if '"' not in raw:
        return raw
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return None
    out: list[str] = []
    escaped = False
    for c in raw[1:-1]:
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            return None
        else:
            out.append(c)
    return None if escaped else "".join(out)


def _normalize_domain(raw: str | None) -> tuple[str, bool]:
    """Lower-case, strip ONE trailing dot (Postfix dup_if_truncate: not "..")."""
    if raw is None:
        return "", True
    if raw.startswith("["):
        ok = raw.endswith("]") and len(raw) > 2 and _valid_literal(raw[1:-1])
        return raw.lower(), ok
    domain = raw
    if len(domain) > 1 and domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    domain = domain.lower()
    return domain, valid_hostname(domain)


def _valid_literal(inner: str) -> bool:
    """RFC 5321 §4.1.3 address literal body: IPv4 or "IPv6:..."."""
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def valid_hostname(name: str) -> bool:
    """Postfix valid_hostname(): dot-separated labels, no empty label, not all-numeric."""
    if not name or len(name) > _MAX_DOMAIN:
        return False
    labels = name.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def _final_domain(local: str, domain: str) -> str:
    """The next hop Postfix's resolver picks once it unwraps one routing operator.

    Mirrors resolve.c's order: an inner '@' (the last one) first, then a bang path
    (site!user -> user@site, first '!'), then the percent hack (last '%' -> '@').
    """
    if "@" in local:
        domain = local.rsplit("@", 1)[1]
    elif "!" in local:
        domain = local.split("!", 1)[0]
    elif "%" in local:
        domain = local.rsplit("%", 1)[1]
    else:
        return domain
    domain = domain.lower()
    if len(domain) > 1 and domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    return domain
