"""\\Recent on the Maildir store: the session that moves a message out of new/ owns it."""

from __future__ import annotations

from pathlib import Path

from mailroom.imap.events import Credentials, Execute, ImapSettings
from mailroom.imap.server import ServerConnection
from mailroom.mailstore.imap_backend import MaildirBackend
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path

USER = "john@example.org"
MSG = b"From: lisa@example.com\nSubject: hi\n\nbody\n"


class Session:
    """The IMAP core on the real Maildir backend, driven command by command."""

    def __init__(self, base: Path) -> None:
        self.conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False))
        self.conn.initiate()
        self.conn.receive_data(b"a LOGIN john x\r\n")
        assert isinstance(self.conn.next_event(), Credentials)
        self.conn.accept_login(MaildirBackend.for_user(base, USER))
        self.conn.data_to_send()

    def say(self, line: str) -> list[str]:
        self.conn.receive_data(line.encode() + b"\r\n")
        if isinstance(self.conn.next_event(), Execute):
            self.conn.execute()
        return self.conn.data_to_send().decode().splitlines()


def test_only_the_first_session_sees_recent_and_examine_takes_nothing(tmp_path: Path) -> None:
    deliver_to_maildir(mailbox_path(tmp_path, USER), MSG, hostname="mx")
    watcher, first, second = Session(tmp_path), Session(tmp_path), Session(tmp_path)
    assert "* 1 RECENT" in watcher.say("b EXAMINE INBOX")  # shown, not taken (RFC 3501 §6.3.2)
    assert "* 1 RECENT" in first.say("b SELECT INBOX")
    assert "* 1 FETCH (FLAGS (\\Recent))" in first.say("c FETCH 1 FLAGS")
    assert "* 0 RECENT" in second.say("b SELECT INBOX")
    assert "* 1 FETCH (FLAGS ())" in second.say("c FETCH 1 FLAGS")


def test_a_delivery_during_the_session_is_recent_in_one_session_only(tmp_path: Path) -> None:
    maildir = mailbox_path(tmp_path, USER)
    deliver_to_maildir(maildir, MSG, hostname="mx")
    first, second = Session(tmp_path), Session(tmp_path)
    first.say("b SELECT INBOX")
    second.say("b SELECT INBOX")
    deliver_to_maildir(maildir, MSG, hostname="mx")
    assert first.say("c NOOP")[:2] == ["* 2 EXISTS", "* 2 RECENT"]  # its own first one, and the new one
    assert second.say("c NOOP")[:2] == ["* 2 EXISTS", "* 0 RECENT"]
    assert "* 2 FETCH (FLAGS (\\Recent))" in first.say("d FETCH 2 FLAGS")
