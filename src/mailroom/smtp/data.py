"""DATA framing: find the end of a message and undo dot-stuffing (RFC 5321 §4.5.2).

Why this module is strict: SMTP smuggling (CVE-2023-51764 and kin) works when two
servers disagree on where a message ends. The ONLY terminator accepted here is
<CRLF>.<CRLF> (RFC 5321 §4.1.1.4), where the first CRLF may be the one that ended
the DATA command line. `\\n.\\n`, `\\n.\\r\\n`, `\\r.\\r\\n`, `\\r\\n.\\r` are message content.
With forbid_bare_newline, a bare LF anywhere makes the message fail, but only once
the real end is found, so the command stream stays in sync.

Speed: the reader looks only for b"\\r\\n." with bytes.find, counts newlines with
bytes.count (both in C) and joins the kept chunks once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINATOR = b"\r\n.\r\n"
# Longest tail that may be the start of a terminator split across two feeds.
_HOLD_BACK = len(TERMINATOR) - 1


@dataclass(frozen=True, slots=True)
class DataResult:
    """What the client sent between 354 and the terminator, judged."""

    message: bytes  # unstuffed; empty when refused (nothing beyond the limit is kept)
    size: int  # octets after unstuffing, counted even when discarded
    too_big: bool  # size > message_size_limit (RFC 1870 §6.3: 552 5.3.4)
    bare_lf: bool  # a LF without CR was seen (only meaningful when forbidden)


class DataReader:
    """Incremental DATA reader: feed() bytes until it reports where the message ended."""

    def __init__(self, size_limit: int, forbid_bare_newline: bool = True) -> None:
        self.size_limit = size_limit  # 0 = unlimited, as in Postfix's message_size_limit
        self.forbid_bare_newline = forbid_bare_newline
        # The CRLF that ended the DATA line counts as the start of the first line;
        # it is held here and never emitted.
        self._pending = b"\r\n"
        self._skip = 2
        self._chunks: list[bytes] = []
        self._size = 0
        self._bare_lf = False
        self._last_cr = False
        self._done = False
        self.result: DataResult | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Consume `data`; None while the message goes on, else the bytes after its end."""
        if self._done:
            raise ValueError("DataReader already finished")
        buf = self._pending + data
        pos = 0
        while True:
            hit = buf.find(b"\r\n.", pos)
            if hit < 0:
                keep_from = max(pos, len(buf) - _HOLD_BACK)
                self._emit(buf, pos, keep_from)
                self._pending = buf[keep_from:]
                return None
            if len(buf) < hit + len(TERMINATOR):
                self._emit(buf, pos, hit)
                self._pending = buf[hit:]
                return None
            if buf[hit + 3 : hit + 5] == b"\r\n":
                self._emit(buf, pos, hit + 2)  # the CRLF before the dot ends the last line
                self._finish()
                return buf[hit + 5 :]
            # RFC 5321 §4.5.2: a line starting with "." loses that first period.
            self._emit(buf, pos, hit + 2)
            pos = hit + 3

    def _emit(self, buf: bytes, start: int, end: int) -> None:
        if start < self._skip:
            # The held-back CRLF of the DATA line sits at buf[0:_skip]; never emit it.
            skipped = min(end, self._skip) - start
            start += skipped
            self._skip -= skipped
        if end <= start:
            return
        piece = buf[start:end]
        self._size += len(piece)
        if self.forbid_bare_newline and not self._bare_lf:
            bare = piece.count(b"\n") - piece.count(b"\r\n")
            if self._last_cr and piece[0:1] == b"\n":
                bare -= 1
            self._bare_lf = bare > 0
        self._last_cr = piece[-1:] == b"\r"
        if self._keeping():
            self._chunks.append(piece)
        else:
            self._chunks.clear()  # refused anyway: stop holding memory

    def _keeping(self) -> bool:
        over = self.size_limit > 0 and self._size > self.size_limit
        return not over and not self._bare_lf

    def _finish(self) -> None:
        self._done = True
        too_big = self.size_limit > 0 and self._size > self.size_limit
        keep = not too_big and not self._bare_lf
        self.result = DataResult(
            message=b"".join(self._chunks) if keep else b"",
            size=self._size,
            too_big=too_big,
            bare_lf=self._bare_lf,
        )
        self._chunks = []
        self._pending = b""
