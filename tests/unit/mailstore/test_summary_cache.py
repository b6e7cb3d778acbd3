"""The folder's summary cache and the unchanged-folder fast path: FETCH without files, safely."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from mailroom.imap import mime
from mailroom.mailstore import store as store_module
from mailroom.mailstore.cache import CACHE_NAME, SummaryCache
from mailroom.mailstore.imap_backend import MaildirBackend
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from mailroom.mailstore.store import Folder, MaildirStore, MessageInfo

MSG = b"From: Lisa <lisa@example.com>\nTo: john@example.org\nSubject: hello\n\nbody\n"
PAST = time.time() - 3600


def deliver(maildir: Path, data: bytes = MSG) -> Path:
    return deliver_to_maildir(maildir, data, hostname="mx")


_aged = itertools.count()


def age(maildir: Path) -> None:
    """Make the folder look untouched for an hour, so its directory times are trusted.
    Each call picks a different past time: a real change never restores an old time."""
    when = PAST + next(_aged)
    for entry in ("new", "cur", "dovecot-uidlist"):
        if (maildir / entry).exists():
            os.utime(maildir / entry, (when, when))


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return mailbox_path(tmp_path, "john@example.org")


def test_values_persist_across_sessions_and_forget_drops_them(tmp_path: Path) -> None:
    first = SummaryCache(tmp_path)
    first.put("ENVELOPE", "base1", b"(env)")
    first.put("ENVELOPE", "base2", b"(env2)")
    first.close()
    second = SummaryCache(tmp_path)
    assert second.field("ENVELOPE") == {"base1": b"(env)", "base2": b"(env2)"}
    second.forget(["base1"])
    assert SummaryCache(tmp_path).field("ENVELOPE") == {"base2": b"(env2)"}


def test_a_damaged_cache_is_set_aside_never_trusted(tmp_path: Path) -> None:
    (tmp_path / CACHE_NAME).write_bytes(b"this is not a database at all" * 100)
    cache = SummaryCache(tmp_path)
    assert cache.get("ENVELOPE", "base1") is None
    cache.put("ENVELOPE", "base1", b"(env)")
    cache.close()
    assert (tmp_path / f"{CACHE_NAME}.broken").exists()
    assert SummaryCache(tmp_path).get("ENVELOPE", "base1") == b"(env)"


def test_an_unwritable_cache_is_a_miss_not_an_error(tmp_path: Path) -> None:
    (tmp_path / CACHE_NAME).mkdir()  # cannot be opened as a database
    cache = SummaryCache(tmp_path)
    assert cache.get("ENVELOPE", "b") is None
    cache.put("ENVELOPE", "b", b"(env)")
    cache.close()
    assert cache.broken
    assert cache.get("ENVELOPE", "b") == b"(env)"  # kept for this session at least


def test_a_second_session_fetches_summaries_without_opening_files(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        deliver(maildir)
    first = MaildirBackend(MaildirStore(maildir)).open("INBOX")
    metas = first.sync()
    expected = {m.uid: mime.envelope(mime.parse(first.read(m.uid) or b"").headers) for m in metas}
    for m in metas:
        assert first.summary(m.uid, "ENVELOPE", lambda u=m.uid: expected[u]) == expected[m.uid]  # type: ignore[misc]
        first.internal_date(m.uid)
    first.sync()  # end of the command: the summaries are written

    def no_files(self: Folder, uid: int) -> bytes:
        raise AssertionError("a message file was opened")

    monkeypatch.setattr(Folder, "read", no_files)
    monkeypatch.setattr(Folder, "internal_date", no_files)
    second = MaildirBackend(MaildirStore(maildir)).open("INBOX")
    for m in second.sync():
        assert second.summary(m.uid, "ENVELOPE", lambda: b"recomputed") == expected[m.uid]
        assert second.internal_date(m.uid) > 0


def test_expunge_forgets_the_summaries(maildir: Path) -> None:
    deliver(maildir)
    mailbox = MaildirBackend(MaildirStore(maildir)).open("INBOX")
    (meta,) = mailbox.sync()
    mailbox.summary(meta.uid, "ENVELOPE", lambda: b"(env)")
    mailbox.sync()
    assert SummaryCache(maildir).field("ENVELOPE")
    mailbox.expunge([meta.uid])
    assert SummaryCache(maildir).field("ENVELOPE") == {}


def test_an_unchanged_folder_is_not_listed_again(maildir: Path) -> None:
    deliver(maildir)
    folder = MaildirStore(maildir).folder()
    folder.sync()
    age(maildir)
    listed = folder.sync()  # a full scan, now with trusted directory times
    generation = folder.generation
    assert folder.sync() is listed
    assert folder.generation == generation


def test_changes_after_the_fast_path_are_still_seen(maildir: Path) -> None:
    deliver(maildir)
    folder = MaildirStore(maildir).folder()
    folder.sync()
    age(maildir)
    folder.sync()
    deliver(maildir)  # new/ gets a new entry: its time moves
    assert len(folder.sync()) == 2
    age(maildir)
    folder.sync()
    other = MaildirStore(maildir).folder()  # another session renames a file to flag it
    other.sync()
    other.store_flags([1], add={"\\Flagged"})
    assert "\\Flagged" in (folder.sync()[0].flags)


def test_recent_directory_times_are_not_trusted(maildir: Path) -> None:
    """A change in the same clock tick as the scan would not move the time: scan again."""
    deliver(maildir)
    folder = MaildirStore(maildir).folder()
    folder.sync()
    (name,) = os.listdir(maildir / "cur")
    before = os.stat(maildir / "cur").st_mtime_ns
    os.rename(maildir / "cur" / name, maildir / "cur" / (name + "S"))
    os.utime(maildir / "cur", ns=(before, before))  # as if in the same tick
    assert "\\Seen" in folder.sync()[0].flags


@pytest.mark.parametrize("nfs", [False, True])
def test_mail_nfs_storage_lists_at_every_look(maildir: Path, nfs: bool) -> None:
    """NFS clients cache directory times: a stale time must not hide a change there."""
    deliver(maildir)
    folder = MaildirStore(maildir, nfs=nfs).folder()
    folder.sync()
    age(maildir)
    folder.sync()
    (name,) = os.listdir(maildir / "cur")
    cached = os.stat(maildir / "cur")
    os.rename(maildir / "cur" / name, maildir / "cur" / (name + "S"))
    os.utime(maildir / "cur", ns=(cached.st_atime_ns, cached.st_mtime_ns))  # what a stale attribute cache shows
    seen = "\\Seen" in folder.sync()[0].flags
    assert seen is nfs  # without mail_nfs_storage the trusted time hides it (local disks never lie so)


def test_whole_second_times_need_two_seconds_to_settle() -> None:
    from mailroom.mailstore.store import _settled

    now = 1_800_000_000.5
    fine = (None, (1, int((now - 0.5) * 1e9) + 123, 0))
    coarse = (None, (1, int(now - 1) * 1_000_000_000, 0))
    assert _settled(fine, now)
    assert not _settled(coarse, now)  # 1.5 s ago, but the time may hide a later change
    assert _settled(coarse, now + 1.5)


# ------------------------------------------------------------------ snapshots
@pytest.fixture
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots of small folders, and no in-memory sharing: these tests are about the file."""
    monkeypatch.setattr(store_module, "SNAPSHOT_MIN", 1)
    monkeypatch.setattr(store_module.SHARED_SCANS, "max_messages", 0)


