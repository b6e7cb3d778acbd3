"""The Maildir backend's inline mode (Mailbox.nowait): memory and page cache, or BlockingIOError."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.mailstore.imap_session import Session

from mailroom.imap.events import Execute
from mailroom.imap.server import ServerConnection
from mailroom.mailstore import store as store_module
from mailroom.mailstore.imap_backend import MaildirBackend, MaildirMailbox
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from mailroom.mailstore.shared import SHARED_SCANS
from mailroom.mailstore.store import MaildirStore

USER = "john@example.org"
MSG = b"From: Lisa <lisa@example.com>\nTo: john@example.org\nSubject: hello\n\nbody\n"
_past = itertools.count(int(time.time()) - 7200)


@pytest.fixture(autouse=True)
def fresh_shared() -> Iterator[None]:
    SHARED_SCANS.clear()
    yield
    SHARED_SCANS.clear()


def age(maildir: Path) -> None:
    when = next(_past)
    for entry in ("new", "cur", "dovecot-uidlist"):
        if (maildir / entry).exists():
            os.utime(maildir / entry, (when, when))


@pytest.fixture
def mailbox(tmp_path: Path) -> MaildirMailbox:
    """INBOX with three messages, settled, synced once (as after SELECT)."""
    maildir = mailbox_path(tmp_path, USER)
    for _ in range(3):
        deliver_to_maildir(maildir, MSG, hostname="mx")
    MaildirStore(maildir).folder().sync()
    age(maildir)
    box = MaildirBackend.for_user(tmp_path, USER).open("INBOX")
    box.sync()
    return box


def nowait(box: MaildirMailbox) -> MaildirMailbox:
    box.nowait = True
    return box


def test_an_unchanged_folder_is_answered_inline(mailbox: MaildirMailbox) -> None:
    listed = mailbox.sync()
    assert nowait(mailbox).sync() is listed


def test_a_delivery_sends_the_look_to_a_thread(mailbox: MaildirMailbox) -> None:
    deliver_to_maildir(mailbox.folder.path, MSG, hostname="mx")
    with pytest.raises(BlockingIOError):
        nowait(mailbox).sync()
    mailbox.nowait = False
    assert len(mailbox.sync()) == 4


def test_pending_summaries_send_the_look_to_a_thread(mailbox: MaildirMailbox) -> None:
    uid = mailbox.sync()[0].uid
    mailbox.summary(uid, "ENVELOPE", lambda: b"(NIL)")  # computed: waits for the next flush
    with pytest.raises(BlockingIOError):
        nowait(mailbox).sync()
    mailbox.nowait = False
    mailbox.sync()  # flushes
    assert nowait(mailbox).sync()


def test_message_bytes_come_from_the_page_cache(mailbox: MaildirMailbox) -> None:
    uid = mailbox.sync()[0].uid
    expected = mailbox.read(uid)
    assert nowait(mailbox).read(uid) == expected


def evict(path: Path) -> None:
    """Ask the kernel to drop the file's (clean) pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached(path: Path) -> bool:
    """Does a no-wait read succeed? (A miss may start read-ahead: evict again after.)"""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(10)], 0, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_message_not_in_the_page_cache_is_read_in_a_thread(mailbox: MaildirMailbox) -> None:
    info = mailbox.folder.get(mailbox.sync()[0].uid)
    assert info is not None
    path = mailbox.folder.path / info.subdir / info.filename
    evict(path)
    try:
        nowait(mailbox).read(info.uid)
    except BlockingIOError:
        pass
    else:
        evict(path)
        if cached(path):
            pytest.skip("this file system keeps the pages cached (tmpfs?): nothing to test here")
        pytest.fail("read a message that was not in the page cache without waiting")
    mailbox.nowait = False
    assert mailbox.read(info.uid) is not None


def test_a_renamed_message_is_found_in_a_thread(tmp_path: Path, mailbox: MaildirMailbox) -> None:
    uid = mailbox.sync()[0].uid
    other = MaildirBackend.for_user(tmp_path, USER).open("INBOX")
    other.sync()
    other.store([uid], frozenset({"\\Seen"}), frozenset())  # renamed behind our back
    with pytest.raises(BlockingIOError):
        nowait(mailbox).read(uid)
    mailbox.nowait = False
    assert mailbox.read(uid) == other.read(uid)


def test_a_file_system_without_rwf_nowait_always_uses_threads(
        mailbox: MaildirMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    uid = mailbox.sync()[0].uid

    def unsupported(*_args: object) -> int:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(store_module.os, "preadv", unsupported)
    monkeypatch.setattr(store_module, "_nowait_reads", True)
    with pytest.raises(BlockingIOError):
        nowait(mailbox).read(uid)
    assert store_module._nowait_reads is False  # learnt: no more attempts in this process


def test_summaries_and_dates_inline_only_once_loaded(mailbox: MaildirMailbox) -> None:
    uid = mailbox.sync()[0].uid
    with pytest.raises(BlockingIOError):
        nowait(mailbox).summary(uid, "ENVELOPE", lambda: b"(NIL)")
    with pytest.raises(BlockingIOError):
        mailbox.internal_date(uid)
    mailbox.nowait = False
    mailbox.summary(uid, "ENVELOPE", lambda: b"(X)")
    date = mailbox.internal_date(uid)
    assert nowait(mailbox).summary(uid, "ENVELOPE", lambda: b"(NIL)") == b"(X)"
    assert mailbox.internal_date(uid) == date
    mailbox.nowait = False
    other = mailbox.sync()[1].uid

    def parse() -> bytes:
        raise AssertionError("parsed a message on the event loop")

    with pytest.raises(BlockingIOError):  # loaded, but not for this message: no parsing inline
        nowait(mailbox).summary(other, "ENVELOPE", parse)


def session(tmp_path: Path) -> ServerConnection:
    conn = Session(tmp_path).conn
    conn.receive_data(b"b SELECT INBOX\r\n")
    assert isinstance(conn.next_event(), Execute)
    conn.execute()
    conn.data_to_send()
    return conn


@pytest.mark.parametrize(("items", "inline"), [
    ("(FLAGS UID RFC822.SIZE)", True),
    ("(BODY.PEEK[])", True),
    ("(BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.10> RFC822.HEADER)", True),
    ("(BODY.PEEK[1])", False),  # a MIME part: parsing, however small the message
    ("(BODY.PEEK[HEADER.FIELDS (SUBJECT)])", False),
    ("(BODYSTRUCTURE)", False),  # not in the summary cache yet: computed in a thread
    ("(BODY[])", False),  # sets \\Seen: a rename
])
def test_only_copies_and_cached_summaries_run_inline(
        tmp_path: Path, mailbox: MaildirMailbox, items: str, inline: bool) -> None:
    conn = session(tmp_path)
    conn.receive_data(f"c FETCH 1 {items}\r\n".encode())
    assert isinstance(conn.next_event(), Execute)
    assert conn.execute(inline=True) is inline
    if not inline:
        assert conn.data_to_send() == b""  # nothing said yet: the thread answers it all
        conn.execute()
    assert conn.data_to_send().endswith(b"c OK Fetch completed.\r\n")
