"""SEARCH keys (RFC 3501 §6.4.4) parsed into predicates over one message at a time.

Keys that need the message text (FROM, BODY, SENTSINCE...) or its date call lazy
loaders on the candidate, so a flags-only search never opens a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from mailroom.imap import mime
from mailroom.imap.grammar import Value
from mailroom.imap.sequence import (
    Range,
    SequenceError,
    looks_like_set,
    parse_set,
    resolve_seq,
    resolve_uids,
)

MAX_KEYS = 1000
MONTHS = {m.lower(): i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}


class SearchError(ValueError):
    pass


@dataclass
class Candidate:
    seq: int
    uid: int
    flags: frozenset[str]
    size: int
    load: Callable[[], bytes | None]  # the message, CRLF line ends
    date: Callable[[], float]  # INTERNALDATE
    recent: bool = False
    _data: bytes | None = field(default=None, repr=False)
    _headers: Message | None = field(default=None, repr=False)

    def data(self) -> bytes:
        if self._data is None:
            self._data = self.load() or b""
        return self._data

    def headers(self) -> Message:
        if self._headers is None:
            self._headers = mime.parse(self.data()).headers
        return self._headers


@dataclass
class Context:
    uids: list[int]  # the mailbox's UIDs in sequence order
    count: int


Predicate = Callable[[Candidate, Context], bool]


def parse_date(value: Value) -> dt.date:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise SearchError("Invalid date")
    parts = text.split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or parts[1].lower() not in MONTHS:
        raise SearchError(f"Invalid date: {text[:30]}")
    try:
        return dt.date(int(parts[2]), MONTHS[parts[1].lower()], int(parts[0]))
    except ValueError:
        raise SearchError(f"Invalid date: {text[:30]}") from None


def _text(value: Value) -> str:
    if isinstance(value, list):
        raise SearchError("Expected a string")
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else value).lower()


def _contains(haystack: bytes, needle: str) -> bool:
    return needle.encode("utf-8") in haystack.lower() if needle else True


def _header_has(name: str, needle: str) -> Predicate:
    def check(c: Candidate, ctx: Context) -> bool:
        values = c.headers().get_all(name) or []
        if not values:
            return False
        return any(needle in str(v).lower() for v in values)
    return check


def _sent_date(c: Candidate) -> dt.date | None:
    from email.utils import parsedate_to_datetime
    value = c.headers().get("date")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(str(value)).date()
    except (TypeError, ValueError, IndexError):
        return None


def _internal(c: Candidate) -> dt.date:
    return dt.datetime.fromtimestamp(c.date()).date()


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False), "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False),
}


class _Parser:
    def __init__(self, args: list[Value], *, uid_mode: bool) -> None:
        self.args = args
        self.pos = 0
        self.keys = 0
        self.uid_mode = uid_mode

    def take(self) -> Value:
        if self.pos >= len(self.args):
            raise SearchError("Missing search parameter")
        value = self.args[self.pos]
        self.pos += 1
        return value

    def all(self) -> list[Predicate]:
        out: list[Predicate] = []
        while self.pos < len(self.args):
            out.append(self.key(0))
        if not out:
            raise SearchError("Missing search parameters")
        return out

    def key(self, depth: int) -> Predicate:
        self.keys += 1
        if self.keys > MAX_KEYS or depth > 50:
            raise SearchError("Too complex search")
        value = self.take()
        if isinstance(value, list):
            sub = _Parser(value, uid_mode=self.uid_mode)
            sub.keys = self.keys
            preds = sub.all()
            self.keys = sub.keys
            return lambda c, ctx: all(p(c, ctx) for p in preds)
        if isinstance(value, bytes):
            raise SearchError("Unknown search key")
        name = value.upper()
        if name == "ALL":
            return lambda c, ctx: True
        if name in _FLAG_KEYS:
            flag, want = _FLAG_KEYS[name]
            return lambda c, ctx: (flag in c.flags) == want
        if name == "RECENT":
            return lambda c, ctx: c.recent
        if name == "OLD":
            return lambda c, ctx: not c.recent
        if name == "NEW":
            return lambda c, ctx: c.recent and "\\Seen" not in c.flags
        if name in ("KEYWORD", "UNKEYWORD"):
            word = _text(self.take())
            want = name == "KEYWORD"
            return lambda c, ctx: any(f.lower() == word for f in c.flags) == want
        if name in ("BCC", "CC", "FROM", "SUBJECT", "TO"):
            return _header_has(name.lower(), _text(self.take()))
        if name == "HEADER":
            field_name = _text(self.take())
            needle = _text(self.take())
            return _header_has(field_name, needle)
        if name == "BODY":
            needle = _text(self.take())
            return lambda c, ctx: _contains(mime.split_header(c.data())[1], needle)
        if name == "TEXT":
            needle = _text(self.take())
            return lambda c, ctx: _contains(c.data(), needle)
        if name in ("BEFORE", "ON", "SINCE"):
            day = parse_date(self.take())
            return _date_check(name, day, _internal)
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = parse_date(self.take())
            return _date_check(name[4:], day, _sent_date)
        if name in ("LARGER", "SMALLER"):
            raw = self.take()
            if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 20:
                raise SearchError("Invalid size")
            size = int(raw)
            if name == "LARGER":
                return lambda c, ctx: c.size > size
            return lambda c, ctx: c.size < size
        if name == "NOT":
            inner = self.key(depth + 1)
            return lambda c, ctx: not inner(c, ctx)
        if name == "OR":
            left = self.key(depth + 1)
            right = self.key(depth + 1)
            return lambda c, ctx: left(c, ctx) or right(c, ctx)
        if name == "UID":
            raw = self.take()
            if not isinstance(raw, str):
                raise SearchError("Invalid UID set")
            return _uid_set(_set(raw))
        if looks_like_set(value):
            return _seq_set(_set(value))
        raise SearchError(f"Unknown argument {value[:30]}")


def _set(text: str) -> list[Range]:
    try:
        return parse_set(text)
    except SequenceError as exc:
        raise SearchError(str(exc)) from None


def _uid_set(ranges: list[Range]) -> Predicate:
    cache: dict[int, frozenset[int]] = {}

    def check(c: Candidate, ctx: Context) -> bool:
        if 0 not in cache:
            cache[0] = frozenset(resolve_uids(ranges, ctx.uids))
        return c.uid in cache[0]
    return check


def _seq_set(ranges: list[Range]) -> Predicate:
    cache: dict[int, frozenset[int]] = {}

    def check(c: Candidate, ctx: Context) -> bool:
        if 0 not in cache:
            # Out-of-range numbers simply match nothing in SEARCH.
            clipped: list[Range] = []
            for lo, hi in ranges:
                a = ctx.count if lo is None else lo
                b = ctx.count if hi is None else hi
                a, b = min(a, b), max(a, b)
                if ctx.count and 1 <= a <= ctx.count:
                    clipped.append((a, min(b, ctx.count)))
            cache[0] = frozenset(resolve_seq(clipped, ctx.count)) if clipped else frozenset()
        return c.seq in cache[0]
    return check


def _date_check(kind: str, day: dt.date, get: Callable[[Candidate], dt.date | None]) -> Predicate:
    def check(c: Candidate, ctx: Context) -> bool:
        value = get(c)
        if value is None:
            return False
        if kind == "BEFORE":
            return value < day
        if kind == "ON":
            return value == day
        return value >= day
    return check


def parse_search(args: list[Value], *, uid_mode: bool = False) -> Predicate:
    """The whole SEARCH program; a leading CHARSET is checked by the caller."""
    preds = _Parser(args, uid_mode=uid_mode).all()
    return lambda c, ctx: all(p(c, ctx) for p in preds)
