"""Maildir file names: the `:2,` flags suffix, sizes in the base name, Dovecot keywords.

A message's flags live in its name (`<base>:2,<flags>[,<other>]`), so changing a flag
is a rename. System flags are the upper-case letters of the Maildir spec; keywords are
the letters a..z, mapped to names by the folder's `dovecot-keywords` file (Dovecot's
format: `<index> <name>` lines, 0 = a). Anything after a comma in the flags field and
upper-case letters we do not know are kept as they are, as Dovecot does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

INFO_SEPARATOR = ":2,"
# Maildir letter -> IMAP system flag (RFC 3501 §2.3.2). P (passed) has no IMAP flag.
SYSTEM_FLAGS: dict[str, str] = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
LETTER_OF = {flag.lower(): letter for letter, flag in SYSTEM_FLAGS.items()}
KEYWORDS_NAME = "dovecot-keywords"
MAX_KEYWORDS = 26  # one letter each, a..z
MAX_KEYWORDS_FILE = 64 * 1024  # a keywords file larger than this is not Dovecot's: ignore it
_SIZE_RE = re.compile(r",S=(\d+)")
_VSIZE_RE = re.compile(r",W=(\d+)")
_NO_KEYWORDS: frozenset[str] = frozenset()
_SIZES_RE = re.compile(r",S=(\d+),W=(\d+)(?:,|$)")
_ATOM_SPECIALS = frozenset('(){ %*"\\]')  # RFC 3501 §9 atom-specials (with CTLs and 8-bit)


@dataclass(frozen=True, slots=True)
class ParsedName:
    base: str  # unique part: never changes for the life of a message
    letters: str  # flag letters, upper- and lower-case, as found
    extra: str  # after a comma in the flags field (",..."), kept untouched
    has_info: bool  # the name carries a ":2," suffix (cur/ messages do)


def parse_name(name: str) -> ParsedName:
    base, sep, info = name.partition(INFO_SEPARATOR)
    if not sep:
        return ParsedName(name, "", "", False)
    letters, comma, extra = info.partition(",")
    return ParsedName(base, letters, comma + extra, True)


def build_name(base: str, letters: str, extra: str = "") -> str:
    """`base:2,<sorted letters><extra>`: the Maildir spec wants letters in ASCII order."""
    return f"{base}{INFO_SEPARATOR}{''.join(sorted(set(letters)))}{extra}"


def size_from_name(base: str) -> int | None:
    match = _SIZE_RE.search(base)
    return int(match.group(1)) if match else None


def vsize_from_name(base: str) -> int | None:
    match = _VSIZE_RE.search(base)
    return int(match.group(1)) if match else None


def sizes_from_base(base: str) -> tuple[int | None, int | None]:
    """(`,S=` size, `,W=` size) of a base name: split once instead of two regex searches."""
    both = _SIZES_RE.search(base)  # ",S=...,W=..." as Dovecot and mailroom write names
    if both is not None:
        return int(both[1]), int(both[2])
    size = vsize = None
    if "," in base:
        for field in base.split(",")[1:]:
            if field[:2] == "S=" and field[2:].isdigit():
                size = int(field[2:])
            elif field[:2] == "W=" and field[2:].isdigit():
                vsize = int(field[2:])
    return size, vsize


def is_valid_keyword(name: str) -> bool:
    """RFC 3501 flag-keyword: an atom (printable ASCII, no atom-specials), at most 128 chars."""
    return 0 < len(name) <= 128 and all(" " < ch < "\x7f" and ch not in _ATOM_SPECIALS for ch in name)


class Keywords:
    """One folder's letter <-> keyword map, read from and written to `dovecot-keywords`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / KEYWORDS_NAME
        self.names: list[str | None] = [None] * MAX_KEYWORDS
        self._stamp: tuple[int, int] | None = None

    @property
    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever the file is replaced: letter meanings may have moved."""
        return self._stamp

    def load(self) -> None:
        """Re-read the file if it changed (it is only ever replaced by rename)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.names, self._stamp = [None] * MAX_KEYWORDS, None
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        names: list[str | None] = [None] * MAX_KEYWORDS
        if st.st_size <= MAX_KEYWORDS_FILE:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for line in self.path.read_text("utf-8").splitlines():
                    index, _, name = line.partition(" ")
                    if index.isdigit() and int(index) < MAX_KEYWORDS and is_valid_keyword(name):
                        names[int(index)] = name
        self.names, self._stamp = names, stamp

    def letters_to_names(self, letters: str) -> frozenset[str]:
        if not letters or letters.isupper():
            return _NO_KEYWORDS  # no lower-case letter, no keyword: the common case
        found = set()
        for ch in letters:
            if "a" <= ch <= "z":
                name = self.names[ord(ch) - ord("a")]
                if name is not None:
                    found.add(name)
        return frozenset(found)

    def letter_for(self, name: str, *, create: bool) -> str | None:
        """The letter of keyword `name`; with `create`, assign a free one (caller holds the lock)."""
        folded = name.lower()
        for i, known in enumerate(self.names):
            if known is not None and known.lower() == folded:
                return chr(ord("a") + i)
        if not create or not is_valid_keyword(name):
            return None
        for i, known in enumerate(self.names):
            if known is None:
                self.names[i] = name
                self._save()
                return chr(ord("a") + i)
        return None  # all 26 letters taken: Dovecot keeps the rest in its index; we cannot

    def _save(self) -> None:
        text = "".join(f"{i} {n}\n" for i, n in enumerate(self.names) if n is not None)
        tmp = self.path.with_name(f"{KEYWORDS_NAME}.tmp.{os.getpid()}")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, self.path)  # readers take no lock: replace, never rewrite in place
        st = os.stat(self.path)
        self._stamp = (st.st_ino, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def letters_to_flags(letters: str) -> frozenset[str]:
    """Cached: a folder has few distinct flag strings but thousands of messages."""
    return frozenset(SYSTEM_FLAGS[ch] for ch in letters if ch in SYSTEM_FLAGS)


def flags_to_letters(flags: frozenset[str] | set[str]) -> str:
    return "".join(LETTER_OF[f.lower()] for f in flags if f.lower() in LETTER_OF)
