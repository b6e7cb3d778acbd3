"""Response encoding (RFC 3501 §7): strings as quoted or literal, NIL, lists, dates."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_QUOTED = 1024
_UNQUOTABLE = re.compile(rb"[^\x20-\x7e]")  # CTLs and 8-bit need a literal


def string(value: bytes | str | None) -> bytes:
    """nstring: NIL, a quoted string when safe, else a literal."""
    if value is None:
        return b"NIL"
    if (isinstance(value, str) and value.isascii() and value.isprintable() and len(value) <= MAX_QUOTED
            and '"' not in value and "\\" not in value):  # the common case: one copy, no regex scan
        return b'"' + value.encode("ascii") + b'"'
    # surrogateescape: header text keeps undecodable 8-bit bytes that way; they go back out
    # as the bytes they were (a strict encode raised, failing the whole FETCH).
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not _UNQUOTABLE.search(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def astring(value: str) -> bytes:
    """Mailbox names: an atom would do, a quoted string always does."""
    return string(value)


def plist(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


_FLAG_ORDER = {f: i for i, f in enumerate(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent"))}


@functools.lru_cache(maxsize=4096)
def flag_list(flags: frozenset[str]) -> bytes:
    """System flags in Dovecot's order, then keywords sorted; cached, as a folder has few
    distinct flag sets and FETCH 1:* FLAGS asks for thousands."""
    return plist(f.encode("utf-8") for f in sorted(flags, key=lambda f: (_FLAG_ORDER.get(f, len(_FLAG_ORDER)), f)))


def internal_date(stamp: float) -> bytes:
    """date-time: "17-Jul-1996 02:44:25 -0700" in local time, as Dovecot shows it."""
    t = time.localtime(stamp)
    offset = t.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hh, mm = divmod(abs(offset) // 60, 60)
    text = (f'"{t.tm_mday:2d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
            f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{hh:02d}{mm:02d}"')
    return text.encode("ascii")
