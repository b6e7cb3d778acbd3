from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailroom.mailstore import maildir as maildir_module
from mailroom.mailstore.maildir import (
    MaildirJob,
    MaildirWriter,
    QuotaExceeded,
    UnsafeAddress,
    deliver_to_maildir,
    mailbox_path,
    mailbox_size,
    maildir_name,
    to_lf,
)

NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)R([0-9a-f]{8})\.([^,/:]+),S=(\d+),W=(\d+)$")
MESSAGE = b"Subject: hi\r\n\r\nline one\r\nline two\r\n"


def test_delivery_layout_name_sizes_and_lf(tmp_path: Path) -> None:
    maildir = tmp_path / "example.org" / "john" / "Maildir"
    path = deliver_to_maildir(maildir, MESSAGE, header=b"Return-Path: <a@b>\r\n",
                              clock=lambda: 1_800_000_000.25, hostname="mx1")
    assert path.parent == maildir / "new"
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((maildir / sub).stat().st_mode) == 0o700
    assert os.listdir(maildir / "tmp") == []
    content = path.read_bytes()
    assert content == b"Return-Path: <a@b>\nSubject: hi\n\nline one\nline two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    match = NAME_RE.match(path.name)
    assert match, path.name
    assert match.group(1) == "1800000000" and match.group(2) == "250000"
    assert match.group(3) == str(os.getpid()) and match.group(6) == "mx1"
    assert int(match.group(7)) == len(content) == path.stat().st_size
    assert int(match.group(8)) == len(content) + content.count(b"\n")  # CRLF size


def test_same_instant_gives_distinct_names(tmp_path: Path) -> None:
    paths = {deliver_to_maildir(tmp_path / "Maildir", b"x\n", clock=lambda: 5.0) for _ in range(50)}
    assert len(paths) == 50 and len(os.listdir(tmp_path / "Maildir" / "new")) == 50


def test_file_and_new_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    maildir = tmp_path / "example.org" / "john" / "Maildir"
    path = deliver_to_maildir(maildir, b"x\n")
    message = synced.index(str(maildir / "tmp" / path.name))
    assert synced[-1] == str(maildir / "new")
    assert message < len(synced) - 1
    # A first delivery creates the mailbox: each new directory entry is made durable too.
    for parent in (tmp_path, tmp_path / "example.org", tmp_path / "example.org" / "john", maildir):
        assert str(parent) in synced[:message], parent


def test_host_name_is_escaped() -> None:
    name = maildir_name(1.0, 3, 4, "a/b:c")
    assert r"a\057b\072c" in name and "/" not in name


def test_to_lf() -> None:
    assert to_lf(b"a\r\nb\r\n") == b"a\nb\n"
    assert to_lf(b"a\nb\rc\r\n") == b"a\nb\rc\n"  # a lone CR is data, left alone
    data = b"no carriage returns\n"
    assert to_lf(data) is data


def test_mailbox_path(tmp_path: Path) -> None:
    assert mailbox_path(tmp_path, "John.Doe@Example.ORG") == tmp_path / "example.org" / "john.doe" / "Maildir"


@pytest.mark.parametrize("address", [
    "../../etc@example.org", "john@../etc", "a/b@example.org", "john@example.org/..",
    ".hidden@example.org", "john@.example.org", "jo\x00hn@example.org", "john", "@example.org",
    "john@", "jo\nhn@example.org", "a\\b@example.org", "john@..",
])
def test_mailbox_path_refuses_escapes(tmp_path: Path, address: str) -> None:
    with pytest.raises(UnsafeAddress):
        mailbox_path(tmp_path, address)


