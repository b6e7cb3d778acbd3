"""MaildirStore/Folder: UIDs that survive restarts, races and Dovecot migrations; flags in names."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from mailroom.mailstore.store import MaildirStore, StoreError
from mailroom.mailstore.uidlist import LOCK_NAME, UIDLIST_NAME, StoreBusy, locked, parse

MSG = b"Subject: hi\r\n\r\nbody line\r\n.dot line\r\n"


def deliver(maildir: Path, data: bytes = MSG, when: float | None = None) -> Path:
    return deliver_to_maildir(maildir, data, clock=(lambda: when) if when else time.time, hostname="mx")


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return mailbox_path(tmp_path, "john@example.org")


def test_sync_assigns_uids_in_delivery_order_and_moves_new_to_cur(maildir: Path) -> None:
    later = deliver(maildir, b"Subject: 2\n\nb\n", when=1_800_000_100.0)
    earlier = deliver(maildir, b"Subject: 1\n\na\n", when=1_800_000_000.0)
    folder = MaildirStore(maildir).folder()
    messages = folder.sync()
    assert [m.base for m in messages] == [earlier.name, later.name]
    assert [m.uid for m in messages] == [1, 2]
    assert os.listdir(maildir / "new") == []
    assert sorted(os.listdir(maildir / "cur")) == sorted(f"{p.name}:2," for p in (earlier, later))
    assert messages[0].vsize == len(b"Subject: 1\r\n\r\na\r\n")
    assert messages[0].size == len(b"Subject: 1\n\na\n")
    assert folder.read(1) == b"Subject: 1\n\na\n"
    assert folder.next_uid == 3


def test_uids_and_uidvalidity_survive_a_restart(maildir: Path) -> None:
    deliver(maildir)
    first = MaildirStore(maildir, clock=lambda: 1_700_000_000.0).folder()
    first.sync()
    deliver(maildir)
    again = MaildirStore(maildir, clock=lambda: 1_900_000_000.0).folder()
    messages = again.sync()
    assert [m.uid for m in messages] == [1, 2]
    assert again.uidvalidity == first.uidvalidity == 1_700_000_000
    assert messages[0].pop3_uidl == f"{1:08x}{1_700_000_000:08x}"


def test_empty_inbox_gets_a_persistent_uidvalidity(maildir: Path) -> None:
    folder = MaildirStore(maildir, clock=lambda: 1234.0).folder()
    assert folder.sync() == []
    assert (maildir / UIDLIST_NAME).read_text().startswith("3 V1234 N1 G")


def test_dovecot_v3_uidlist_is_read(maildir: Path) -> None:
    """A mailbox moved from Dovecot keeps UIDs, UIDVALIDITY, sizes and POP3 UIDLs."""
    (maildir / "cur").mkdir(parents=True)
    for sub in ("new", "tmp"):
        (maildir / sub).mkdir()
    a = "1276528487.M364837P9451.kurkku,S=14,W=16"
    b = "1276533073.M242911P3632.kurkku"
    c = "1276533099.M1P1.kurkku,S=4,W=5"
    (maildir / "cur" / f"{a}:2,S").write_bytes(b"Subject: a\n\nx\n")
    (maildir / "cur" / f"{b}:2,FS").write_bytes(b"Sub\n\nline\n")
    (maildir / "cur" / f"{c}:2,").write_bytes(b"x\n\ny")
    (maildir / UIDLIST_NAME).write_text(
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
        f"25006 :{a}:2,\n"
        f"25017 W12 :{b}:2,F\n"
        f"25020 P+OldServerUidl :{c}:2,\n"
    )
    folder = MaildirStore(maildir).folder()
    messages = folder.sync()
    assert [m.uid for m in messages] == [25006, 25017, 25020]
    assert folder.uidvalidity == 1275660208 and folder.next_uid == 25022
    assert messages[0].pop3_uidl == "000061ae4c0907b0"  # Dovecot's %08Xu%08Xv (its %X is lower-case)
    assert messages[1].vsize == 12 and messages[1].flags == {"\\Flagged", "\\Seen"}
    assert messages[2].pop3_uidl == "+OldServerUidl"
    # Rewritten in place of Dovecot's file, in Dovecot's format, GUID kept.
    deliver(maildir)
    assert [m.uid for m in folder.sync()][-1] == 25022
    text = (maildir / UIDLIST_NAME).read_text()
    assert text.startswith("3 V1275660208 N25023 G3085f01b7f11094c501100008c4a11c1\n")
    assert "25017 W12 :" in text and "25020 P+OldServerUidl :" in text


def test_dovecot_v1_uidlist_is_read(maildir: Path) -> None:
    (maildir / "cur").mkdir(parents=True)
    (maildir / "new").mkdir()
    (maildir / "cur" / "100.M1P1.h,S=2,W=3:2,S").write_bytes(b"x\n")
    (maildir / UIDLIST_NAME).write_text("1 1111 50\n42 100.M1P1.h,S=2,W=3:2,S\n")
    folder = MaildirStore(maildir).folder()
    assert [(m.uid, m.vsize) for m in folder.sync()] == [(42, 3)]
    assert folder.uidvalidity == 1111 and folder.next_uid == 50


def test_foreign_file_sizes_are_computed_once_and_cached(maildir: Path) -> None:
    (maildir / "new").mkdir(parents=True)
    (maildir / "cur").mkdir()
    (maildir / "new" / "1000.foreign").write_bytes(b"a\r\nb\nc")
    folder = MaildirStore(maildir).folder()
    [m] = folder.sync()
    assert (m.size, m.vsize) == (6, 7)
    assert " S6 W7 :1000.foreign:2," in (maildir / UIDLIST_NAME).read_text()
    os.truncate(maildir / "cur" / "1000.foreign:2,", 0)  # the cache is believed, not the file
    assert MaildirStore(maildir).folder().sync()[0].vsize == 7


def test_flags_and_keywords_in_names(maildir: Path) -> None:
    deliver(maildir)
    folder = MaildirStore(maildir).folder()
    [m] = folder.sync()
    [m] = folder.store_flags([m.uid], add=["\\Seen", "\\Answered"], add_keywords=["$Junk"])
    assert m.flags == {"\\Seen", "\\Answered"} and m.keywords == {"$Junk"}
    assert m.filename.endswith(":2,RSa")
    assert (maildir / "dovecot-keywords").read_text() == "0 $Junk\n"
    [m] = folder.store_flags([m.uid], remove=["\\Answered"], remove_keywords=["$junk"])
    assert m.filename.endswith(":2,S") and m.keywords == frozenset()
    fresh = MaildirStore(maildir).folder()
    assert fresh.sync()[0].flags == {"\\Seen"}
    assert fresh.read(m.uid) is not None


def test_unknown_flag_letters_and_extra_fields_are_kept(maildir: Path) -> None:
    (maildir / "cur").mkdir(parents=True)
    (maildir / "new").mkdir()
    (maildir / "cur" / "5.x:2,PS,extra").write_bytes(b"x\n")
    folder = MaildirStore(maildir).folder()
    [m] = folder.sync()
    [m] = folder.store_flags([m.uid], add=["\\Flagged"])
    assert m.filename == "5.x:2,FPS,extra"


def test_a_rename_by_another_session_is_followed(maildir: Path) -> None:
    deliver(maildir)
    one, two = MaildirStore(maildir).folder(), MaildirStore(maildir).folder()
    [m] = one.sync()
    two.sync()
    two.store_flags([m.uid], add=["\\Seen"])
    assert one.read(m.uid) == MSG.replace(b"\r\n", b"\n")  # old name gone, base found again
    two.expunge([m.uid])
    assert one.read(m.uid) is None
    assert one.sync() == []


def test_expunge_removes_file_and_record(maildir: Path) -> None:
    for _ in range(3):
        deliver(maildir)
    folder = MaildirStore(maildir).folder()
    uids = [m.uid for m in folder.sync()]
    assert folder.expunge([uids[1], 999]) == [uids[1]]
    assert len(os.listdir(maildir / "cur")) == 2
    assert [m.uid for m in MaildirStore(maildir).folder().sync()] == [uids[0], uids[2]]
    assert f"\n{uids[1]} " not in (maildir / UIDLIST_NAME).read_text()
    deliver(maildir)
    assert folder.sync()[-1].uid == 4  # UIDs are never reused


def test_append_and_internal_date(maildir: Path) -> None:
    folder = MaildirStore(maildir, hostname="mx").folder()
    info = folder.append(b"Subject: x\r\n\r\ny\r\n", flags=["\\Seen"], internal_date=1_600_000_000.0)
    assert info.uid == 1 and info.flags == {"\\Seen"} and info.vsize == 17 and info.size == 14
    assert folder.internal_date(1) == 1_600_000_000.0
    assert [m.uid for m in MaildirStore(maildir).folder().sync()] == [1]


def test_concurrent_delivery_and_sessions_never_share_or_change_a_uid(maildir: Path) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def deliverer() -> None:
        for _ in range(60):
            deliver(maildir)

    def session() -> None:
        folder = MaildirStore(maildir).folder()
        try:
            while not stop.is_set():
                for m in folder.sync():
                    with lock:
                        if seen.setdefault(m.base, m.uid) != m.uid:
                            errors.append(AssertionError(f"{m.base} changed UID"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    deliver(maildir)
    MaildirStore(maildir).folder().sync()
    workers = [threading.Thread(target=deliverer) for _ in range(2)]
    sessions = [threading.Thread(target=session) for _ in range(4)]
    for t in workers + sessions:
        t.start()
    for t in workers:
        t.join(30)
    stop.set()
    for t in sessions:
        t.join(30)
    assert not errors, errors[:3]
    final = MaildirStore(maildir).folder().sync()
    assert len(final) == 121
    assert len({m.uid for m in final}) == 121
    for m in final:
        assert seen.get(m.base, m.uid) == m.uid
    assert not (maildir / LOCK_NAME).exists()


def test_stale_lock_is_broken_and_a_live_one_times_out(maildir: Path) -> None:
    maildir.mkdir(parents=True)
    (maildir / LOCK_NAME).write_text("")
    os.utime(maildir / LOCK_NAME, (time.time() - 600, time.time() - 600))
    with locked(maildir):
        pass
    (maildir / LOCK_NAME).write_text("")
    with pytest.raises(StoreBusy), locked(maildir, wait=0.05):
        pass


def test_folders(maildir: Path) -> None:
    store = MaildirStore(maildir)
    store.folder("Sent", create=True)
    store.folder("Lists.mailroom", create=True)
    assert store.list_folders() == ["INBOX", "Lists.mailroom", "Sent"]
    assert (maildir / ".Sent" / "maildirfolder").exists()
    for bad in ("", "../x", ".hidden", "a..b", "a/b", "x\n", "inbox."):
        with pytest.raises(StoreError):
            store.folder(bad, create=True)
    with pytest.raises(StoreError):
        store.folder("Missing")


def test_corrupt_records_are_skipped() -> None:
    uidlist = parse("3 V5 N3\n1 :a\nbogus\n0 :zero\n1 :dup\n2 W :b/c\n7 :late\n")
    assert [r.uid for r in uidlist.records.values()] == [1, 7]
    assert uidlist.next_uid == 8


def test_a_name_with_a_colon_but_no_info_part_syncs(maildir: Path) -> None:
    """`x:y` (not `:2,`) is a base of its own everywhere, in the scan and in the uidlist."""
    deliver(maildir)
    odd = maildir / "cur" / "1700000000.odd:name"
    odd.write_bytes(b"Subject: odd\n\nbody\n")
    folder = MaildirStore(maildir).folder()
    assert len(folder.sync()) == 2
    again = MaildirStore(maildir).folder()
    assert [m.base for m in again.sync()] == [m.base for m in folder.sync()]
