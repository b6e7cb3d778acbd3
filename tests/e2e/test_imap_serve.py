"""IMAP through `mailroom serve`: SMTP in, imaplib out over STARTTLS and IMAPS, IDLE sees delivery."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import time
from collections.abc import Callable

import pytest

from tests.e2e.server import HOST, MailroomServer, free_ports


@pytest.fixture
def imap_server(mailroom_server_factory: Callable[..., MailroomServer]) -> tuple[MailroomServer, int, int]:
    imap, imaps = free_ports(2)
    server = mailroom_server_factory(imap_listen=f"{HOST}:{imap}", imaps_listen=f"{HOST}:{imaps}")
    return server, imap, imaps


def deliver(server: MailroomServer, subject: str) -> None:
    with smtplib.SMTP(HOST, server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("someone@example.net", ["john@example.org"], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_smtp_in_imap_out(imap_server: tuple[MailroomServer, int, int]) -> None:
    server, imap_port, imaps_port = imap_server
    deliver(server, "first")
    server.wait_for_maildir(1)
    plain = imaplib.IMAP4(HOST, imap_port, timeout=10)
    assert b"LOGINDISABLED" in plain.capability()[1][0]
    plain.starttls(ssl_context=server.ssl_context())
    plain.login("john@example.org", "summersun")
    status, data = plain.select("INBOX")
    assert status == "OK" and data == [b"1"]
    status, data = plain.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: first" in data[0][1]
    status, folders = plain.list()
    names = b" ".join(folders)
    for special in (b"\\Sent", b"\\Drafts", b"\\Junk", b"\\Trash"):
        assert special in names
    plain.logout()

    secure = imaplib.IMAP4_SSL("localhost", imaps_port, ssl_context=server.ssl_context(), timeout=10)
    secure.login("john@example.org", "summersun")
    secure.select("INBOX")
    secure.store("1", "+FLAGS", "\\Seen")
    assert secure.search(None, "SEEN")[1] == [b"1"]
    secure.logout()


def test_idle_sees_a_delivery_within_a_second(imap_server: tuple[MailroomServer, int, int]) -> None:
    server, _imap_port, imaps_port = imap_server
    client = imaplib.IMAP4_SSL("localhost", imaps_port, ssl_context=server.ssl_context(), timeout=10)
    client.login("john@example.org", "summersun")
    client.select("INBOX")
    tag = client._new_tag().decode()
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    deliver(server, "while idle")
    delivered = time.monotonic()
    client.sock.settimeout(5)
    line = b""
    while b"EXISTS" not in line:
        try:
            line = client.readline()
        except socket.timeout:  # noqa: UP041 - imaplib raises the socket module's alias
            pytest.fail("no EXISTS during IDLE")
    # The socket timeout bounds the wait; the latency itself is not asserted (timing
    # belongs in make bench), but it is visible when the test runs with -s.
    print(f"IDLE saw the delivery {time.monotonic() - delivered:.3f}s after the SMTP 250")
    client.send(b"DONE\r\n")
    client.logout()


@pytest.mark.parametrize("nfs", ["no", "yes"])
def test_recent_and_a_change_behind_a_stale_directory_time(
        mailroom_server_factory: Callable[..., MailroomServer], nfs: str) -> None:
    """Over a socket: the first session gets \\Recent, the second not; with
    mail_nfs_storage = yes a change whose directory time looks unchanged (what an NFS
    attribute cache shows) is still seen, without it the settled time is trusted."""
    import os

    (imaps,) = free_ports(1)
    server = mailroom_server_factory(imaps_listen=f"{HOST}:{imaps}", mail_nfs_storage=nfs)
    deliver(server, "first")
    (path,) = server.wait_for_maildir(1)
    maildir = path.parent.parent

    def login() -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=server.ssl_context(), timeout=10)
        client.login("john@example.org", "summersun")
        return client

    first = login()
    first.select("INBOX")
    assert first.response("RECENT")[1] == [b"1"]
    second = login()
    second.select("INBOX")
    assert second.response("RECENT")[1] == [b"0"]
    past = time.time() - 3600
    for entry in ("new", "cur", "dovecot-uidlist"):
        os.utime(maildir / entry, (past, past))
    second.noop()  # a full scan that now trusts the settled times
    (name,) = os.listdir(maildir / "cur")
    os.rename(maildir / "cur" / name, maildir / "cur" / (name + "F"))  # another program flags it
    os.utime(maildir / "cur", (past, past))
    second.noop()  # looks at the folder: lists it only when directory times are not trusted
    flags = second.fetch("1", "(FLAGS)")[1][-1]
    assert (b"\\Flagged" in flags) is (nfs == "yes"), flags
    first.logout()
    second.logout()
