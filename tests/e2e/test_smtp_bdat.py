"""RFC 3030 CHUNKING end to end: BDAT over a real socket to `mailroom serve`.

What arrives in chunks is queued (fsynced) before the 250 to LAST and lands in John's
Maildir byte for byte; chunks pipelined with commands get their replies in order; a
message over message_size_limit is refused chunk by chunk and never queued; and
smtpd_timeout runs while the server waits for the rest of a chunk.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

from tests.e2e.server import (
    JOHN,
    MailroomServer,
    RawSMTP,
    free_ports,
)

Factory = Callable[..., MailroomServer]
USER_UNKNOWN = "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
QUEUED = re.compile(r"250 2\.0\.0 Ok: (\d+) bytes queued as (\w+)")


def untrusted(factory: Factory, **edits: str) -> MailroomServer:
    """Nobody is trusted and nothing can leave the machine (as in test_smtp_server.py)."""
    (dead_port,) = free_ports(1)
    return factory(mynetworks="", relayhost=f"[127.0.0.1]:{dead_port}", **edits)


def opened(c: RawSMTP, rcpt: str = JOHN) -> None:
    c.greeting()
    keywords = c.ehlo()
    assert keywords[-1] == "CHUNKING", keywords
    assert c.cmd_line("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok", c.dump()
    assert c.cmd_line(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok", c.dump()


def bdat(c: RawSMTP, chunk: bytes, last: bool = False) -> str:
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    return c.reply_line()


def body_of(path_bytes: bytes) -> bytes:
    """The delivered message below mailroom's own headers, with CRLF as sent."""
    data = path_bytes.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data[data.index(b"Subject: chunked") :]


