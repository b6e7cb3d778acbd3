"""IMAP QUOTA (RFC 2087) in the sans-IO core and on the Maildir backend, answered as Dovecot does."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.imap.memory_backend import MemoryBackend

from mailroom.imap.backend import QuotaBackend
from mailroom.imap.events import NEED_DATA, Credentials, Execute, ImapSettings
from mailroom.imap.server import ServerConnection
from mailroom.mailstore.imap_backend import MaildirBackend


class QuotaMemoryBackend(MemoryBackend):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def quota(self) -> tuple[int, int]:
        used = sum(len(m.data) for box in self.boxes.values() for m in box.messages)
        return used, self.limit


def session(backend: MemoryBackend) -> tuple[ServerConnection, list[str]]:
    conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False))
    conn.initiate()
    lines = talk(conn, backend, "a LOGIN john secret")
    return conn, lines


def talk(conn: ServerConnection, backend: MemoryBackend, line: str) -> list[str]:
    conn.receive_data(line.encode() + b"\r\n")
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, Credentials):
            conn.accept_login(backend)
        elif isinstance(event, Execute):
            conn.execute()
            assert conn.last_error is None
    return conn.data_to_send().decode().splitlines()


def test_quota_is_advertised_only_after_login_and_only_by_a_quota_backend() -> None:
    conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False))
    assert "QUOTA" not in conn.initiate().decode()
    _, lines = session(QuotaMemoryBackend(0))
    assert lines[-1].startswith("a OK [CAPABILITY ") and lines[-1].split("]")[0].endswith(" QUOTA")
    _, lines = session(MemoryBackend())
    assert " QUOTA" not in lines[-1]


def test_getquotaroot_with_a_limit() -> None:
    backend = QuotaMemoryBackend(10 * 1024 * 1024)
    backend.boxes["INBOX"].add(b"x" * 3000)
    backend.boxes["Sent"].add(b"y" * 2000)
    conn, _ = session(backend)
    assert talk(conn, backend, 'q GETQUOTAROOT "INBOX"') == [
        '* QUOTAROOT "INBOX" "User quota"',
        '* QUOTA "User quota" (STORAGE 4 10240)',
        "q OK Getquotaroot completed.",
    ]
    assert talk(conn, backend, "q2 getquotaroot inbox")[0] == '* QUOTAROOT "INBOX" "User quota"'
    assert talk(conn, backend, 'g GETQUOTA "User quota"') == [
        '* QUOTA "User quota" (STORAGE 4 10240)', "g OK Getquota completed."]


def test_unlimited_user_gets_no_quota_response() -> None:
    backend = QuotaMemoryBackend(0)
    conn, _ = session(backend)
    assert talk(conn, backend, 'q GETQUOTAROOT "INBOX"') == ['* QUOTAROOT "INBOX"', "q OK Getquotaroot completed."]
    assert talk(conn, backend, 'g GETQUOTA "User quota"') == ['* QUOTA "User quota" ()', "g OK Getquota completed."]


def test_quota_errors() -> None:
    backend = QuotaMemoryBackend(1024)
    conn, _ = session(backend)
    assert talk(conn, backend, "q GETQUOTAROOT nosuch") == ["q NO [NONEXISTENT] Mailbox doesn't exist: nosuch"]
    assert talk(conn, backend, 'g GETQUOTA "other"') == ["g NO Quota root doesn't exist."]
    assert talk(conn, backend, 's SETQUOTA "User quota" (STORAGE 1)') == [
        "s NO [NOPERM] Quota can be changed only by admin."]
    assert talk(conn, backend, "s SETQUOTA x")[0].startswith("s BAD ")
    assert talk(conn, backend, "q GETQUOTAROOT")[0].startswith("q BAD ")


def test_quota_commands_need_login_and_a_quota_backend() -> None:
    conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False))
    conn.initiate()
    assert talk(conn, MemoryBackend(), "q GETQUOTAROOT INBOX") == ["q BAD Not logged in."]
    backend = MemoryBackend()
    conn, _ = session(backend)
    assert talk(conn, backend, "q GETQUOTAROOT INBOX") == ["q BAD Unknown command."]


@pytest.mark.parametrize("limit", [0, 5 * 1024 * 1024])
def test_maildir_backend_quota_counts_every_folder(tmp_path: Path, limit: int) -> None:
    backend = MaildirBackend.for_user(tmp_path, "john@example.com", hostname="test", quota_limit=lambda: limit)
    assert isinstance(backend, QuotaBackend)
    assert backend.quota() == (0, limit)
    backend.append("INBOX", b"Subject: a\r\n\r\n" + b"x" * 2000, frozenset(), None)
    backend.append("Sent", b"Subject: b\r\n\r\n" + b"y" * 1000, frozenset({"\\Seen"}), None)
    used, got = backend.quota()
    assert got == limit and used >= 3000
    assert MaildirBackend.for_user(tmp_path, "john@example.com", hostname="test").quota()[1] == 0
