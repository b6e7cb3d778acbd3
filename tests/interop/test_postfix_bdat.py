"""RFC 3030 CHUNKING: the same BDAT dialogs against Debian's Postfix 3.7.11 and mailroom.

Each dialog's bytes go to a private Postfix (its own directories, loopback high port,
chroot off) and to `mailroom serve`, step by step; the replies must be the same, code
and text, queue IDs aside. The dialogs also run against the sans-IO core alone, fed
whole, per line and per byte, in tests/transcripts/bdat*.dialog.

What Postfix 3.7.11 was observed to do (C: client bytes, S: its replies; recorded with a
raw socket, message_size_limit = 1000 where a size is at stake; CHUNKING is the last
EHLO keyword, after SMTPUTF8 or DSN)::

    # BDAT before MAIL / before RCPT: refused, but the counted octets are read and
    # dropped ("NOOP\\r" here; the "\\n" left over is an empty command line)
    C: BDAT 5\\r\\nNOOP\\r\\n      S: 503 5.5.1 Error: need RCPT command
                                S: 500 5.5.2 Error: bad syntax
    C: (after MAIL, no RCPT) BDAT 6\\r\\nNOOP\\r\\n   S: 554 5.5.1 Error: no valid recipients
    # ... and the refused transfer stays open until LAST, RSET or HELO/EHLO:
    C: MAIL FROM:<a@example.org>           S: 503 5.5.1 Error: MAIL after BDAT
    C: BDAT 6\\r\\nRSET\\r\\n                  S: 551 5.0.0 Discarded 6 bytes after earlier error
    C: RCPT TO:<lisa@example.com>           S: 503 5.5.1 Error: need MAIL command
    C: BDAT 4 LAST\\r\\nab\\r\\n                S: 551 5.0.0 Discarded 4 bytes after earlier error
    C: DATA  (in that state)               S: 503 5.5.1 Error: DATA after BDAT
    # chunks: the count of each; LAST gives the message size as Postfix counts it
    # (each line + 2; an unended last line counts as a line; "x\\r\\r\\n" counts as "x")
    C: BDAT 10\\r\\n0123456789              S: 250 2.0.0 Ok: 10 bytes
    C: BDAT 0 LAST\\r\\n                    S: 250 2.0.0 Ok: 12 bytes queued as 4AF6D21C2BB
    C: BDAT 22 LAST\\r\\nSubject: one\\r\\n\\r\\nbody\\r\\n   S: 250 2.0.0 Ok: 22 bytes queued as AF80321C317
    C: BDAT 1\\r\\ny                        S: 250 2.0.0 Ok: 1 bytes
    C: BDAT 0 LAST\\r\\n  (no chunk before) S: 250 2.0.0 Ok: 0 bytes queued as 063AA21C0F8
    # pipelined: one packet, replies in order, commands after the chunks still commands
    C: EHLO..MAIL..RCPT..BDAT 15\\r\\nSubject: pipe\\r\\nBDAT 7 LAST\\r\\n\\r\\nbody\\r\\nNOOP\\r\\nMAIL..RSET..QUIT
    S: 250-..CHUNKING / 250 2.1.0 Ok / 250 2.1.5 Ok / 250 2.0.0 Ok: 15 bytes /
       250 2.0.0 Ok: 24 bytes queued as 7FC9521C31F / 500 5.5.2 Error: bad syntax (the "\\n"
       beyond the 7 octets) / 250 2.0.0 Ok / 250 2.1.0 Ok / 250 2.0.0 Ok / 221 2.0.0 Bye
    # syntax: blanks are spaces or tabs, LAST any case, leading zeros fine
    # ("bdat 005 last", "BDAT  5  LAST", "BDAT 5\\tLAST", "BDAT 5 LAST " all work); else
    # the session ends, as the chunk cannot be skipped:
    C: BDAT | BDAT x | BDAT 5 FOO | BDAT -1 | BDAT +5 | BDAT 5x | BDAT 0x5 | BDAT 5 LAST X
       | BDAT 9223372036854775808 (2**63; 2**63-1 is read as a count)
                                S: 521 5.5.4 Syntax: BDAT count [LAST]   [closed]
    # sequence
    C: BDAT 0\\r\\n                         S: 551 5.7.1 Null BDAT request (also without MAIL;
                                            then the transfer discards until LAST)
    C: (after a chunk) DATA                S: 503 5.5.1 Error: DATA after BDAT
    C: (after a chunk) MAIL                S: 503 5.5.1 Error: nested MAIL command
    C: (after a chunk) RCPT TO:<x>         S: 503 5.5.1 Error: RCPT after BDAT
    C: (after a chunk) NOOP / VRFY         S: 250 2.0.0 Ok / 252 2.0.0 ... (transfer goes on)
    C: (after a chunk) RSET, then BDAT 3 LAST\\r\\nabc   S: 250 2.0.0 Ok, 503 5.5.1 Error: need RCPT command
    C: (after a DATA transaction) BDAT 3 LAST\\r\\nabc   S: 503 5.5.1 Error: need RCPT command
    C: (inside DATA) BDAT 3 LAST\\r\\nabc\\r\\n.\\r\\n    S: 250 2.0.0 Ok: queued as ... (content)
    C: (a refused LAST, e.g. no valid recipients)  ends the transaction: MAIL is 250 after it
    # content: "\\r\\n.\\r\\n" and ".." are content (delivered as sent, no unstuffing); a CR
    # ending one chunk and the LF starting the next are one line end
    # message_size_limit = 1000, chunks of 400:
    C: BDAT 400 / BDAT 400          S: 250 2.0.0 Ok: 400 bytes (twice)
    C: BDAT 400                     S: 552 5.3.4 Chunk exceeds message size limit
    C: BDAT 400 / BDAT 400 LAST     S: 551 5.0.0 Discarded 400 bytes after earlier error (twice)
    C: MAIL FROM:<a@example.org>    S: 250 2.1.0 Ok
    C: BDAT 2000 LAST / BDAT 1001 LAST   S: 552 5.3.4 Chunk exceeds message size limit
    C: BDAT 1000 LAST               S: 552 5.3.4 Error: message file too big (its own headers count)
    C: BDAT 99999999999 (beyond the limit)   no reply: Postfix reads the whole chunk first
    # client gone in the middle of a chunk: nothing queued;
    #   log "lost connection after BDAT (10 bytes) from localhost[127.0.0.1]"
    # smtpd_timeout while waiting for chunk octets:
    #   S: 421 4.4.2 mx.example.com Error: timeout exceeded   [closed]
    # smtpd_forbid_bare_newline = yes (3.7.11: normalize): a bare LF in a chunk is a line end
    # smtpd_tls_security_level = encrypt, before STARTTLS:
    C: BDAT 6\\r\\nNOOP\\r\\n           S: 530 5.7.0 Must issue a STARTTLS command first
                                S: 250 2.0.0 Ok    <- the chunk was executed as a command!

Where mailroom deliberately differs (and so these dialogs leave it out):
- smtpd_tls_security_level = encrypt: mailroom answers the same 530 but reads and drops
  the chunk; Postfix reads it as commands.
- A bare LF in chunk data: mailroom (smtpd_forbid_bare_newline on by default, no
  $mynetworks exemption) refuses the message at LAST, "550 5.5.2 Error: bare <LF>
  received", as after DATA; Postfix 3.7 accepts it as a line end.
- The size in "Ok: N bytes queued as" is the message as mailroom queues it: the same as
  Postfix's count for CRLF text, different for "x\\r\\r\\n" (Postfix drops the extra CR)
  or bare LFs (Postfix adds a CR).
- message_size_limit counts the client's octets (RFC 1870), plus the CRLF given to an
  unended last line; a message of exactly the limit is accepted. Postfix's limit
  also counts the headers it adds ("552 5.3.4 Error: message file too big").
- A BDAT line that is not UTF-8, has a tab after the verb or is longer than 2048 octets
  is still taken as BDAT (or as its syntax error), so no chunk octet is read as a command.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.server import (
    HOST,
    MailroomServer,
    free_ports,
)
from tests.transcripts.dovecot_auth.peers import PrivatePostfix, peer_base, peer_missing

pytestmark = [pytest.mark.interop]

Factory = Callable[..., MailroomServer]
SIZE_LIMIT = "10000"
REPLY_TIMEOUT = 15.0
VIRTUAL_SERVICE = "virtual   unix  -       n       n       -       -       virtual\n"

E = b"EHLO client.example\r\n"
M = b"MAIL FROM:<someone@example.net>\r\n"
R = b"RCPT TO:<john@example.org>\r\n"
NOBODY = b"RCPT TO:<nobody@example.org>\r\n"


def bdat(chunk: bytes, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk


@dataclass(frozen=True)
class Step:
    data: bytes
    replies: int  # how many replies (a multi-line one counts once) the bytes are owed


@dataclass(frozen=True)
class Dialog:
    name: str
    steps: tuple[Step, ...]
    closes: bool = False  # the server hangs up after the last step


PIECE = (b"y" * 98 + b"\r\n") * 40  # 4000 octets
CONTENT = [
    b"Subject: chunked interop\r\nMessage-ID: <bdat-interop@example.net>\r\n\r\nfirst\r",
    b"\n.\r\n..two dots\r\n.\r\nMAIL FROM:<smuggled@example.net>\r\n",
    b"last\r\n",
]

DIALOGS = [
    Dialog("refused_chunks_are_read_and_dropped", (
        Step(E, 1),
        Step(b"BDAT 5\r\nNOOP\r\n", 2),
        Step(b"NOOP\r\n", 1),
        Step(M, 1),
        Step(bdat(b"RSET\r\n"), 1),
        Step(b"RCPT TO:<john@example.org>\r\n", 1),
        Step(b"DATA\r\n", 1),
        Step(bdat(b"RSET\r\n", last=True), 1),
        Step(M, 1),
        Step(bdat(b"QUIT\r\n"), 1),
        Step(b"RSET\r\n", 1),
        Step(b"QUIT\r\n", 1),
    ), closes=True),
    Dialog("chunks_and_last", (
        Step(E + M + R, 3),
        Step(bdat(b"0123456789"), 1),
        Step(b"BDAT 0 LAST\r\n", 1),
        Step(M + R, 2),
        Step(b"bdat 022 last\r\nSubject: one\r\n\r\nbody\r\n", 1),
        Step(M + R, 2),
        Step(bdat(b"x") + bdat(b"y") + b"BDAT  5\tLAST \r\nz\r\nab", 3),
        Step(M + R, 2),
        Step(b"BDAT 0 LAST\r\n", 1),
        Step(b"QUIT\r\n", 1),
    ), closes=True),
    Dialog("content_is_never_framing", (
        Step(E + M + R, 3),
        *(Step(bdat(c, last=i == len(CONTENT) - 1), 1) for i, c in enumerate(CONTENT)),
        Step(b"QUIT\r\n", 1),
    ), closes=True),
    Dialog("pipelined", (
        Step(E + M + R + NOBODY + bdat(b"Subject: pipe\r\n") + bdat(b"\r\nbody\r\n", last=True)
             + b"NOOP\r\n" + M + b"RSET\r\n" + M + NOBODY + bdat(b"RSET\r") + bdat(b"MAIL FROM:<>", last=True)
             + M + R + bdat(b"hi\r\n", last=True) + b"QUIT\r\n", 17),
    ), closes=True),
    Dialog("sequence", (
        Step(E, 1),
        Step(b"BDAT 0\r\n", 1),
        Step(b"BDAT 0\r\n", 1),
        Step(bdat(b"abc", last=True), 1),
        Step(M + R, 2),
        Step(bdat(b"ab"), 1),
        Step(b"NOOP\r\n" + M + R + b"DATA\r\n", 4),
        Step(b"BDAT 0\r\n", 1),
        Step(bdat(b"abc"), 1),
        Step(b"RSET\r\n", 1),
        Step(bdat(b"abc"), 1),
        Step(E, 1),
        Step(M + R, 2),
        Step(bdat(b"hello"), 1),
        Step(b"RSET\r\n", 1),
        Step(bdat(b"abc", last=True), 1),
        Step(M + NOBODY, 2),
        Step(bdat(b"abc"), 1),
        Step(bdat(b"abc", last=True), 1),
        Step(M + NOBODY, 2),
        Step(bdat(b"abc", last=True), 1),
        Step(M + R + b"DATA\r\n", 3),
        Step(bdat(b"abc\r\n", last=True) + b".\r\n", 1),
        Step(bdat(b"abc", last=True), 1),
        Step(b"QUIT\r\n", 1),
    ), closes=True),
    Dialog("size_limit", (
        Step(E + M + R, 3),
        Step(bdat(PIECE), 1),
        Step(bdat(PIECE), 1),
        Step(bdat(PIECE), 1),
        Step(bdat(b"x"), 1),
        Step(M, 1),
        Step(bdat(PIECE, last=True), 1),
        Step(M + R, 2),
        Step(bdat(PIECE * 3, last=True), 1),
        Step(M, 1),
        Step(b"QUIT\r\n", 1),
    ), closes=True),
    *(
        Dialog(f"syntax_{i}", (Step(E + M + R + bdat(b"ab"), 4), Step(line + b"\r\nRSET\r\n", 1)), closes=True)
        for i, line in enumerate([
            b"BDAT", b"BDAT x", b"BDAT 5 FOO", b"BDAT -1", b"BDAT +5", b"BDAT 0x5",
            b"BDAT 5 LAST X", b"BDAT 9223372036854775808",
        ])
    ),
]  # fmt: skip

QUEUE_ID = re.compile(r"queued as \w+")


def normalize(reply: list[str]) -> list[str]:
    return [QUEUE_ID.sub("queued as ID", line) for line in reply]


class Client:
    """Reads whole replies (a multi-line one is one item) off a raw socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=REPLY_TIMEOUT)
        self.buf = b""

    def line(self) -> bytes | None:
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> list[str] | None:
        lines: list[str] = []
        while True:
            raw = self.line()
            if raw is None:
                return None
            lines.append(raw.decode(errors="replace"))
            if raw[3:4] != b"-":
                return lines

    def closed(self) -> bool:
        """The server hung up, with nothing more to say."""
        self.sock.settimeout(REPLY_TIMEOUT)
        return self.buf == b"" and self.line() is None


