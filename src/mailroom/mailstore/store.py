"""One user's Maildir++ tree as IMAP and POP3 see it: folders, UIDs, flags, sizes.

Theory of operation
-------------------
Delivery (maildir.py) only ever links complete files into `new/`; it takes no lock.
Everything else goes through a `Folder`, which keeps Dovecot's model and files:

* UIDs and UIDVALIDITY live in `dovecot-uidlist` (uidlist.py). `sync()` lists
  new/ and cur/ without a lock; only when what it sees differs from the uidlist
  (a new file, a vanished one, something still in new/) does it take the uidlist
  lock, list again, move new/ to cur/ (`<base>:2,`), give new files the next UIDs in
  delivery order and publish the uidlist. readdir() may miss a file that is being
  renamed, so no decision is ever taken on an unlocked listing.
* Flags and keywords are letters in the file name (names.py); changing them is a
  rename done under the same lock, so two sessions never race on one file.
* The index: sizes come from the `,S=` / `,W=` fields of the name; for a file
  without them (written by another program) they are computed once and kept in the
  uidlist record (`S`/`W`, Dovecot's keys), so listing a big folder never opens
  its messages. INTERNALDATE is the file's mtime (Dovecot's rule), read on demand.
  What FETCH derives from a message's content (ENVELOPE, BODYSTRUCTURE) is kept in
  the folder's summary cache, `mailroom.cache` (cache.py), by base name.
* Not looking again: `sync()` first compares the times of new/, cur/, the uidlist and
  the keywords file with those of its last full scan; when they have not moved (and
  were settled well before that scan, see _settled) nothing changed and the scan is
  not repeated. A new Folder on a big folder starts from a snapshot of the last full
  scan (kept in the summary cache with those times) when the times still match, or,
  cheaper still, from the scan another session of this process made (shared.py).
  `trust_dir_times=False` (mail_nfs_storage) turns both off.
* \\Recent: only one session can move a file out of new/, so the messages a Folder
  moved (`claimed`) are \\Recent there and nowhere else.
* A message whose file is gone (expunged by another session) reads as `None`.

All methods block on the file system: async callers run them in a worker thread.
A Folder object belongs to one session; sessions share the files and, read-only,
the last full scans of shared.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mailroom.mailstore.cache import SummaryCache
from mailroom.mailstore.maildir import DIR_MODE, FILE_MODE, mailbox_path, maildir_name, to_lf
from mailroom.mailstore.names import (
    INFO_SEPARATOR,
    KEYWORDS_NAME,
    Keywords,
    build_name,
    flags_to_letters,
    letters_to_flags,
    parse_name,
    size_from_name,
    sizes_from_base,
    vsize_from_name,
)
from mailroom.mailstore.shared import SHARED_SCANS, Scan
from mailroom.mailstore.uidlist import (
    MAX_UID,
    UIDLIST_NAME,
    StoreBusy,
    UidList,
    UidListError,
    locked,
    read_uidlist,
    stamp,
)

__all__ = ["Folder", "MaildirStore", "MessageInfo", "StoreBusy", "StoreError", "UidListError"]

INBOX = "INBOX"
SEPARATOR = "."  # Maildir++: Maildir/.Sent, Maildir/.Lists.mailroom
MAX_FOLDER_NAME = 255  # one path component
READ_CHUNK = 1 << 20  # when a size must be computed, read a foreign file this much at a time
_FOLDER_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class StoreError(Exception):
    """A mailbox operation failed for a reason the user cannot fix (I/O, bad name)."""


@dataclass(slots=True)
class MessageInfo:
    """One message as the last sync saw it. Never mutated, only replaced: not frozen only
    because a frozen dataclass costs twice as much to build, and sync builds thousands."""

    uid: int
    base: str  # the part of the name that never changes
    filename: str  # current name, flags included
    subdir: str  # "new" or "cur"
    size: int  # bytes on disk (LF line ends)
    vsize: int  # RFC822.SIZE: bytes with CRLF line ends (what POP3 LIST and IMAP report)
    flags: frozenset[str]  # IMAP system flags (\Seen, ...)
    keywords: frozenset[str]
    uidvalidity: int = 0
    migrated_uidl: str = ""  # `P` record key: the UIDL a migration preserved
    pop3_order: int | None = None  # `O` record key: POP3 order preserved from a migration

    @property
    def pop3_uidl(self) -> str:
        """The `P` key when migrated that way, else Dovecot's default format (built on demand)."""
        # Dovecot's default pop3_uidl_format %08Xu%08Xv: its %X prints lower-case hex.
        return self.migrated_uidl or f"{self.uid:08x}{self.uidvalidity:08x}"


