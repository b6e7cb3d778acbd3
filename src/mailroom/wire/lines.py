"""A bounded line buffer: bytes in, complete lines out, never more than a limit held.

SMTP, IMAP and POP3 are line protocols; an attacker who never sends a newline must
not make us buffer without end. A line longer than the limit is reported once
(`TOO_LONG`) and then discarded up to its newline, so the stream stays framed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Line:
    """One line without its terminator; `bare_lf` when it ended in LF without CR."""

    text: bytes
    bare_lf: bool

    @property
    def wire_length(self) -> int:
        """Octets on the wire including the terminator (RFC 5321 §4.5.3.1 counts CRLF)."""
        return len(self.text) + (1 if self.bare_lf else 2)


class _TooLong:
    """Marker: a line exceeded the limit; its remainder is being discarded. `head` is its
    first octets, so a protocol can still recognise what the line was (a BDAT whose
    chunk must not be read as commands)."""

    def __init__(self, head: bytes = b"") -> None:
        self.head = head

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG: Final = _TooLong()
HEAD_KEPT = 16  # octets of an overlong line kept in its marker


class LineBuffer:
    """Splits a byte stream into lines at LF; holds at most `max_line` octets."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return  # still inside the overlong line: drop it all
            self._discarding = False
            data = data[nl + 1 :]
        self._buf += data

    def next_line(self) -> Line | _TooLong | None:
        """The next complete line, TOO_LONG once per overlong line, or None for "need more"."""
        nl = self._buf.find(b"\n", 0, self.max_line)
        if nl < 0:
            if len(self._buf) < self.max_line:
                return None
            # No LF within max_line octets: the line (LF included) is too long.
            head = bytes(self._buf[:HEAD_KEPT])
            nl = self._buf.find(b"\n")
            if nl < 0:
                self._buf.clear()
                self._discarding = True
            else:
                del self._buf[: nl + 1]
            return _TooLong(head)
        raw = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        if raw.endswith(b"\r"):
            return Line(raw[:-1], bare_lf=False)
        return Line(raw, bare_lf=True)

    def take(self) -> bytes:
        """Hand every buffered byte to another reader (e.g. DATA) and empty the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def clear(self) -> None:
        """Drop everything buffered (RFC 3207 §6: plaintext sent after STARTTLS)."""
        self._buf.clear()
        self._discarding = False

    def __len__(self) -> int:
        return len(self._buf)