def test_mailbox_size_counts_all_folders_and_stats_unsized_files(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    deliver_to_maildir(maildir, b"a" * 100 + b"\n")
    (maildir / "cur" / "123.M1P1.host,S=50,W=52:2,S").write_bytes(b"x" * 50)
    (maildir / "cur" / "old-style-name:2,").write_bytes(b"y" * 7)
    deliver_to_maildir(maildir / ".Sent", b"b" * 9 + b"\n")
    (maildir / "tmp" / "ignored,S=1000").write_bytes(b"")
    assert mailbox_size(maildir) == 101 + 50 + 7 + 10
    assert mailbox_size(tmp_path / "missing") == 0


def test_batch_shares_one_fsync_per_new_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = MaildirWriter(hostname="mx")
    a, b = tmp_path / "a" / "Maildir", tmp_path / "b" / "Maildir"
    results = writer.deliver_batch([MaildirJob(a, b"1\n"), MaildirJob(b, b"2\n"), MaildirJob(a, b"3\n")])
    assert [r.parent for r in results if isinstance(r, Path)] == [a / "new", b / "new", a / "new"]
    dirs = [p for p in synced if p.endswith("/new")]
    assert sorted(dirs) == [str(a / "new"), str(b / "new")]  # one each, after the three files
    assert all(p.startswith(str(tmp_path)) and "/tmp/" in p for p in synced if p not in dirs)
    assert sorted(os.listdir(a / "new")) and os.listdir(a / "tmp") == []


def test_failed_new_fsync_takes_the_messages_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = MaildirWriter(hostname="mx")

    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(maildir_module, "_fsync_dir", broken)
    results = writer.deliver_batch([MaildirJob(tmp_path / "Maildir", b"x\n")] * 2)
    assert all(isinstance(r, OSError) for r in results)
    assert os.listdir(tmp_path / "Maildir" / "new") == []


def test_quota_uses_cached_sizes_and_sees_foreign_changes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    maildir = tmp_path / "Maildir"
    writer = MaildirWriter(hostname="mx")
    listings = 0
    real_listdir = os.listdir

    def listdir(path: object) -> list[str]:
        nonlocal listings
        listings += 1
        return real_listdir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", listdir)
    job = MaildirJob(maildir, b"x" * 99 + b"\n", quota=350)
    assert isinstance(writer.deliver_batch([job])[0], Path)
    first = listings
    assert all(isinstance(r, Path) for r in writer.deliver_batch([job, job]))
    assert listings == first  # our own deliveries are added, not re-counted
    assert isinstance(writer.deliver_batch([job])[0], QuotaExceeded)
    name = real_listdir(maildir / "new")[0]
    os.unlink(maildir / "new" / name)  # an IMAP client expunged a message;
    os.utime(maildir / "new", ns=(1, 1))  # (its mtime, even within our last clock tick)
    assert writer.sizes.size(maildir) == 200
    assert isinstance(writer.deliver_batch([job])[0], Path)


def test_batch_files_are_all_written_before_the_fsyncs_and_linked_after(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def sync_files(fds: Sequence[int]) -> list[OSError | None]:
        paths = [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]
        calls.append(paths)
        assert all(os.listdir(Path(p).parent.parent / "new") == [] for p in paths)  # none linked yet
        return [OSError(errno.EIO, "Input/output error") if Path(p).read_bytes() == b"2\n" else None
                for p in paths]

    writer = MaildirWriter(hostname="mx", sync_files=sync_files)
    a = tmp_path / "a" / "Maildir"
    results = writer.deliver_batch([MaildirJob(a, b"1\n"), MaildirJob(a, b"2\n"), MaildirJob(a, b"3\n")])
    assert len(calls) == 1 and len(calls[0]) == 3
    assert isinstance(results[1], OSError)
    assert [Path(r).read_bytes() for r in results if isinstance(r, Path)] == [b"1\n", b"3\n"]
    assert sorted(os.listdir(a / "new")) == sorted(r.name for r in results if isinstance(r, Path))
    assert os.listdir(a / "tmp") == []


def test_quota_counts_the_messages_before_it_in_the_same_batch(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    writer = MaildirWriter(hostname="mx")
    job = MaildirJob(maildir, b"x" * 99 + b"\n", quota=250)
    results = writer.deliver_batch([job, job, job])
    assert [type(r) for r in results] == [type(results[0]), type(results[0]), QuotaExceeded]
    assert isinstance(results[0], Path) and len(os.listdir(maildir / "new")) == 2