def _delivery_order(base: str) -> tuple[int, str]:
    """Maildir names start with the delivery second: sort by it, then by the rest."""
    secs, _, rest = base.partition(".")
    return (int(secs) if secs.isdigit() else 0, rest)


class Folder:
    """One Maildir folder (INBOX or a `.Folder`)."""

    def __init__(self, path: Path, name: str, *, clock: Callable[[], float] = time.time,
                 hostname: str | None = None, trust_dir_times: bool = True) -> None:
        self.path = path
        self.trust_dir_times = trust_dir_times  # False on NFS: attribute caches hide changes
        self.name = name
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.keywords = Keywords(path)
        self._uidlist: UidList | None = None
        self._uidlist_stamp: tuple[int, int, int] | None = None
        self._messages: dict[int, MessageInfo] = {}
        self._ordered: list[MessageInfo] | None = None  # _messages in UID order, built on demand
        self._marks: tuple[object, ...] | None = None  # what the folder looked like at the last scan
        self._has_new = False  # some message still sits in new/
        # Bases this Folder moved from new/ to cur/. Only one session can move a file, so
        # these are the messages that are \Recent here and nowhere else (RFC 3501 §2.3.2).
        self.claimed: set[str] = set()
        self._snapshot_marks: tuple[object, ...] | None = None  # marks of the saved snapshot, when known
        self.generation = 0  # bumped whenever the message list changes: callers may reuse views
        self.cache = SummaryCache(path)
        # Built once: sync() stats these before every command (plain strings: no Path objects).
        self._mark_paths = tuple(os.path.join(path, name) for name in ("new", "cur", UIDLIST_NAME, KEYWORDS_NAME))
        self._key = str(path)
        # Derived from exactly the current MessageInfo objects by upper layers (see shared.py);
        # a new dict whenever the message list changes.
        self.views: dict[str, object] = {}

    # ------------------------------------------------------------------ state
    @property
    def uidvalidity(self) -> int:
        return self._require().uidvalidity

    @property
    def next_uid(self) -> int:
        return self._require().next_uid

    @property
    def messages(self) -> list[MessageInfo]:
        """What the last sync() saw, in UID order (the same list object until something changes)."""
        if self._ordered is None:
            self._ordered = [self._messages[uid] for uid in sorted(self._messages)]
        return self._ordered

    def _changed(self) -> None:
        self._ordered = None
        self.generation += 1
        self.views = {}

    def get(self, uid: int) -> MessageInfo | None:
        return self._messages.get(uid)

    def _require(self) -> UidList:
        if self._uidlist is None:
            self.sync()
        assert self._uidlist is not None
        return self._uidlist

    # ------------------------------------------------------------------- sync
    def sync(self, *, move_new: bool = True) -> list[MessageInfo]:
        """See what changed on disk; assign UIDs to new messages (see the module docstring)."""
        try:
            started = time.time()
            marks = self._folder_marks()
            if self._unchanged(marks, move_new):
                return self.messages
            if self._uidlist is None and self.trust_dir_times and (
                    self._adopt(marks, move_new) or self._restore(marks, move_new)):
                self._marks = marks
                return self.messages
            uidlist = self._load()
            found = self._scan() if uidlist is not None else None  # no uidlist: the locked sync lists
            if uidlist is None or found is None or self._differs(uidlist, found, move_new):
                uidlist = self._locked_sync(move_new)
                marks = self._folder_marks()
            else:
                self._build(uidlist, found)
            # Directory times tick coarsely: a change in the tick of our scan would not move
            # them, so only times well before the scan are trusted next time (see _settled).
            self._marks = marks if self.trust_dir_times and _settled(marks, started) else None
            if self._marks is not None:
                self._share(marks)
                if marks != self._snapshot_marks and len(self._messages) >= SNAPSHOT_MIN:
                    self._save_snapshot(marks)
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        return self.messages

    def peek(self, *, move_new: bool = True) -> list[MessageInfo] | None:
        """The listing when nothing on disk changed since the last full scan (four stats of
        directories looked at on every command, so their inodes are cached); else None."""
        try:
            marks = self._folder_marks()
        except OSError:
            return None  # sync() will say what is wrong
        return self.messages if self._unchanged(marks, move_new) else None

    def _folder_marks(self) -> tuple[object, ...]:
        """Change times of new/, cur/, the uidlist and the keywords file."""
        marks: list[object] = []
        for path in self._mark_paths:
            try:
                st = os.stat(path)
                marks.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                marks.append(None)
        return tuple(marks)

    def _unchanged(self, marks: tuple[object, ...], move_new: bool) -> bool:
        """Nothing on disk moved since the last full scan (and nothing waits in new/ to move)."""
        if self._marks is None or marks != self._marks or self._uidlist is None:
            return False
        return not (move_new and self._has_new)

    # ---------------------------------------------------------------- snapshot
    # A new session's first look at a big folder would read the whole uidlist and list
    # every file name. When the folder's marks (settled, see _settled) equal those saved
    # with a snapshot of the last full scan, nothing on disk changed since, so the
    # snapshot *is* that scan. JSON (not pickle): the file lives in the user's Maildir.

    def _save_snapshot(self, marks: tuple[object, ...]) -> None:
        assert self._uidlist is not None
        rows = [[m.uid, m.base, m.filename[len(m.base):], m.subdir, m.size, m.vsize, m.migrated_uidl, m.pop3_order]
                for m in self.messages]
        data = {"v": SNAPSHOT_VERSION, "marks": marks, "uidvalidity": self._uidlist.uidvalidity,
                "next_uid": self._uidlist.next_uid, "header_ext": self._uidlist.header_ext, "rows": rows}
        self.cache.write_one(SNAPSHOT_FIELD, "", json.dumps(data, separators=(",", ":")).encode())
        self._snapshot_marks = marks

    def _share(self, marks: tuple[object, ...]) -> None:
        """Offer this scan to the next session of this process (shared.py)."""
        uidlist = self._uidlist
        if uidlist is not None:
            SHARED_SCANS.put(self._key, Scan(marks, uidlist.uidvalidity, uidlist.next_uid,
                                             tuple(uidlist.header_ext.items()), dict(self._messages),
                                             self._has_new, self.views))

    def _adopt(self, marks: tuple[object, ...], move_new: bool) -> bool:
        """Start from another session's scan of this folder when its times still match."""
        scan = SHARED_SCANS.get(self._key, marks)
        if scan is None or (move_new and scan.has_new):
            return False  # new/ must move to cur/ (and become \Recent here): a real sync
        self.keywords.load()
        self._uidlist, self._uidlist_stamp = UidList(scan.uidvalidity, scan.next_uid, dict(scan.header_ext)), None
        self._messages, self._has_new = dict(scan.messages), scan.has_new
        self._changed()
        self.views = scan.views
        return True

    def _restore(self, marks: tuple[object, ...], move_new: bool) -> bool:
        raw = self.cache.read_one(SNAPSHOT_FIELD, "")
        if raw is None:
            return False
        try:
            data = json.loads(raw)
            saved = tuple(None if m is None else tuple(m) for m in data["marks"])
            self._snapshot_marks = saved
            if data["v"] != SNAPSHOT_VERSION or saved != marks:
                return False
            validity, rows = int(data["uidvalidity"]), data["rows"]
            has_new = any(row[3] == "new" for row in rows)
            if move_new and has_new:
                return False  # they must move to cur/ (and become \Recent here): a real sync
            self.keywords.load()
            messages: dict[int, MessageInfo] = {}
            last = 0
            for uid, base, suffix, sub, size, vsize, uidl, order in rows:
                if not _sane_row(uid, last, base, suffix, sub, size, vsize, uidl, order):
                    return False
                last = uid
                letters = suffix.partition(INFO_SEPARATOR)[2].partition(",")[0]
                messages[uid] = MessageInfo(uid, base, base + suffix, sub, size, vsize, letters_to_flags(letters),
                                            self.keywords.letters_to_names(letters), validity, uidl, order)
            next_uid = data["next_uid"]
            header_ext = data["header_ext"]
            if (type(next_uid) is not int or not last < next_uid <= MAX_UID + 1 or not 0 < validity <= MAX_UID
                    or not isinstance(header_ext, dict)
                    or not all(isinstance(k, str) and isinstance(v, str) for k, v in header_ext.items())):
                return False
            header = UidList(validity, next_uid, dict(header_ext))
        except Exception:  # noqa: BLE001 - any damage (even a RecursionError) means: do a full sync
            return False  # not ours or damaged: a full sync will replace it
        # Records are not restored: the next full sync reads the uidlist afresh (stamp None).
        self._uidlist, self._uidlist_stamp = header, None
        self._messages, self._has_new = messages, has_new
        self._changed()
        self._share(marks)
        return True

    def _load(self) -> UidList | None:
        current = stamp(self.path)
        if current is None or current != self._uidlist_stamp or self._uidlist is None:
            self._uidlist = read_uidlist(self.path)
            self._uidlist_stamp = current
        return self._uidlist

    def _scan(self) -> dict[str, tuple[str, str]]:
        """base -> (subdir, name); new/ is listed first, so a file moving to cur/ is seen."""
        found: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            try:
                names = os.listdir(self.path / sub)
            except FileNotFoundError:
                continue
            for name in names:
                if name[:1] != ".":
                    found[name.partition(INFO_SEPARATOR)[0]] = (sub, name)  # parse_name's base, inline
        return found

    @staticmethod
    def _differs(uidlist: UidList, found: dict[str, tuple[str, str]], move_new: bool) -> bool:
        if len(found) != len(uidlist.records):
            return True
        if any(base not in uidlist.records for base in found):
            return True
        return move_new and any(sub == "new" for sub, _ in found.values())

    def _locked_sync(self, move_new: bool) -> UidList:
        with locked(self.path, clock=self.clock) as lock:
            uidlist = read_uidlist(self.path) or UidList.new(self.clock)
            found = self._scan()
            if move_new:
                for base, (sub, name) in list(found.items()):
                    if sub == "new":
                        target = name if parse_name(name).has_info else build_name(base, "")
                        with contextlib.suppress(FileNotFoundError):
                            os.rename(self.path / "new" / name, self.path / "cur" / target)
                            found[base] = ("cur", target)
                            self.claimed.add(base)
            for base in [b for b in uidlist.records if b not in found]:
                del uidlist.records[base]  # expunged (by us, another session or a MUA)
            for base in sorted((b for b in found if b not in uidlist.records), key=_delivery_order):
                sub, name = found[base]
                uidlist.add(name, self._size_ext(sub, name))
            for base, (_, name) in found.items():
                uidlist.records[base].filename = name  # latest names: cheaper look-ups later
            lock.commit(uidlist)
        self._uidlist, self._uidlist_stamp = uidlist, stamp(self.path)
        self._build(uidlist, found)
        return uidlist

    def _size_ext(self, sub: str, name: str) -> dict[str, str]:
        """S/W record keys for a file whose name lacks ,S= / ,W= (computed once, then cached)."""
        base = name.partition(INFO_SEPARATOR)[0]  # parse_name's base, inline: once per new file
        size, vsize = sizes_from_base(base)
        if size is not None and vsize is not None:
            return {}  # the name says both, as Dovecot's and mailroom's names do
        size = lfs = crlfs = 0
        try:
            with open(self.path / sub / name, "rb") as handle:
                prev_cr = False
                while chunk := handle.read(READ_CHUNK):
                    size += len(chunk)
                    lfs += chunk.count(b"\n")
                    crlfs += chunk.count(b"\r\n") + (1 if prev_cr and chunk.startswith(b"\n") else 0)
                    prev_cr = chunk.endswith(b"\r")
        except FileNotFoundError:
            return {}
        ext = {}
        if size_from_name(base) is None:
            ext["S"] = str(size)
        if vsize_from_name(base) is None:
            ext["W"] = str(size + lfs - crlfs)
        return ext

    def _build(self, uidlist: UidList, found: dict[str, tuple[str, str]]) -> None:
        """MessageInfo for each listed file; unchanged ones are reused, not rebuilt."""
        keywords_before = self.keywords.stamp
        self.keywords.load()
        previous = self._messages if self.keywords.stamp == keywords_before else {}
        validity = uidlist.uidvalidity
        messages: dict[int, MessageInfo] = {}
        has_new = False
        for base, record in uidlist.records.items():
            where = found.get(base)
            if where is None:
                continue
            sub, name = where
            has_new = has_new or sub == "new"
            old = previous.get(record.uid)
            if (old is not None and old.filename == name and old.subdir == sub
                    and old.base == base and old.uidvalidity == validity):
                messages[record.uid] = old
                continue
            size, vsize = sizes_from_base(base)
            ext = record.ext
            if size is None:
                size = int(ext.get("S", "0") or 0)
            if vsize is None:
                vsize = int(ext.get("W", "0") or 0) or size
            letters = name.partition(INFO_SEPARATOR)[2].partition(",")[0]  # parse_name's letters, inline
            order = ext.get("O", "") if ext else ""
            messages[record.uid] = MessageInfo(  # positional: this loop runs once per message
                record.uid, base, name, sub, size, vsize, letters_to_flags(letters),
                self.keywords.letters_to_names(letters), validity,
                ext.get("P", "") if ext else "", int(order) if order.isdigit() else None)
        if messages != self._messages:
            self._messages = messages
            self._changed()
        self._has_new = has_new

    # --------------------------------------------------------------- messages
    def _locate(self, info: MessageInfo) -> Path | None:
        """The message's current path: the known name, else a fresh listing (renamed meanwhile)."""
        path = self.path / info.subdir / info.filename
        if os.path.exists(path):
            return path
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(self.path / sub):
                    if parse_name(name).base == info.base:
                        return self.path / sub / name
        return None

    def read(self, uid: int) -> bytes | None:
        """The message's bytes (LF line ends), or None if it was expunged meanwhile."""
        info = self._messages.get(uid)
        if info is None:
            return None
        try:  # the name we know is almost always current: open it without a stat first
            return _read_whole(os.path.join(self.path, info.subdir, info.filename))
        except FileNotFoundError:
            pass  # renamed (flags) or expunged by another session: find it
        except OSError as exc:
            raise StoreError(f"{self.path / info.subdir / info.filename}: {exc.strerror or exc}") from None
        for _ in range(3):  # a rename between locate and open: look again, a few times
            path = self._locate(info)
            if path is None:
                return None
            try:
                return _read_whole(str(path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"{path}: {exc.strerror or exc}") from None
        return None

    def read_nowait(self, uid: int) -> bytes | None:
        """As read(), from the page cache only: BlockingIOError when the disk would be needed
        (not cached, renamed meanwhile, or a file system without RWF_NOWAIT)."""
        global _nowait_reads  # noqa: PLW0603 - learnt once per process
        info = self._messages.get(uid)
        if info is None:
            return None
        if not _nowait_reads:
            raise BlockingIOError("no RWF_NOWAIT here")
        try:
            fd = os.open(os.path.join(self.path, info.subdir, info.filename), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise BlockingIOError("renamed or unreadable: read() finds out") from None
        try:
            size = os.fstat(fd).st_size
            buffer = bytearray(size)
            try:
                got = os.preadv(fd, [buffer], 0, _RWF_NOWAIT) if size else 0
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    _nowait_reads = False
                raise BlockingIOError("not in the page cache") from None
            if got != size:
                raise BlockingIOError("only partly in the page cache")
            return bytes(buffer)
        finally:
            os.close(fd)

    def internal_date(self, uid: int) -> float | None:
        """IMAP INTERNALDATE: the file's mtime (Dovecot's rule)."""
        info = self._messages.get(uid)
        path = self._locate(info) if info is not None else None
        if path is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            return os.stat(path).st_mtime
        return None

    def store_flags(self, uids: Iterable[int], *, add: Iterable[str] = (), remove: Iterable[str] = (),
                    add_keywords: Iterable[str] = (), remove_keywords: Iterable[str] = ()) -> list[MessageInfo]:
        """Change flags of several messages under one lock; returns the updated messages."""
        add_set, remove_set = frozenset(add), frozenset(remove)
        add_kw, remove_kw = list(add_keywords), list(remove_keywords)
        updated: list[MessageInfo] = []
        try:
            with locked(self.path, clock=self.clock):
                self.keywords.load()
                add_letters = flags_to_letters(add_set) + "".join(
                    letter for k in add_kw if (letter := self.keywords.letter_for(k, create=True)))
                remove_letters = flags_to_letters(remove_set) + "".join(
                    letter for k in remove_kw if (letter := self.keywords.letter_for(k, create=False)))
                for uid in uids:
                    info = self._messages.get(uid)
                    path = self._locate(info) if info is not None else None
                    if info is None or path is None:
                        continue
                    parsed = parse_name(path.name)
                    letters = (set(parsed.letters) | set(add_letters)) - set(remove_letters)
                    name = build_name(info.base, "".join(letters), parsed.extra)
                    if path.parent.name != "cur" or name != path.name:
                        os.rename(path, self.path / "cur" / name)
                    new = dataclasses.replace(info, filename=name, subdir="cur",
                                              flags=letters_to_flags("".join(letters)),
                                              keywords=self.keywords.letters_to_names("".join(letters)))
                    self._messages[uid] = new
                    self._changed()
                    updated.append(new)
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        return updated

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Delete messages for good; returns the UIDs removed (gone already: not listed)."""
        removed: dict[int, str] = {}
        try:
            with locked(self.path, clock=self.clock) as lock:
                for uid in uids:
                    info = self._messages.pop(uid, None)
                    if info is not None:
                        self._changed()
                    path = self._locate(info) if info is not None else None
                    if info is None or path is None:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed[uid] = info.base
                uidlist = read_uidlist(self.path)
                if uidlist is not None:
                    for base in removed.values():
                        uidlist.records.pop(base, None)
                    lock.commit(uidlist)
                    self._uidlist, self._uidlist_stamp = uidlist, stamp(self.path)
            _fsync_dir(self.path / "cur")
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        self.cache.forget(removed.values())
        return list(removed)

    def append(self, data: bytes, *, flags: Iterable[str] = (), keywords: Iterable[str] = (),
               internal_date: float | None = None) -> MessageInfo:
        """Store a message (IMAP APPEND, COPY): durable on return, with the next UID."""
        body = to_lf(data)
        size = len(body)
        base = maildir_name(self.clock(), size, size + body.count(b"\n"), self.hostname)
        tmp = self.path / "tmp" / base
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if internal_date is not None:
                os.utime(tmp, (internal_date, internal_date))
            with locked(self.path, clock=self.clock) as lock:
                self.keywords.load()
                letters = flags_to_letters(frozenset(flags)) + "".join(
                    letter for k in keywords if (letter := self.keywords.letter_for(k, create=True)))
                name = build_name(base, letters)
                os.rename(tmp, self.path / "cur" / name)
                _fsync_dir(self.path / "cur")
                uidlist = read_uidlist(self.path) or UidList.new(self.clock)
                record = uidlist.add(name)
                lock.commit(uidlist)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        self._uidlist, self._uidlist_stamp = uidlist, stamp(self.path)
        self._build(uidlist, {**{i.base: (i.subdir, i.filename) for i in self._messages.values()}, base: ("cur", name)})
        info = self._messages[record.uid]
        return info


# A directory time this far before a scan is trusted to move with any later change. A file
# system with nanosecond times ticks with the kernel clock (a few ms); one that stores whole
# seconds (its times end in .000000000) needs Dovecot's two seconds.
SETTLE_NS = 100_000_000
COARSE_SETTLE_NS = 2_000_000_000
SNAPSHOT_MIN = 500  # messages: below this a full scan is cheap, and no snapshot file is written
SNAPSHOT_FIELD = "SNAPSHOT"  # in the summary cache, base ""
SNAPSHOT_VERSION = 1


def _settled(marks: tuple[object, ...], started: float) -> bool:
    times = [m[1] for m in marks if m is not None]  # type: ignore[index]
    coarse = any(t % 1_000_000_000 == 0 for t in times)
    limit = int(started * 1e9) - (COARSE_SETTLE_NS if coarse else SETTLE_NS)
    return all(t < limit for t in times)


def _sane_row(uid: object, last: int, base: object, suffix: object, sub: object, size: object,
              vsize: object, uidl: object, order: object) -> bool:
    """A snapshot row is only trusted when it could have come from a scan of this folder:
    the names stay inside it, UIDs ascend within 32 bits, sizes are sizes."""
    return (type(uid) is int and last < uid <= MAX_UID
            and isinstance(base, str) and isinstance(suffix, str) and sub in ("new", "cur")
            and bool(base) and base[0] != "." and _NAME_FORBIDDEN.isdisjoint(base + suffix)
            and INFO_SEPARATOR not in base and (suffix == "" or suffix.startswith(INFO_SEPARATOR))
            and type(size) is int and type(vsize) is int and size >= 0 and vsize >= 0
            and isinstance(uidl, str) and (order is None or type(order) is int))


_NAME_FORBIDDEN = frozenset("/\0")
# preadv() flag: fail with EAGAIN instead of waiting for the disk (Linux 4.14+).
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_nowait_reads = bool(_RWF_NOWAIT) and hasattr(os, "preadv")


def _read_whole(path: str) -> bytes:
    """A file's bytes with plain system calls: FETCH reads many small files, and a
    buffered file object per message costs more than the read itself."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        if len(data) < size:  # a short read: keep going until EOF
            chunks = [data]
            while chunk := os.read(fd, READ_CHUNK):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def validate_folder_name(name: str) -> str:
    """A Maildir++ folder name ('Sent', 'Lists.mailroom'); raises StoreError when unsafe."""
    if (not name or len(name) > MAX_FOLDER_NAME or _FOLDER_FORBIDDEN.search(name)
            or name.startswith(SEPARATOR) or name.endswith(SEPARATOR) or SEPARATOR * 2 in name
            or name.upper() == INBOX):
        raise StoreError(f"invalid folder name: {name!r}")
    return name


class MaildirStore:
    """A user's Maildir: `Maildir/` is INBOX, `Maildir/.<name>/` the other folders."""

    def __init__(self, maildir: Path, *, clock: Callable[[], float] = time.time,
                 hostname: str | None = None, nfs: bool = False) -> None:
        self.root = maildir
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.nfs = nfs  # mail_nfs_storage

    @classmethod
    def for_user(cls, base: Path, address: str, *, clock: Callable[[], float] = time.time,
                 hostname: str | None = None, nfs: bool = False) -> MaildirStore:
        """The store of `address` under virtual_mailbox_base (raises UnsafeAddress)."""
        return cls(mailbox_path(base, address), clock=clock, hostname=hostname, nfs=nfs)

    def _path(self, name: str) -> Path:
        if name.upper() == INBOX:
            return self.root
        return self.root / (SEPARATOR + validate_folder_name(name))

    def folder(self, name: str = INBOX, *, create: bool = False) -> Folder:
        """Open a folder; INBOX is created on first use (mail may not have arrived yet)."""
        path = self._path(name)
        if create or name.upper() == INBOX:
            self._make(path, marker=name.upper() != INBOX)
        elif not (path / "cur").is_dir():
            raise StoreError(f"no such folder: {name}")
        return Folder(path, INBOX if name.upper() == INBOX else name, clock=self.clock, hostname=self.hostname,
                      trust_dir_times=not self.nfs)

    def list_folders(self) -> list[str]:
        names = [INBOX]
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as entries:
            for entry in entries:
                if (entry.name.startswith(SEPARATOR) and entry.name not in (".", "..")
                        and entry.is_dir() and os.path.isdir(os.path.join(entry.path, "cur"))):
                    names.append(entry.name[1:])
        return [INBOX, *sorted(names[1:])]

    @staticmethod
    def _make(path: Path, *, marker: bool) -> None:
        try:
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            if marker:  # Maildir++: a subfolder holds an empty `maildirfolder` file
                (path / "maildirfolder").touch(mode=FILE_MODE, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror or exc}") from None
