"""Minimal blocking IMAP and POP3 clients for the mailbox benchmark.

Why not imaplib/poplib: they parse every line into Python objects (imaplib builds a
list per response and matches regexes on each), which would add more client time to
a 10,000-message FETCH than the servers spend. These read from one buffer with
bytes.find, handle IMAP literals (``{n}`` CRLF then n bytes) and POP3 multi-line
replies (up to ``.`` CRLF, dot-stuffing undone by counting), and time with
time.perf_counter. Every read has a socket timeout and an overall deadline, and
every reply has a size bound, so a silent or runaway server ends the run with an
error instead of a hang. Only meant for 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from dataclasses import dataclass, field

IO_TIMEOUT = 30.0  # one recv
COMMAND_TIMEOUT = 120.0  # one whole reply
MAX_REPLY = 512 * 1024 * 1024  # bytes buffered for one reply
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS", re.M)


class ProtocolError(Exception):
    """The server answered something unexpected (NO/BAD/-ERR, garbage, EOF, timeout)."""


class _Conn:
    """A socket with a read buffer: readline, read n bytes, read up to a marker."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.deadline = time.monotonic() + COMMAND_TIMEOUT

    def start(self) -> None:
        """A new reply begins: reset its deadline."""
        self.deadline = time.monotonic() + COMMAND_TIMEOUT

    def fill(self) -> None:
        """Receive more, within the reply's deadline and size bound."""
        if time.monotonic() > self.deadline:
            raise ProtocolError(f"no complete reply within {COMMAND_TIMEOUT:.0f}s")
        if self.pos > 1 << 20 and self.pos > len(self.buf) // 2:
            del self.buf[: self.pos]
            self.pos = 0
        if len(self.buf) - self.pos > MAX_REPLY:
            raise ProtocolError("reply larger than the client's bound")
        try:
            data = self.sock.recv(1 << 18)
        except TimeoutError as exc:
            raise ProtocolError(f"no data for {IO_TIMEOUT:.0f}s") from exc
        if not data:
            raise ProtocolError("connection closed by the server")
        self.buf += data

    def readline(self) -> bytes:
        """One line including its CRLF."""
        while (end := self.buf.find(b"\n", self.pos)) < 0:
            self.fill()
        line = bytes(self.buf[self.pos : end + 1])
        self.pos = end + 1
        return line

    def skip(self, n: int) -> None:
        """Consume n bytes (a literal whose content is only counted)."""
        while len(self.buf) - self.pos < n:
            self.fill()
        self.pos += n

    def read_until(self, marker: bytes, search_from: int) -> bytes:
        """Bytes from pos up to and including ``marker``, searched from ``search_from``."""
        start = search_from
        while (end := self.buf.find(marker, start)) < 0:
            start = max(self.pos, len(self.buf) - len(marker) + 1)
            self.fill()
        data = bytes(self.buf[self.pos : end + len(marker)])
        self.pos = end + len(marker)
        return data

    def send(self, data: bytes) -> None:
        """Send all of ``data`` (bounded by the socket timeout)."""
        self.sock.sendall(data)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@dataclass
class ImapReply:
    """Untagged responses (first line with literal contents replaced by their sizes)."""

    tagged: bytes
    untagged: list[bytes] = field(default_factory=list)
    literal_bytes: int = 0
    literals: int = 0


