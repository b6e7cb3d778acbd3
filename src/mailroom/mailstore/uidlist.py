"""`dovecot-uidlist`: the UID <-> file name map of one Maildir folder, in Dovecot's format.

mailroom keeps its UIDs in Dovecot's own file, so a mailbox copied from a Dovecot
server keeps its UIDs, UIDVALIDITY and POP3 UIDLs, and one copied back keeps ours.
Version 3 (Dovecot >= 1.1) is written; version 1 (Courier's courierimapuiddb shape,
old Dovecot) is read too:

    3 V<uidvalidity> N<next uid> G<mailbox guid hex>
    <uid> [<key><value> ...] :<file name, flags included>
    1 <uidvalidity> <next uid>          (v1 header)
    <uid> <file name>                   (v1 record)

Record keys Dovecot knows: S (size), W (CRLF size), P (POP3 UIDL), O (POP3 order),
G (GUID); unknown ones are kept. Concurrency follows Dovecot: readers take no lock
(the file is only ever replaced with rename()); a writer creates
`dovecot-uidlist.lock` with O_EXCL, writes the new content into it and renames it
over the file, which is also the unlock. A lock older than Dovecot's 2 minutes is
stale (its owner died) and is broken.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

UIDLIST_NAME = "dovecot-uidlist"
LOCK_NAME = UIDLIST_NAME + ".lock"
LOCK_STALE_SECONDS = 120.0  # Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT
LOCK_WAIT_SECONDS = 10.0  # then give up with a temporary error rather than hang a session
LOCK_POLL_SECONDS = 0.01
MAX_UIDLIST_BYTES = 512 * 1024 * 1024  # ~5 million records; beyond that the file is not sane
MAX_UID = 2**32 - 1  # RFC 3501 §2.3.1.1: nz-number is 32 bits


class UidListError(Exception):
    """The uidlist cannot be read or written (I/O error, or a header we cannot parse)."""


class StoreBusy(UidListError):
    """Another process holds the lock for too long: a temporary failure."""


@dataclass(slots=True)
class UidRecord:
    uid: int
    filename: str  # last known name (with its :2, flags); the base identifies the message
    ext: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """As names.parse_name cuts it (at ":2,"), so a name with some other ":" matches the scan."""
        return self.filename.partition(":2,")[0]


@dataclass(slots=True)
class UidList:
    uidvalidity: int
    next_uid: int
    header_ext: dict[str, str] = field(default_factory=dict)
    records: dict[str, UidRecord] = field(default_factory=dict)  # by base, in UID order

    @classmethod
    def new(cls, clock: Callable[[], float] = time.time) -> UidList:
        """A fresh folder: UIDVALIDITY from the clock, as Dovecot does."""
        validity = max(1, int(clock()) & MAX_UID)
        return cls(validity, 1, {"G": uuid.uuid4().hex})

    def add(self, filename: str, ext: dict[str, str] | None = None) -> UidRecord:
        if self.next_uid > MAX_UID:
            raise UidListError("UID space exhausted; the folder needs a new UIDVALIDITY")
        record = UidRecord(self.next_uid, filename, ext or {})
        self.records[record.base] = record
        self.next_uid += 1
        return record


def parse(text: str) -> UidList:
    """Read a v1 or v3 uidlist; bad records are skipped (Dovecot would rebuild them)."""
    lines = text.split("\n")
    words = lines[0].split()
    if not words or words[0] not in ("1", "3"):
        raise UidListError(f"unsupported {UIDLIST_NAME} header: {lines[0][:80]!r}")
    header_ext: dict[str, str] = {}
    if words[0] == "1":
        if len(words) < 3 or not (words[1].isdigit() and words[2].isdigit()):
            raise UidListError(f"bad {UIDLIST_NAME} v1 header: {lines[0][:80]!r}")
        validity, next_uid = int(words[1]), int(words[2])
    else:
        header_ext = {w[0]: w[1:] for w in words[1:] if w}
        if not header_ext.get("V", "").isdigit() or not header_ext.get("N", "").isdigit():
            raise UidListError(f"bad {UIDLIST_NAME} v3 header: {lines[0][:80]!r}")
        validity, next_uid = int(header_ext.pop("V")), int(header_ext.pop("N"))
    result = UidList(validity, next_uid, header_ext)
    last = 0
    records = result.records
    v3 = words[0] == "3"
    for line in lines[1:]:
        if v3 and (simple := _SIMPLE_V3.fullmatch(line)) is not None:  # "<uid> :<name>", most records
            uid = int(simple[1])
            if last < uid <= MAX_UID:
                last = uid
                filename = simple[2]
                records[filename.partition(":2,")[0]] = UidRecord(uid, filename, {})
            continue
        record = _parse_record(line, v3=v3)
        if record is None or record.uid <= last:
            continue  # Dovecot requires ascending UIDs; a record out of order is corrupt
        last = record.uid
        records[record.base] = record
    result.next_uid = max(result.next_uid, last + 1)
    return result


_SIMPLE_V3 = re.compile(r"([1-9][0-9]{0,9}) :([^/\n]+)")


def _parse_record(line: str, *, v3: bool) -> UidRecord | None:
    uid_text, _, rest = line.partition(" ")
    if not uid_text.isdigit() or not rest or int(uid_text) > MAX_UID or int(uid_text) == 0:
        return None
    if not v3:
        return UidRecord(int(uid_text), rest.strip())
    ext_part, colon, filename = rest.partition(":")
    if not colon or not filename or "/" in filename:
        return None
    ext = {w[0]: w[1:] for w in ext_part.split() if w}
    return UidRecord(int(uid_text), filename, ext)


def format_uidlist(uidlist: UidList) -> str:
    header = [f"V{uidlist.uidvalidity}", f"N{uidlist.next_uid}"]
    header += [f"{k}{v}" for k, v in uidlist.header_ext.items() if k not in "VN"]
    out = ["3 " + " ".join(header)]
    for record in sorted(uidlist.records.values(), key=lambda r: r.uid):
        ext = "".join(f"{k}{v} " for k, v in record.ext.items())
        out.append(f"{record.uid} {ext}:{record.filename}")
    return "\n".join(out) + "\n"


def read_uidlist(folder: Path) -> UidList | None:
    """The folder's uidlist, or None when it has none yet."""
    path = folder / UIDLIST_NAME
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_UIDLIST_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UidListError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_UIDLIST_BYTES:
        raise UidListError(f"{path}: larger than {MAX_UIDLIST_BYTES} bytes")
    return parse(data.decode("utf-8", "surrogateescape"))