def snapshotted(maildir: Path, count: int = 3) -> list[MessageInfo]:
    """A folder of `count` messages, settled, with a snapshot of its last full scan."""
    for _ in range(count):
        deliver(maildir)
    folder = MaildirStore(maildir).folder()
    folder.sync()
    age(maildir)
    return list(folder.sync())


def no_full_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a full sync ran")

    monkeypatch.setattr(store_module, "read_uidlist", refuse)
    monkeypatch.setattr(Folder, "_scan", refuse)


@pytest.mark.usefixtures("small_snapshots")
def test_a_new_session_restores_an_unchanged_folder_from_its_snapshot(
        maildir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshotted(maildir)
    reference = MaildirStore(maildir).folder()
    reference.sync()
    no_full_sync(monkeypatch)
    fresh = MaildirStore(maildir).folder()
    assert fresh.sync() == before
    assert (fresh.uidvalidity, fresh.next_uid) == (reference.uidvalidity, reference.next_uid)


@pytest.mark.usefixtures("small_snapshots")
@pytest.mark.parametrize("change", ["deliver", "flag", "expunge", "damage"])
def test_any_change_since_the_snapshot_means_a_full_sync(maildir: Path, change: str) -> None:
    before = snapshotted(maildir)
    other = MaildirStore(maildir).folder()
    other.sync()
    if change == "deliver":
        deliver(maildir)
    elif change == "flag":
        other.store_flags([before[0].uid], add={"\\Flagged"})
    elif change == "expunge":
        other.expunge([before[0].uid])
    else:
        SummaryCache(maildir).write_one("SNAPSHOT", "", b"{not json")
    age(maildir)
    fresh = MaildirStore(maildir).folder()
    expected = {"deliver": 4, "flag": 3, "expunge": 2, "damage": 3}[change]
    assert len(fresh.sync()) == expected
    if change == "flag":
        assert "\\Flagged" in fresh.get(before[0].uid).flags  # type: ignore[union-attr]
    assert [m.uid for m in fresh.sync()] == sorted(m.uid for m in fresh.sync())


@pytest.mark.usefixtures("small_snapshots")
def test_after_a_restore_new_mail_gets_the_next_uid(maildir: Path) -> None:
    before = snapshotted(maildir)
    fresh = MaildirStore(maildir).folder()
    fresh.sync()
    deliver(maildir)
    after = fresh.sync()
    assert [m.uid for m in after] == [m.uid for m in before] + [before[-1].uid + 1]
    assert fresh.next_uid == before[-1].uid + 2


def test_small_folders_write_no_cache_file(maildir: Path) -> None:
    snapshotted(maildir)
    assert not (maildir / CACHE_NAME).exists()


@pytest.mark.usefixtures("small_snapshots")
@pytest.mark.parametrize("damage", ["outside", "recursion", "mixed_uids", "huge_uid", "bad_next"])
def test_a_crafted_snapshot_is_never_trusted(maildir: Path, damage: str) -> None:
    """Whoever can write the Maildir can write mailroom.cache: its rows must not name files
    outside the folder, crash the session, or break UID rules."""
    import json

    before = snapshotted(maildir)
    raw = SummaryCache(maildir).read_one("SNAPSHOT", "")
    assert raw is not None
    data = json.loads(raw)
    (maildir.parent / "outside-secret.txt").write_text("secret")
    if damage == "outside":
        data["rows"][0][1:4] = ["outside-secret.txt", "", ".."]
        crafted = json.dumps(data).encode()
    elif damage == "recursion":
        crafted = b"[" * 200_000
    elif damage == "mixed_uids":
        data["rows"][1][0] = "2"
        crafted = json.dumps(data).encode()
    elif damage == "huge_uid":
        data["rows"][-1][0] = 2**40
        crafted = json.dumps(data).encode()
    else:
        data["next_uid"] = 1
        crafted = json.dumps(data).encode()
    SummaryCache(maildir).write_one("SNAPSHOT", "", crafted)
    fresh = MaildirStore(maildir).folder()
    assert fresh.sync() == before  # a full sync, as if there were no snapshot
    assert fresh.read(before[0].uid) == MSG
    assert (maildir.parent / "outside-secret.txt").exists()


def test_a_symlinked_cache_is_not_followed(maildir: Path, tmp_path: Path) -> None:
    deliver(maildir)
    target = tmp_path / "elsewhere.db"
    target.write_bytes(b"")
    os.chmod(target, 0o644)
    (maildir / CACHE_NAME).symlink_to(target)
    cache = SummaryCache(maildir)
    cache.put("ENVELOPE", "b", b"(env)")
    cache.close()
    assert target.read_bytes() == b"" and (target.stat().st_mode & 0o777) == 0o644
    assert cache.get("ENVELOPE", "b") == b"(env)"  # still works for this session, from memory


def test_rows_of_messages_expunged_elsewhere_are_pruned(maildir: Path) -> None:
    deliver(maildir)
    SummaryCache(maildir).write_one("ENVELOPE", "placeholder", b"x")
    stale = SummaryCache(maildir)
    for i in range(300):
        stale.put("ENVELOPE", f"gone-{i}", b"(old)")  # expunged by Dovecot or a MUA meanwhile
    stale.close()
    mailbox = MaildirBackend(MaildirStore(maildir)).open("INBOX")
    (meta,) = mailbox.sync()
    mailbox.summary(meta.uid, "ENVELOPE", lambda: b"(env)")  # loads the field, 300 orphans in it
    mailbox.sync()
    assert set(SummaryCache(maildir).field("ENVELOPE")) == {mailbox.folder.get(meta.uid).base}  # type: ignore[union-attr]
