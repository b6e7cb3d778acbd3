"""SMTP paths: `<[@route,...:]local@domain>` as RFC 5321 §4.1.2 and RFC 6531 §3.3 define them.

Parsed strictly (no RFC 822 comments or phrases, no bare addresses) because an
address that two programs split differently is how mail gets misrouted. The
source route is obsolete (RFC 5321 §3.6.1: MUST accept and MAY ignore) but kept
visible so logs show what the client really asked for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.1-3: these are the sizes every server must accept; we refuse more.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256  # including the angle brackets and the source route
MAX_LABEL = 63  # RFC 1035 §2.3.4

# RFC 5322 §3.2.3 atext, which RFC 5321 §4.1.2 Atom uses.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LETDIG = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class AddressError(ValueError):
    """The path is not RFC 5321 syntax; `utf8` when only SMTPUTF8 would have made it legal."""

    def __init__(self, reason: str, *, utf8: bool = False) -> None:
        super().__init__(reason)
        self.utf8 = utf8


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed reverse- or forward-path. `mailbox` is "" for the null sender <>."""

    mailbox: str
    source_route: tuple[str, ...] = ()  # ("a.example", "b.example") for <@a.example,@b.example:u@d>

    @property
    def local_part(self) -> str:
        return self.mailbox.rpartition("@")[0] if "@" in self.mailbox else self.mailbox

    @property
    def domain(self) -> str:
        return self.mailbox.rpartition("@")[2] if "@" in self.mailbox else ""

    @property
    def is_null(self) -> bool:
        return self.mailbox == ""

    def __str__(self) -> str:
        route = ",".join("@" + d for d in self.source_route)
        return f"<{route}:{self.mailbox}>" if route else f"<{self.mailbox}>"


def split_path(text: str) -> tuple[str, str]:
    """Split "<path> params" at the closing ">" that is not inside a quoted string."""
    if not text.startswith("<"):
        raise AddressError("path must be enclosed in <>")
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            rest = text[i + 1 :]
            if rest and not rest.startswith(" "):
                raise AddressError("junk after path")
            return text[: i + 1], rest.strip(" ")
    raise AddressError("unterminated path")


def parse_path(
    text: str, *, allow_utf8: bool, allow_null: bool = False, allow_postmaster: bool = False
) -> Path:
    """Parse "<...>" (brackets included); raise AddressError on anything not in the grammar."""
    if len(text.encode("utf-8")) > MAX_PATH:
        raise AddressError("path too long")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("path must be enclosed in <>")
    inner = text[1:-1]
    if not inner:
        if allow_null:
            return Path("")
        raise AddressError("null path not allowed here")
    if not inner.isascii() and not allow_utf8:
        raise AddressError("non-ASCII address without SMTPUTF8", utf8=True)
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise AddressError("source route without ':'")
        route = tuple(_route_domain(part) for part in adl.split(","))
    if allow_postmaster and not route and inner.lower() == "postmaster":
        return Path(inner)  # RFC 5321 §4.1.1.3: <Postmaster> without a domain
    local, domain = _split_mailbox(inner)
    _check_local_part(local)
    _check_domain(domain)
    return Path(f"{local}@{domain}", route)


def _route_domain(part: str) -> str:
    if not part.startswith("@"):
        raise AddressError("source route element must start with @")
    _check_domain(part[1:])
    return part[1:]


def _split_mailbox(inner: str) -> tuple[str, str]:
    if inner.startswith('"'):
        i, escaped = 1, False
        while i < len(inner):
            ch = inner[i]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                break
            i += 1
        else:
            raise AddressError("unterminated quoted local part")
        if inner[i + 1 : i + 2] != "@":
            raise AddressError("quoted local part must be followed by @")
        return inner[: i + 1], inner[i + 2 :]
    local, at, domain = inner.rpartition("@")
    if not at:
        raise AddressError("mailbox needs local@domain")
    return local, domain


def _check_local_part(local: str) -> None:
    """RFC 5321 §4.1.2 Dot-string / Quoted-string; RFC 6531 §3.3 adds UTF-8 to both."""
    if not local or len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part empty or longer than 64 octets")
    if local.startswith('"'):
        body, i = local[1:-1], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                # quoted-pairSMTP = "\" %d32-126
                if i + 1 >= len(body) or not (32 <= ord(body[i + 1]) <= 126):
                    raise AddressError("bad quoted-pair")
                i += 2
                continue
            if not (ch == " " or ch == "!" or 35 <= ord(ch) <= 126 and ch != "\\" or ord(ch) > 127):
                raise AddressError("bad character in quoted local part")
            i += 1
        return
    for atom in local.split("."):
        if not atom:
            raise AddressError("empty atom in local part")
        if any(ch not in _ATEXT and ord(ch) < 128 for ch in atom):
            raise AddressError("bad character in local part")


def _check_domain(domain: str) -> None:
    """RFC 5321 §4.1.2 Domain or address-literal (§4.1.3)."""
    if not domain or len(domain.encode("utf-8")) > MAX_DOMAIN:
        raise AddressError("domain empty or longer than 255 octets")
    if domain.startswith("["):
        _check_address_literal(domain)
        return
    for label in domain.split("."):
        if not label or len(label.encode("utf-8")) > MAX_LABEL:
            raise AddressError("empty or overlong domain label")
        for ch in label:
            if ord(ch) < 128 and ch not in _LETDIG and ch != "-":
                raise AddressError("bad character in domain")
        # sub-domain = Let-dig [Ldh-str]: no leading or trailing hyphen
        if label[0] == "-" or label[-1] == "-":
            raise AddressError("domain label starts or ends with '-'")


def _check_address_literal(domain: str) -> None:
    if not domain.endswith("]"):
        raise AddressError("unterminated address literal")
    body = domain[1:-1]
    try:
        if body[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(body[5:])
        else:
            ipaddress.IPv4Address(body)
    except ValueError as exc:
        # General-address-literal tags (§4.1.3) name nothing we can deliver to.
        raise AddressError("bad address literal") from exc
