"""POP3 end to end: Python's poplib against the asyncio adapter on 127.0.0.1, TLS with trustme.

The adapter runs in-process on its own event loop thread with a temporary Maildir and a
tiny fake AuthBackend (tests/e2e/pop3_fixture.py), so these tests need no `mailroom serve`.
"""

from __future__ import annotations

import base64
import logging
import os
import poplib
import socket

import pytest

from tests.e2e.pop3_fixture import HOST, JOHN, PASSWORD, TIMEOUT, Pop3Fixture, pop3_server  # noqa: F401

MESSAGE_1 = b"Subject: one\r\nFrom: a@example.com\r\n\r\nhello\r\n.dotted line\r\nbye\r\n"
MESSAGE_2 = b"Subject: two\r\n\r\nsecond\r\n"


def test_plaintext_port_needs_stls_then_downloads_and_deletes_on_quit(pop3: Pop3Fixture) -> None:
    first = pop3.deliver(MESSAGE_1)
    pop3.deliver(MESSAGE_2)
    pop = pop3.plain()
    assert pop.getwelcome() == b"+OK mailroom ready."
    caps = pop.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
        pop.user(JOHN)  # loopback is not exempt
    pop.stls(pop3.client_context)
    caps = pop.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN", "LOGIN"]
    pop.user(JOHN)
    assert pop.pass_(PASSWORD) == b"+OK Logged in."
    sizes = [len(MESSAGE_1), len(MESSAGE_2)]
    assert pop.stat() == (2, sum(sizes))
    assert pop.list()[1] == [f"{i + 1} {s}".encode() for i, s in enumerate(sizes)]
    resp, lines, octets = pop.retr(1)
    assert resp == f"+OK {sizes[0]} octets".encode()
    assert b"\r\n".join(lines) + b"\r\n" == MESSAGE_1  # poplib undoes the dot-stuffing
    assert pop.top(2, 0)[1] == [b"Subject: two", b""]
    assert pop.dele(2).startswith(b"+OK")
    assert pop.stat() == (1, sizes[0])
    assert pop.quit() == b"+OK Logging out, messages deleted."
    names = os.listdir(pop3.maildir / "cur")
    assert names == [first.name + ":2,S"]  # RETR'd: \Seen; DELE'd: gone
    assert pop3.auth.calls == [(JOHN, "pop3", True)]


def test_pop3s_uidl_is_stable_and_nothing_is_deleted_without_quit(pop3: Pop3Fixture) -> None:
    pop3.deliver(MESSAGE_1)
    pop3.deliver(MESSAGE_2)
    pop = pop3.login()
    uidls = pop.uidl()[1]
    validity = (pop3.maildir / "dovecot-uidlist").read_text().split()[1][1:]
    assert uidls == [f"1 00000001{int(validity):08x}".encode(), f"2 00000002{int(validity):08x}".encode()]
    pop.dele(1)
    pop.dele(2)
    pop.sock.close()  # no QUIT: RFC 1939 §6, nothing may be deleted
    pop3.deliver(b"Subject: three\n\n3\n")
    pop = pop3.login()
    assert pop.uidl()[1][:2] == uidls
    assert pop.stat()[0] == 3
    assert pop.uidl(3).split()[-1].startswith(b"00000003")
    pop.quit()