def stamp(folder: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size) of the uidlist: it changed when this changed (rename = new inode)."""
    try:
        st = os.stat(folder / UIDLIST_NAME)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Lock:
    """The held `dovecot-uidlist.lock`; `commit()` publishes a new uidlist, `release()` drops it."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    def commit(self, uidlist: UidList) -> None:
        """Write the new content into the lock file and rename it into place (unlocks)."""
        assert self._fd is not None, "lock already released"
        fd, self._fd = self._fd, None
        try:
            data = format_uidlist(uidlist).encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            _unlink(self.folder / LOCK_NAME)
            raise UidListError(f"{self.folder / UIDLIST_NAME}: {exc.strerror or exc}") from None
        os.close(fd)
        os.rename(self.folder / LOCK_NAME, self.folder / UIDLIST_NAME)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _unlink(self.folder / LOCK_NAME)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def locked(
    folder: Path,
    *,
    wait: float = LOCK_WAIT_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lock]:
    """Hold the folder's uidlist lock (blocking, bounded by `wait`); released on exit."""
    path = folder / LOCK_NAME
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if clock() - os.stat(path).st_mtime > LOCK_STALE_SECONDS:
                    _unlink(path)  # its owner died holding it (Dovecot does the same)
                    if time.monotonic() < deadline:
                        continue
        except OSError as exc:
            raise UidListError(f"{path}: {exc.strerror or exc}") from None
        if time.monotonic() >= deadline:
            raise StoreBusy(f"{path}: held by another process for more than {wait:g}s")
        sleep(LOCK_POLL_SECONDS)
    lock = Lock(folder, fd)
    try:
        yield lock
    finally:
        lock.release()