def play(port: int, dialog: Dialog) -> tuple[list[list[str]], bool]:
    """The replies, per step; and whether the server hung up at the end."""
    client = Client(port)
    try:
        assert client.reply() is not None, "no greeting"
        got: list[list[str]] = []
        for step in dialog.steps:
            with contextlib.suppress(OSError):
                client.sock.sendall(step.data)
            for _ in range(step.replies):
                reply = client.reply()
                got.append(normalize(reply) if reply is not None else ["<connection closed>"])
        return got, client.closed()
    finally:
        client.sock.close()


@dataclass
class PostfixPeer:
    pf: PrivatePostfix

    @property
    def port(self) -> int:
        return self.pf.port

    def maildir_files(self) -> list[Path]:
        md = self.pf.base / "vmail" / "example.org" / "john" / "Maildir"
        return sorted(p for sub in ("new", "cur") if (md / sub).is_dir() for p in (md / sub).iterdir())

    def log(self) -> str:
        return self.pf.maillog.read_text(errors="replace") if self.pf.maillog.exists() else ""


def private_postfix(prefix: str, settings: dict[str, str]) -> Iterator[PostfixPeer]:
    """A started private Postfix delivering example.org to john's Maildir, with `settings`
    on top (a generator for module fixtures: skips the test where Postfix is missing)."""
    reason = peer_missing("postfix")
    if reason:
        pytest.skip(reason)
    with peer_base(prefix) as base:
        vmail = base / "vmail"
        vmail.mkdir()
        vmail.chmod(0o777)
        pf = PrivatePostfix(base, {
            "myhostname": "mail.example.org",
            "smtpd_sasl_auth_enable": "no",
            "smtpd_recipient_restrictions": "",
            "virtual_mailbox_domains": "example.org",
            "virtual_mailbox_base": str(vmail),
            "virtual_mailbox_maps": "inline:{ john@example.org=example.org/john/Maildir/ }",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            **settings,
        })  # fmt: skip
        with open(pf.etc / "master.cf", "a") as f:
            f.write(VIRTUAL_SERVICE)
        try:
            pf.start()
        except RuntimeError as exc:
            pytest.skip(f"private postfix did not start: {str(exc).splitlines()[0]}")
        try:
            yield PostfixPeer(pf)
        finally:
            pf.stop()


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixPeer]:
    yield from private_postfix("mailroom-pfx-bdat-", {"message_size_limit": SIZE_LIMIT, "smtputf8_enable": "yes"})