def test_wrong_password_and_auth_plain(pop3: Pop3Fixture, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom.pop3")
    pop = pop3.secure()
    pop.user(JOHN)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed."):
        pop.pass_("wrong")
    token = base64.b64encode(f"\0{JOHN}\0{PASSWORD}".encode()).decode()
    shortcmd = getattr(pop, "_shortcmd")  # noqa: B009 - poplib has no public AUTH
    assert shortcmd(f"AUTH PLAIN {token}") == b"+OK Logged in."
    assert pop.stat() == (0, 0)
    assert pop.quit() == b"+OK Logging out."
    messages = [r.getMessage() for r in caplog.records if r.name == "mailroom.pop3"]
    assert "localhost[127.0.0.1]: SASL PLAIN authentication failed: authentication failure" in messages
    assert any(m.startswith(f"Login: user=<{JOHN}>, method=PLAIN, rip=127.0.0.1") for m in messages)


def test_migrated_dovecot_mailbox_keeps_its_uidls(pop3: Pop3Fixture) -> None:
    for sub in ("cur", "new", "tmp"):
        (pop3.maildir / sub).mkdir(parents=True)
    name = "1276528487.M364837P9451.kurkku,S=8,W=10"
    (pop3.maildir / "cur" / f"{name}:2,S").write_bytes(b"a: b\n\nc\n")
    (pop3.maildir / "dovecot-uidlist").write_text(f"3 V1275660208 N25022 G0123\n25006 :{name}:2,S\n")
    pop = pop3.login()
    assert pop.uidl()[1] == [b"1 000061ae4c0907b0"]  # what Dovecot's %08Xu%08Xv shows (lower-case hex)
    assert pop.list()[1] == [b"1 10"]
    pop.quit()


def test_pipelined_commands_and_idle_timeout(pop3: Pop3Fixture) -> None:
    pop3.deliver(MESSAGE_2)
    pop3.service.timeout = 0.5
    raw = socket.create_connection((HOST, pop3.tls_port), timeout=TIMEOUT)
    with pop3.client_context.wrap_socket(raw) as sock:
        sock.sendall(f"USER {JOHN}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nNOOP\r\n".encode())
        data = b""
        while b"Disconnected" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    lines = data.decode().split("\r\n")
    assert lines[:5] == ["+OK mailroom ready.", "+OK", "+OK Logged in.", f"+OK 1 {len(MESSAGE_2)}",
                         lines[4]]
    assert lines[4].startswith("+OK 1 00000001")
    assert lines[5:7] == ["+OK", "-ERR Disconnected for inactivity."]


def test_read_ahead_serves_each_message_its_own_bytes(pop3: Pop3Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """RETR in order, backwards, TOP and a message expunged by another session meanwhile:
    the read-ahead never hands one message's bytes to another, nor a vanished one's."""
    from mailroom.adapters import pop3 as pop3_adapter

    monkeypatch.setattr(pop3_adapter, "READ_AHEAD_MESSAGES", 4)
    bodies = [f"Subject: m{i}\r\n\r\n{'x' * (i * 37)}\r\n".encode() for i in range(10)]
    paths = [pop3.deliver(body) for body in bodies]
    pop = pop3.login()
    for number in (1, 2, 3, 7, 6, 5, 10, 9, 8, 4):
        lines = pop.retr(number)[1]
        assert b"\r\n".join(lines) + b"\r\n" == bodies[number - 1], number
    assert pop.top(3, 0)[1] == [b"Subject: m2", b""]
    pop.quit()
    pop = pop3.login()
    assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == bodies[0]  # reads 2..4 ahead
    cur = pop3.maildir / "cur"
    (gone,) = [n for n in os.listdir(cur) if n.startswith(paths[5].name)]
    os.unlink(cur / gone)  # another session expunges message 6 before it is read
    for number in (2, 3, 4, 5):
        assert b"\r\n".join(pop.retr(number)[1]) + b"\r\n" == bodies[number - 1]
    with pytest.raises(poplib.error_proto):
        pop.retr(6)
    pop.quit()


def test_sessions_on_an_unchanged_folder_share_the_listing_safely(pop3: Pop3Fixture) -> None:
    """The second session takes the first one's listing (mailstore/shared.py); a deletion in
    one session changes the folder, so the next session lists it again."""
    from mailroom.mailstore.shared import SHARED_SCANS

    for n in range(3):
        pop3.deliver(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
    first = pop3.login()
    first.quit()  # moved new/ to cur/
    past = 1_700_000_000
    for entry in ("new", "cur", "dovecot-uidlist"):
        os.utime(pop3.maildir / entry, (past, past))  # settled: the directory times are trusted
    SHARED_SCANS.clear()
    lister = pop3.login()
    expected = lister.uidl()[1]
    assert SHARED_SCANS.held == 3  # the scan is shared: the next session starts from it
    deleter = pop3.login()
    assert deleter.uidl()[1] == expected  # the shared listing
    deleter.dele(1)
    assert len(deleter.uidl()[1]) == 2
    assert lister.uidl()[1] == expected  # its own copy: the other session's DELE is not seen
    lister.quit()
    deleter.quit()
    after = pop3.login()
    assert after.uidl()[1] == [line.replace(b"2 ", b"1 ", 1).replace(b"3 ", b"2 ", 1) for line in expected[1:]]
    after.quit()
