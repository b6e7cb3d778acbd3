"""Value types of main.cf parameters: each turns Postfix's text form into a Python value.

A type raises ValueError with a short phrase ("bad time unit 'x'") that the caller
wraps with the file, line and parameter name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE = re.compile(r"^(\d+)([smhdw]?)$", re.IGNORECASE)
_LIST_SPLIT = re.compile(r"[\s,]+")
_TABLE_RE = re.compile(r"^[a-z][a-z0-9_]*:\S")
_HOSTPORT_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-*]*)):(?P<port>\d{1,5})$")


def split_list(text: str) -> list[str]:
    """Postfix list syntax: separated by commas and/or white space; empty items dropped.

    Braces group, as in `inline:{ a=b, c=d }`, so a table spec stays one item.
    """
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if depth == 0 and (ch == "," or ch.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        items.append("".join(current))
    return items


class Kind:
    """Base of every parameter type: `parse` text to value, `name` for the docs."""

    name = "string"

    def parse(self, text: str) -> Any:
        return text


class String(Kind):
    name = "string"


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(c if c else '""' for c in self.choices)

    def parse(self, text: str) -> str:
        value = text.strip().lower()
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(c or '(empty)' for c in self.choices)}")
        return value


class Bool(Kind):
    name = "yes/no"

    def parse(self, text: str) -> bool:
        value = text.strip().lower()
        if value in ("yes", "true"):
            return True
        if value in ("no", "false"):
            return False
        raise ValueError("expected yes or no")


@dataclass(frozen=True)
class Int(Kind):
    minimum: int = 0
    name = "integer"

    def parse(self, text: str) -> int:
        value = text.strip()
        if not re.fullmatch(r"-?\d+", value):
            raise ValueError("bad numerical value")
        number = int(value)
        if number < self.minimum:
            raise ValueError(f"must be at least {self.minimum}")
        return number


class Size(Int):
    """Byte counts, plain integers as in Postfix (message_size_limit = 10240000)."""

    name = "size (bytes)"


@dataclass(frozen=True)
class Time(Kind):
    """Postfix time: a number with an optional unit s, m, h, d, w; value in seconds."""

    default_unit: str = "s"
    name = "time (s m h d w)"

    def parse(self, text: str) -> int:
        match = _TIME_RE.match(text.strip())
        if not match:
            raise ValueError("bad time value (expected a number with unit s, m, h, d or w)")
        unit = (match.group(2) or self.default_unit).lower()
        return int(match.group(1)) * TIME_UNITS[unit]


class StrList(Kind):
    name = "list"

    def parse(self, text: str) -> list[str]:
        return split_list(text)


class CidrList(Kind):
    """mynetworks: addresses and CIDR blocks; IPv6 may be written Postfix's way, [::1]/128."""

    name = "CIDR list"

    def parse(self, text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in split_list(text):
            spec = item
            match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](/\d+)?", item)
            if match:
                spec = match.group(1) + (match.group(2) or "")
            try:
                networks.append(ipaddress.ip_network(spec, strict=False))
            except ValueError:
                raise ValueError(f"bad network address '{item}'") from None
        return networks


class RestrictionList(StrList):
    """Restriction names and their arguments; checked by the policy module at load time."""

    name = "restriction list"


class Path(Kind):
    name = "path"


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" = all addresses
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ListenList(Kind):
    """`host:port` items, `[::1]:port` for IPv6; an empty value turns the listener off."""

    name = "listen-address list"

    def parse(self, text: str) -> list[ListenAddress]:
        out = []
        for item in split_list(text):
            match = _HOSTPORT_RE.match(item)
            if not match:
                raise ValueError(f"bad listen address '{item}' (expected host:port or [ipv6]:port)")
            port = int(match.group("port"))
            if not 0 < port < 65536:
                raise ValueError(f"bad port in '{item}'")
            host = match.group("v6") or match.group("host") or ""
            if host == "*":
                host = ""
            if match.group("v6"):
                try:
                    ipaddress.IPv6Address(host)
                except ValueError:
                    raise ValueError(f"bad IPv6 address in '{item}'") from None
            out.append(ListenAddress(host, port))
        return out


class HostPortList(Kind):
    """`host[:port]` items (dns_nameservers)."""

    name = "host[:port] list"

    def parse(self, text: str) -> list[str]:
        items = split_list(text)
        for item in items:
            if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+|[0-9A-Fa-f:]+)(:\d{1,5})?", item):
                raise ValueError(f"bad host[:port] '{item}'")
        return items


class LookupTable(Kind):
    """`type:name` table references, e.g. `inline:{ a=b }` or `texthash:/etc/mailroom/transport`."""

    name = "lookup table list"

    def parse(self, text: str) -> list[str]:
        items = split_list(text)
        for item in items:
            if not _TABLE_RE.match(item):
                raise ValueError(f"bad lookup table '{item}' (expected type:name)")
        return items


class Mode(Kind):
    """An octal file mode such as 0660."""

    name = "octal mode"

    def parse(self, text: str) -> int:
        value = text.strip()
        if not re.fullmatch(r"0?[0-7]{3,4}", value):
            raise ValueError("bad octal file mode")
        return int(value, 8)
