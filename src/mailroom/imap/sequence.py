"""Sequence sets (RFC 3501 §9 sequence-set): "1,3:5,7:*", for message numbers or UIDs."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

MAX_NUMBER = 2**32 - 1
MAX_RANGES = 10_000  # parts in one set

Range = tuple[int | None, int | None]  # None stands for "*"


class SequenceError(ValueError):
    pass


def _number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or text.startswith("0") or len(text) > 10 or int(text) > MAX_NUMBER:
        raise SequenceError(f"Invalid sequence number: {text[:20]}")
    return int(text)


def parse_set(text: str) -> list[Range]:
    if not text:
        raise SequenceError("Empty sequence set")
    parts = text.split(",")
    if len(parts) > MAX_RANGES:
        raise SequenceError("Too many sequence ranges")
    out: list[Range] = []
    for part in parts:
        lo, colon, hi = part.partition(":")
        first = _number(lo)
        out.append((first, _number(hi) if colon else first))
    return out


def looks_like_set(text: str) -> bool:
    return bool(text) and all(c in "0123456789:,*" for c in text)


def resolve_seq(ranges: list[Range], count: int) -> list[int]:
    """Message numbers (1-based, sorted). Raises SequenceError past the mailbox's end."""
    found: set[int] = set()
    for lo, hi in ranges:
        a = count if lo is None else lo
        b = count if hi is None else hi
        a, b = min(a, b), max(a, b)
        if b > count or a < 1:
            raise SequenceError("Invalid messageset")
        found.update(range(a, b + 1))
    return sorted(found)


def resolve_uids(ranges: list[Range], uids: Sequence[int]) -> list[int]:
    """Existing UIDs (sorted `uids`) the set names; "*" is the highest UID (RFC 3501 §6.4.8)."""
    top = uids[-1] if uids else 0
    found: set[int] = set()
    for lo, hi in ranges:
        a = top if lo is None else lo
        b = top if hi is None else hi
        a, b = min(a, b), max(a, b)
        found.update(uids[bisect_left(uids, a) : bisect_right(uids, b)])
    return sorted(found)


def format_set(numbers: Sequence[int]) -> str:
    """Compact "1:3,7" form of sorted numbers (COPYUID, APPENDUID)."""
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(parts)
