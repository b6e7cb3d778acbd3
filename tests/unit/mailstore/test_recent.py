"""\\Recent on the Maildir store: the session that moves a message out of new/ owns it."""

from __future__ import annotations

from pathlib import Path

from tests.unit.mailstore.imap_session import USER, Session

from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path

MSG = b"From: lisa@example.com\nSubject: hi\n\nbody\n"


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