@pytest.fixture
def mailroom(mailroom_server_factory: Factory) -> MailroomServer:
    (dead_port,) = free_ports(1)
    return mailroom_server_factory(
        mynetworks="", relayhost=f"[127.0.0.1]:{dead_port}", message_size_limit=SIZE_LIMIT
    )


@pytest.mark.parametrize("dialog", DIALOGS, ids=[d.name for d in DIALOGS])
def test_same_replies_as_postfix(postfix: PostfixPeer, mailroom: MailroomServer, dialog: Dialog) -> None:
    theirs, their_close = play(postfix.port, dialog)
    ours, our_close = play(mailroom.smtp_port, dialog)
    shown = "\n".join(f"{' | '.join(p):70.70}  {' | '.join(m)}" for p, m in zip(theirs, ours, strict=False))
    assert [r[0][:3] for r in ours] == [r[0][:3] for r in theirs], f"codes differ (Postfix | mailroom):\n{shown}"
    assert ours == theirs, f"texts differ (Postfix | mailroom):\n{shown}"
    assert our_close == their_close == dialog.closes


def test_chunked_content_is_delivered_alike(postfix: PostfixPeer, mailroom: MailroomServer) -> None:
    """The message body Postfix delivers from the chunks is the one mailroom delivers."""
    dialog = next(d for d in DIALOGS if d.name == "content_is_never_framing")
    before = set(postfix.maildir_files())
    play(postfix.port, dialog)
    play(mailroom.smtp_port, dialog)

    def body(data: bytes) -> bytes:
        data = data.replace(b"\r\n", b"\n")
        return data[data.index(b"\n\n") + 2 :]

    deadline = time.monotonic() + 20
    new: list[Path] = []
    while not new and time.monotonic() < deadline:
        new = [p for p in postfix.maildir_files() if p not in before]
        time.sleep(0.1)
    assert new, postfix.log()[-2000:]
    theirs = [body(p.read_bytes()) for p in new if b"bdat-interop@example.net" in p.read_bytes()]
    (ours,) = [body(p.read_bytes()) for p in mailroom.wait_for_maildir(1)]
    assert theirs == [ours] == [b"first\n.\n..two dots\n.\nMAIL FROM:<smuggled@example.net>\nlast\n"]