def test_chunked_message_lands_in_the_maildir_unchanged(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    header = b"From: <someone@example.net>\r\nTo: <john@example.org>\r\nSubject: chunked\r\n"
    chunks = [
        header + b"Message-ID: <bdat-1@example.net>\r\n\r\nfirst line\r",  # CRLF split across chunks
        b"\n.\r\n..two dots\r\n.\r\nMAIL FROM:<smuggled@example.net>\r\n",  # all content
        b"last line without its line end",
    ]
    content = b"".join(chunks)
    with RawSMTP(server.smtp_port) as c:
        opened(c)
        assert bdat(c, chunks[0]) == f"250 2.0.0 Ok: {len(chunks[0])} bytes", c.dump()
        assert bdat(c, chunks[1]) == f"250 2.0.0 Ok: {len(chunks[1])} bytes", c.dump()
        line = bdat(c, chunks[2], last=True)
        queued = QUEUED.fullmatch(line)
        assert queued, c.dump()
        assert int(queued.group(1)) == len(content) + 2  # the last line got its CRLF
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye"
    (path,) = server.wait_for_maildir(1)
    assert body_of(path.read_bytes()) == content[content.index(b"Subject: chunked") :] + b"\r\n"
    (msg,) = server.messages()
    assert msg["Message-ID"] == "<bdat-1@example.net>"
    assert "smuggled" not in (msg["Return-Path"] or "")
    log = server.wait_for_log(lambda t: f"{queued.group(2)}: client=" in t)
    assert f"{queued.group(2)}: client=localhost[127.0.0.1]" in log, log[-2000:]


def test_chunks_pipelined_with_commands_are_answered_in_order(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    first = b"Subject: chunked pipelining\r\n"
    second = b"\r\nhello\r\n"
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.send(
            b"MAIL FROM:<someone@example.net>\r\nRCPT TO:<john@example.org>\r\n"
            b"RCPT TO:<nobody@example.org>\r\n"
            + b"BDAT %d\r\n" % len(first) + first
            + b"BDAT %d LAST\r\n" % len(second) + second
            + b"NOOP\r\nBDAT 4 LAST\r\nRSETQUIT\r\n"
        )  # fmt: skip
        got = [c.reply_line() for _ in range(7)]
    assert got[:4] == ["250 2.1.0 Ok", "250 2.1.5 Ok", USER_UNKNOWN, f"250 2.0.0 Ok: {len(first)} bytes"], c.dump()
    assert QUEUED.fullmatch(got[4]) and got[4].startswith(f"250 2.0.0 Ok: {len(first + second)} bytes"), c.dump()
    # The chunk "RSET" after the transaction is read and refused, never executed.
    assert got[5:] == ["250 2.0.0 Ok", "503 5.5.1 Error: need RCPT command"], c.dump()
    server.wait_for_maildir(1)


def test_message_over_the_limit_is_refused_chunk_by_chunk(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory, message_size_limit="10000")
    piece = (b"y" * 98 + b"\r\n") * 40  # 4000 octets
    with RawSMTP(server.smtp_port) as c:
        opened(c)
        assert bdat(c, piece) == "250 2.0.0 Ok: 4000 bytes", c.dump()
        assert bdat(c, piece) == "250 2.0.0 Ok: 4000 bytes", c.dump()
        assert bdat(c, piece) == "552 5.3.4 Chunk exceeds message size limit", c.dump()
        assert bdat(c, b"x") == "551 5.0.0 Discarded 1 bytes after earlier error", c.dump()
        assert bdat(c, piece, last=True) == "551 5.0.0 Discarded 4000 bytes after earlier error", c.dump()
        # The transaction is over and the session usable.
        assert c.cmd_line("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok", c.dump()
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye"
    server.settle(0.5)
    assert server.maildir_files() == []
    assert server.queue_files() == []


def test_smtpd_timeout_runs_while_a_chunk_is_incomplete(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory, smtpd_timeout="1s")
    with RawSMTP(server.smtp_port) as c:
        opened(c)
        c.send(b"BDAT 100\r\n0123456789")
        started = time.monotonic()
        c.sock.settimeout(10)
        line = c.reply_line()
        waited = time.monotonic() - started
        assert line == "421 4.4.2 mail.example.org Error: timeout exceeded", c.dump()
        assert c.sock.recv(1) == b"", c.dump()  # and the server hangs up
    assert 0.5 < waited < 8, waited
    assert server.queue_files() == []
    log = server.wait_for_log(lambda t: "timeout after" in t)
    assert "timeout after" in log, log[-2000:]


def test_client_gone_in_the_middle_of_a_chunk(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        opened(c)
        c.send(b"BDAT 100 LAST\r\nSubject: chunked\r\n\r\ncut short")
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b"", c.dump()  # no reply, and the server hangs up
    server.wait_for_log(lambda t: "lost connection after" in t)
    server.settle(0.5)
    assert server.maildir_files() == []
    assert server.queue_files() == []
    with RawSMTP(server.smtp_port) as c:  # the server carries on
        opened(c)
        assert QUEUED.fullmatch(bdat(c, b"Subject: chunked\r\n\r\nwhole\r\n", last=True)), c.dump()
    server.wait_for_maildir(1)


def test_bdat_with_unparseable_count_ends_the_session(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        opened(c)
        c.send(b"BDAT ten\r\nRSET\r\nNOOP\r\n")
        assert c.read_all(timeout=5) == ["521 5.5.4 Syntax: BDAT count [LAST]"], c.dump()


def test_bdat_inside_tls(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.starttls(server.ssl_context(), server_hostname="mail.example.org")
        opened_inside = c.ehlo()
        assert opened_inside[-1] == "CHUNKING", c.dump()
        assert c.cmd_line("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok", c.dump()
        assert c.cmd_line(f"RCPT TO:<{JOHN}>") == "250 2.1.5 Ok", c.dump()
        assert QUEUED.fullmatch(bdat(c, b"Subject: chunked\r\n\r\nover TLS\r\n", last=True)), c.dump()
    server.wait_for_maildir(1)
    (msg,) = server.messages()
    assert "with ESMTPS" in str(msg["Received"]), msg["Received"]
