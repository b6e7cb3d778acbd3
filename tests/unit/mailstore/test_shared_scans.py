"""Sessions of one process share a folder's last full scan (mailstore/shared.py), safely."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.mailstore.imap_session import Session

from mailroom.mailstore import store as store_module
from mailroom.mailstore.imap_backend import META_VIEW
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from mailroom.mailstore.shared import SHARED_SCANS, Scan, SharedScans
from mailroom.mailstore.store import Folder, MaildirStore

USER = "john@example.org"
MSG = b"From: Lisa <lisa@example.com>\nTo: john@example.org\nSubject: hello\n\nbody\n"
_past = itertools.count(int(time.time()) - 7200)


def age(maildir: Path) -> None:
    """Directory times well in the past (a new one each call): trusted by sync()."""
    when = next(_past)
    for entry in ("new", "cur", "dovecot-uidlist"):
        if (maildir / entry).exists():
            os.utime(maildir / entry, (when, when))


@pytest.fixture(autouse=True)
def fresh_shared() -> Iterator[None]:
    SHARED_SCANS.clear()
    yield
    SHARED_SCANS.clear()


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return mailbox_path(tmp_path, USER)


def settled_folder(maildir: Path, count: int = 3) -> Folder:
    for _ in range(count):
        deliver_to_maildir(maildir, MSG, hostname="mx")
    MaildirStore(maildir).folder().sync()  # moves new/ to cur/
    age(maildir)
    folder = MaildirStore(maildir).folder()
    folder.sync()  # the full scan that is shared
    return folder


def refuse_full_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a full sync ran")

    monkeypatch.setattr(store_module, "read_uidlist", refuse)
    monkeypatch.setattr(Folder, "_scan", refuse)
    monkeypatch.setattr(Folder, "_restore", refuse)


def test_a_second_session_starts_from_the_first_sessions_scan(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = settled_folder(maildir)
    refuse_full_sync(monkeypatch)
    second = MaildirStore(maildir).folder()
    assert second.sync() == first.messages
    assert (second.uidvalidity, second.next_uid) == (first.uidvalidity, first.next_uid)
    assert all(a is b for a, b in zip(second.messages, first.messages, strict=True))  # shared, not rebuilt


@pytest.mark.parametrize("change", ["deliver", "flag", "expunge"])
def test_any_change_means_a_full_sync(maildir: Path, change: str) -> None:
    first = settled_folder(maildir)
    uid = first.messages[0].uid
    if change == "deliver":
        deliver_to_maildir(maildir, MSG, hostname="mx")
    elif change == "flag":
        first.store_flags([uid], add={"\\Flagged"})
    else:
        first.expunge([uid])
    second = MaildirStore(maildir).folder()
    expected = {"deliver": 4, "flag": 3, "expunge": 2}[change]
    assert len(second.sync()) == expected
    if change == "flag":
        assert "\\Flagged" in second.get(uid).flags  # type: ignore[union-attr]


def test_a_session_changing_its_copy_leaves_the_shared_scan_alone(maildir: Path) -> None:
    first = settled_folder(maildir)
    second = MaildirStore(maildir).folder()
    second.sync()
    uid = second.messages[0].uid
    second.store_flags([uid], add={"\\Seen"})
    assert "\\Seen" not in first.get(uid).flags  # type: ignore[union-attr]
    age(maildir)  # even with the flag change hidden behind an old time, the old scan is not reused
    third = MaildirStore(maildir).folder()
    assert "\\Seen" in third.sync()[0].flags


def test_mail_waiting_in_new_is_never_adopted_by_a_session_that_moves_it(maildir: Path) -> None:
    settled_folder(maildir)
    deliver_to_maildir(maildir, MSG, hostname="mx")
    age(maildir)
    MaildirStore(maildir).folder().sync(move_new=False)  # EXAMINE: gives the file a UID, moves nothing
    age(maildir)
    watcher = MaildirStore(maildir).folder()
    watcher.sync(move_new=False)  # its scan (one message in new/) is shared
    reader = MaildirStore(maildir).folder()
    reader.sync(move_new=False)
    assert reader.views is watcher.views  # adopted by another EXAMINE
    mover = MaildirStore(maildir).folder()
    mover.sync()  # SELECT: must move the file and own its \Recent
    assert len(mover.claimed) == 1
    assert all(m.subdir == "cur" for m in mover.messages)


def test_nfs_storage_never_shares(maildir: Path) -> None:
    first = settled_folder(maildir)
    assert SHARED_SCANS.held == 3
    nfs = MaildirStore(maildir, nfs=True).folder()
    nfs.sync()
    assert nfs.views is not first.views  # nothing adopted: a full scan of its own
    assert SHARED_SCANS.get(str(maildir), nfs._folder_marks()) is not None  # and nothing replaced


def test_the_bound_drops_the_least_recently_used_folders() -> None:
    shared = SharedScans(max_messages=5)

    def scan(n: int) -> Scan:
        return Scan((), 1, n + 1, (), {uid: object() for uid in range(1, n + 1)}, False, {})  # type: ignore[misc]

    shared.put("a", scan(2))
    shared.put("b", scan(2))
    assert shared.get("a", ()) is not None  # a is now the most recent
    shared.put("c", scan(2))
    assert shared.get("b", ()) is None and shared.get("a", ()) is not None and shared.held == 4
    shared.put("huge", scan(6))
    assert shared.get("huge", ()) is None  # bigger than the bound: never held
    assert shared.get("a", ("other",)) is None and shared.held == 2  # changed times drop the entry
    shared.resize(0)
    assert shared.held == 0 and shared.get("c", ()) is None
    shared.put("d", scan(1))
    assert shared.held == 0  # 0 turns sharing off


def test_imap_sessions_share_metadata_and_recent_stays_with_its_owner(tmp_path: Path) -> None:
    maildir = mailbox_path(tmp_path, USER)
    settled_folder(maildir, 2)
    first = Session(tmp_path)
    assert "* 2 EXISTS" in first.say("b SELECT INBOX")
    second = Session(tmp_path)
    assert "* 0 RECENT" in second.say("b SELECT INBOX")
    views = second.conn.mailbox.folder.views  # type: ignore[union-attr]
    assert views is first.conn.mailbox.folder.views  # type: ignore[union-attr]
    assert isinstance(views.get(META_VIEW), tuple)
    deliver_to_maildir(maildir, MSG, hostname="mx")
    age(maildir)
    owner = Session(tmp_path)
    assert "* 1 RECENT" in owner.say("b SELECT INBOX")
    assert "* 3 FETCH (FLAGS (\\Recent))" in owner.say("c FETCH 3 FLAGS")
    assert META_VIEW not in owner.conn.mailbox.folder.views  # type: ignore[union-attr]  # its \Recent is its own
    age(maildir)
    later = Session(tmp_path)
    assert "* 0 RECENT" in later.say("b SELECT INBOX")
    assert "* 3 FETCH (FLAGS ())" in later.say("c FETCH 3 FLAGS")
    assert [line for line in second.say("c NOOP") if "EXISTS" in line or "RECENT" in line] == [
        "* 3 EXISTS", "* 0 RECENT"]
