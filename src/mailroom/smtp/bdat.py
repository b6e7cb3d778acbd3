"""RFC 3030 CHUNKING: the BDAT command's argument, its chunks, and the message they make.

A BDAT chunk is framed by its octet count, never by its content: nothing in it (a
"\\r\\n.\\r\\n", a line that looks like a command, a bare LF) ends it or is unstuffed.
The server core reads every chunk whose count it could parse, even one it refuses,
so the command stream stays in sync (as Postfix does); only a count it cannot parse
ends the session (521), because then no one knows where the next command starts.

`ChunkReader` takes one chunk's octets out of the byte stream, handing them to a
`ChunkedMessage` (or dropping them when the chunk is refused); `ChunkedMessage` keeps
the accepted chunks of one transfer and judges the whole at BDAT LAST with the same
rules as DATA (bare LF, and the caller's size and header checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailroom.smtp.replies import Reply

# Postfix reads the count into an off_t: a larger one is a syntax error there too.
MAX_CHUNK = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class BdatArgs:
    size: int
    last: bool


def parse_bdat(argument: str) -> BdatArgs | None:
    """`bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]` (RFC 3030 §2); None = bad syntax.

    Like Postfix, words may be separated by any run of blanks, the count may have
    leading zeros and LAST is case-insensitive.
    """
    words = argument.split()
    if not 1 <= len(words) <= 2 or not _DIGITS.match(words[0]):
        return None
    digits = words[0].lstrip("0") or "0"
    if len(digits) > len(str(MAX_CHUNK)):
        return None  # too big, and int() of thousands of digits would raise (or be slow)
    size = int(digits)
    if size > MAX_CHUNK:
        return None
    if len(words) == 2 and words[1].upper() != "LAST":
        return None
    return BdatArgs(size, len(words) == 2)


class ChunkedMessage:
    """The accepted chunks of one BDAT transfer (from the first BDAT to BDAT LAST).

    `failed` is Postfix's error state: a chunk of this transfer was refused, so every
    further chunk is read and discarded ("551 5.0.0 Discarded N bytes after earlier
    error") until LAST ends the transfer. Memory stays bounded: the caller refuses a
    chunk that would take the transfer past message_size_limit before reading it, and
    once a forbidden bare LF is seen nothing more is kept (the message is refused).
    """

    def __init__(self, forbid_bare_newline: bool = True, *, failed: bool = False) -> None:
        self.forbid_bare_newline = forbid_bare_newline
        self.failed = failed
        self.size = 0  # octets of the accepted chunks
        self.bare_lf = False  # a LF without CR before it (only tracked when forbidden)
        # One growing buffer, not a list of pieces: a client sending a million tiny
        # chunks must not cost a Python object (and its overhead) per chunk.
        self._data = bytearray()
        self._last_cr = False

    def append(self, piece: bytes) -> None:
        if not piece:
            return
        self.size += len(piece)
        if self.forbid_bare_newline and not self.bare_lf:
            # A CR ending one piece and the LF starting the next are one CRLF, wherever
            # the chunks or the reads were split.
            bare = piece.count(b"\n") - piece.count(b"\r\n")
            if self._last_cr and piece[0] == 0x0A:
                bare -= 1
            if bare > 0:
                self.bare_lf = True
                self._data = bytearray()  # refused at LAST anyway: stop holding memory
        self._last_cr = piece[-1] == 0x0D
        if not self.bare_lf:
            self._data += piece

    def message(self) -> bytes:
        """The message as queued: the chunks joined, its last line ended with CRLF.

        A message whose last line has no line end gets a CRLF, as Postfix's record
        stream does (it counts and delivers that line as a full one); the queue then
        holds what a DATA transfer of the same text would have given.
        """
        data = bytes(self._data)
        self._data = bytearray()
        if data and not data.endswith(b"\n"):
            data += b"\r\n"
        return data


class ChunkReader:
    """Reads exactly `size` octets of the stream as one chunk.

    `sink` gets the octets of an accepted chunk; a refused chunk has no sink and its
    `refusal` is the reply owed once all of it has been read and dropped.
    """

    def __init__(self, args: BdatArgs, sink: ChunkedMessage | None, refusal: Reply | None = None) -> None:
        self.size = args.size
        self.last = args.last
        self.sink = sink
        self.refusal = refusal
        self.remaining = args.size

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def feed(self, data: bytes) -> bytes | None:
        """Consume `data`; None while the chunk goes on, else the bytes after its end."""
        n = self.remaining
        if len(data) < n:
            self.remaining -= len(data)
            if self.sink is not None:
                self.sink.append(data)
            return None
        self.remaining = 0
        if self.sink is not None:
            self.sink.append(data[:n])
        return data[n:]