class Imap:
    """One IMAP connection; ``command`` returns when the tagged reply is in."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = _Conn(host, port)
        self.greeting = self.conn.readline()
        if not self.greeting.startswith(b"* OK"):
            self.conn.close()
            raise ProtocolError(f"IMAP greeting {self.greeting[:80]!r}")
        self._n = 0

    def command(self, text: str, keep: bool = True) -> ImapReply:
        """Send ``text``, read to its tagged OK (NO/BAD raise); literals are counted.

        keep=False drops untagged responses (only sizes counted).
        """
        self._n += 1
        tag = b"b%d" % self._n
        self.conn.start()
        self.conn.send(tag + b" " + text.encode() + b"\r\n")
        reply = ImapReply(b"")
        prefix = tag + b" "
        conn = self.conn
        while True:
            line = conn.readline()
            if line.startswith(prefix):
                reply.tagged = line
                if not line.startswith(prefix + b"OK"):
                    raise ProtocolError(f"{text[:40]!r} -> {line[:200]!r}")
                return reply
            parts = [line]
            while line.endswith(b"}\r\n") and (m := _LITERAL.search(line)):
                n = int(m.group(1))
                conn.skip(n)
                reply.literal_bytes += n
                reply.literals += 1
                line = conn.readline()
                parts.append(line)
            if keep:
                reply.untagged.append(b"".join(parts))

    def logout(self) -> None:
        """LOGOUT, ignoring a server that already went away."""
        with contextlib.suppress(ProtocolError, OSError):
            self.command("LOGOUT", keep=False)
        self.conn.close()


@dataclass
class FetchSummary:
    """What a FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE) said, for the cross-checks."""

    responses: int
    uids: list[int]
    sizes: dict[int, int]
    flags: dict[str, int]


def summarize_fetch(reply: ImapReply) -> FetchSummary:
    """Count FETCH responses; UID, RFC822.SIZE and flag tallies (parsed after timing)."""
    uids: list[int] = []
    sizes: dict[int, int] = {}
    flags: dict[str, int] = {}
    n = 0
    for resp in reply.untagged:
        head = resp[:resp.find(b"ENVELOPE")] if b"ENVELOPE" in resp else resp
        if b" FETCH (" not in head:
            continue
        n += 1
        m = _UID.search(head) or _UID.search(resp)
        uid = int(m.group(1)) if m else -1
        uids.append(uid)
        if s := _SIZE.search(head) or _SIZE.search(resp):
            sizes[uid] = int(s.group(1))
        if f := _FLAGS.search(head):
            for flag in f.group(1).split():
                key = flag.decode(errors="replace")
                flags[key] = flags.get(key, 0) + 1
    return FetchSummary(n, uids, sizes, flags)


def exists_of(reply: ImapReply) -> int | None:
    """The EXISTS count of a SELECT."""
    for resp in reply.untagged:
        if m := _EXISTS.match(resp):
            return int(m.group(1))
    return None


class Pop3:
    """One POP3 connection; sequential commands, no pipelining."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = _Conn(host, port)
        self.greeting = self.conn.readline()
        if not self.greeting.startswith(b"+OK"):
            self.conn.close()
            raise ProtocolError(f"POP3 greeting {self.greeting[:80]!r}")

    def command(self, text: str) -> bytes:
        """A single-line reply; -ERR raises."""
        self.conn.start()
        self.conn.send(text.encode() + b"\r\n")
        line = self.conn.readline()
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"{text.split()[0]} -> {line[:200]!r}")
        return line

    def multiline(self, text: str) -> bytes:
        """A multi-line reply's data, still dot-stuffed, without the final ``.`` CRLF."""
        self.command(text)
        conn = self.conn
        while len(conn.buf) - conn.pos < 3:  # any multi-line reply has at least ". CRLF"
            conn.fill()
        if conn.buf[conn.pos : conn.pos + 3] == b".\r\n":  # empty: the status line's CRLF ends it
            conn.pos += 3
            return b""
        return conn.read_until(b"\r\n.\r\n", conn.pos)[:-3]

    def retr_size(self, n: int) -> int:
        """RETR n; the message's size once dot-stuffing is undone."""
        data = self.multiline(f"RETR {n}")
        return len(data) - data.count(b"\r\n..") - data.startswith(b"..")

    def quit(self) -> None:
        """QUIT, ignoring a server that already went away."""
        with contextlib.suppress(ProtocolError, OSError):
            self.command("QUIT")
        self.conn.close()
