"""Maildir delivery in the Dovecot/ISPmail layout: base/<domain>/<localpart>/Maildir.

A message is written to tmp/ under a unique name, fsynced, hard-linked into new/
(a link refuses to replace an existing file, unlike rename) and new/ is fsynced,
so a reader sees either nothing or the whole message. MaildirWriter does this for
a batch of messages with one fsync of each new/ for the whole batch.

Exactly once: the queue names each delivery after its queue ID and mailbox
(delivery_unique), the same name on every attempt, so an attempt repeated after a
crash (the file was linked, the queue had not yet recorded it) finds the file
of the first one, in new/ or in cur/, instead of delivering a second copy. Names follow Dovecot's
`<secs>.M<usecs>P<pid>Q<n>R<rand>.<host>,S=<size>,W=<vsize>`: S= is the file size
and W= the size with CRLF line ends (RFC822.SIZE), so IMAP and quota never stat.
Files use LF line ends, the Maildir convention Dovecot expects.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import random
import re
import socket
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DIR_MODE = 0o700  # Dovecot creates mail directories private to the owner
FILE_MODE = 0o600
SUBDIRS = ("tmp", "new", "cur")
MAX_NAME_RETRIES = 10  # a clash needs the same second, microsecond, pid and counter
RANDOM_HEX_DIGITS = 8

_SIZE_RE = re.compile(rb",S=(\d+)")
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
_counter = itertools.count(1)
MAX_CACHED_MAILBOXES = 10_000  # bound on the writer's per-mailbox memory
INFO_SEPARATOR = ":2,"  # cur/ names: <base>:2,<flags>
# The R part only has to differ between hosts and restarts; it need not be secret.
_random = random.Random()
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()
    _random.seed()


os.register_at_fork(after_in_child=_after_fork)


class UnsafeAddress(ValueError):
    """The address would make a path outside the mailbox base (or is not an address)."""


def mailbox_path(base: Path, address: str) -> Path:
    """`base/<domain>/<localpart>/Maildir` for `address`, lower-cased, refusing escapes."""
    localpart, at, domain = address.lower().rpartition("@")
    if not at:
        raise UnsafeAddress(f"not an address: {address!r}")
    for part in (localpart, domain):
        if not part or part.startswith(".") or ".." in part or _FORBIDDEN.search(part):
            raise UnsafeAddress(f"unsafe mailbox address: {address!r}")
    path = base / domain / localpart / "Maildir"
    if os.path.normpath(path).startswith(os.path.normpath(base) + os.sep):
        return path
    raise UnsafeAddress(f"unsafe mailbox address: {address!r}")  # pragma: no cover - belt and braces


def ensure_maildir(maildir: Path) -> None:
    """Create Maildir/{tmp,new,cur} (and parents) with mode 0700 if missing.

    Every directory created here has its entry fsynced in its parent: a first
    delivery to a new mailbox must survive a power loss like any other.
    """
    if all((maildir / sub).is_dir() for sub in SUBDIRS):
        return
    created: list[Path] = []
    missing = maildir
    while not missing.exists():
        created.append(missing)
        missing = missing.parent
    for sub in SUBDIRS:
        if not (maildir / sub).exists():
            created.append(maildir / sub)
    for sub in SUBDIRS:
        (maildir / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for parent in sorted({path.parent for path in created}, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(parent)


def _host_part(hostname: str) -> str:
    # Maildir spec: "/" and ":" in the host name are written as octal escapes.
    return hostname.replace("/", r"\057").replace(":", r"\072")


def to_lf(data: bytes) -> bytes:
    """CRLF → LF in one C-level pass; data without CR is returned as is."""
    return data.replace(b"\r\n", b"\n") if b"\r" in data else data


def maildir_name(now: float, size: int, vsize: int, hostname: str) -> str:
    """A Dovecot-compatible unique base name (no flags suffix: new/ has none)."""
    secs, usecs = divmod(round(now * 1_000_000), 1_000_000)
    rand = _random.getrandbits(RANDOM_HEX_DIGITS * 4)
    return (f"{secs}.M{usecs}P{_pid}Q{next(_counter)}R{rand:0{RANDOM_HEX_DIGITS}x}."
            f"{_host_part(hostname)},S={size},W={vsize}")


class QuotaExceeded(Exception):
    """The message does not fit in the mailbox's quota."""


@dataclass(slots=True)
class MaildirJob:
    """One message for one Maildir, as MaildirWriter.deliver_batch takes it."""

    maildir: Path
    data: bytes
    header: bytes = b""
    quota: int = 0  # bytes the mailbox may hold in all; 0 = no limit
    # A unique part that is the same on every attempt of one delivery (see
    # delivery_unique): makes a repeated attempt find the first one instead of
    # delivering a second copy. Empty: a fresh unique name.
    unique: str = ""
    # An earlier attempt may have happened (and the message moved on to cur/):
    # look there too, not only in new/, before writing.
    check_existing: bool = False


@dataclass(slots=True)
class _Staged:
    """A message written to tmp/ (open as `fd`), not yet fsynced nor linked."""

    job: MaildirJob
    fd: int
    tmp_path: Path
    new_path: Path
    fixed: bool  # the name is the job's own (see MaildirJob.unique)
    size: int


def _fsync_each(fds: Sequence[int]) -> list[OSError | None]:
    """One fsync after the other (MaildirWriter's default `sync_files`)."""
    errors: list[OSError | None] = []
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


class MaildirWriter:
    """Delivers batches of messages with one fsync of each `new/` per batch.

    Each message is still written to tmp/, fsynced and linked into new/ on its own;
    what a batch shares is the directory fsync, which makes all the links durable
    at once. Nothing is reported delivered before that fsync. The writer remembers
    which Maildirs exist (no mkdir calls per message) and their sizes for quota
    (see MailboxSizes). Use it from one thread at a time.

    `sync_files` fsyncs the batch's files (all written first, linked only after):
    the queue passes one that runs the fsyncs together, so their waits for the
    disk overlap (mailroom.queue.fsync); the default does one after the other.
    """

    def __init__(self, *, hostname: str | None = None,
                 clock: Callable[[], float] = time.time,
                 sync_files: Callable[[Sequence[int]], Sequence[OSError | None]] = _fsync_each) -> None:
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.sizes = MailboxSizes()
        self._ready: set[Path] = set()
        self._sync_files = sync_files

    def deliver(self, maildir: Path, data: bytes, *, header: bytes = b"") -> Path:
        """One message, durable on return; raises OSError."""
        result = self.deliver_batch([MaildirJob(maildir, data, header)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def deliver_batch(self, jobs: Sequence[MaildirJob]) -> list[Path | BaseException]:
        """Store each job's `header + data` (made LF); a path in new/ or the error, per job."""
        results: list[Path | BaseException] = []
        staged: list[tuple[int, _Staged]] = []
        pending: dict[Path, int] = {}  # bytes staged per Maildir, for the quota of the next job
        for i, job in enumerate(jobs):
            try:
                item = self._stage(job, pending)
            except (OSError, QuotaExceeded) as exc:
                results.append(exc)
                continue
            results.append(item if isinstance(item, Path) else _NOT_YET)
            if isinstance(item, _Staged):
                staged.append((i, item))
        try:
            errors = self._sync_files([item.fd for _, item in staged]) if staged else []
        except BaseException:
            for _, item in staged:  # nothing was linked: leave nothing behind
                os.close(item.fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.tmp_path)
            raise
        for (i, item), error in zip(staged, errors, strict=True):
            try:
                done = self._finish(item, error)
                results[i] = done if done is not None else self._write(item.job)
            except (OSError, QuotaExceeded) as exc:
                results[i] = exc
        failed: dict[Path, OSError] = {}
        for directory in {r.parent for r in results if isinstance(r, Path)}:
            try:
                _fsync_dir(directory)
            except OSError as exc:
                failed[directory] = exc
        for i, result in enumerate(results):
            if isinstance(result, Path) and result.parent in failed:
                # Not durable, so not delivered: take it back, the queue will retry.
                with contextlib.suppress(OSError):
                    os.unlink(result)
                results[i] = failed[result.parent]
                self.sizes.forget(jobs[i].maildir)
        return results

    def _write(self, job: MaildirJob) -> Path:
        """One job on its own: stage, fsync, link (again with a new name after a clash)."""
        for _ in range(MAX_NAME_RETRIES):
            item = self._stage(job, {})
            if isinstance(item, Path):
                return item
            error: OSError | None = None
            try:
                os.fsync(item.fd)
            except OSError as exc:
                error = exc
            done = self._finish(item, error)
            if done is not None:
                return done
        raise FileExistsError(errno.EEXIST, "cannot find a unique maildir name", str(job.maildir))

    def _stage(self, job: MaildirJob, pending: dict[Path, int]) -> _Staged | Path:
        """Write the message to tmp/ (no fsync yet), or find the copy an earlier attempt made."""
        maildir = job.maildir
        header, data = to_lf(job.header), to_lf(job.data)
        size = len(header) + len(data)
        vsize = size + header.count(b"\n") + data.count(b"\n")
        fixed = f"{job.unique}.{_host_part(self.hostname)},S={size},W={vsize}" if job.unique else ""
        if fixed and job.check_existing:
            earlier = _find_delivered(maildir, fixed)
            if earlier is not None:
                return earlier
        if job.quota > 0 and self.sizes.size(maildir) + pending.get(maildir, 0) + size > job.quota:
            raise QuotaExceeded(maildir)
        if maildir not in self._ready:
            ensure_maildir(maildir)
            if len(self._ready) >= MAX_CACHED_MAILBOXES:
                self._ready.clear()
            self._ready.add(maildir)
        for _ in range(MAX_NAME_RETRIES):
            name = fixed or maildir_name(self.clock(), size, vsize, self.hostname)
            tmp_path, new_path = maildir / "tmp" / name, maildir / "new" / name
            try:
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            except FileExistsError:
                if fixed:  # left by an attempt that crashed before its link
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp_path)
                continue
            except FileNotFoundError:
                self._ready.discard(maildir)  # removed behind our back: make it again
                ensure_maildir(maildir)
                self._ready.add(maildir)
                continue
            try:
                _write_all(fd, header, data)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
                raise
            if job.quota > 0:
                pending[maildir] = pending.get(maildir, 0) + size
            return _Staged(job, fd, tmp_path, new_path, bool(fixed), size)
        raise FileExistsError(errno.EEXIST, "cannot find a unique maildir name", str(maildir))

    def _finish(self, item: _Staged, fsync_error: OSError | None) -> Path | None:
        """Close and link a staged message once fsynced; None: its name was taken, write it again."""
        try:
            os.close(item.fd)
            if fsync_error is not None:
                raise fsync_error
            try:
                os.link(item.tmp_path, item.new_path)  # unlike rename, never replaces a message
            except FileExistsError:
                if item.fixed:
                    return item.new_path  # an earlier attempt got this far: delivered
                return None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                os.rename(item.tmp_path, item.new_path)  # file systems without hard links
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.tmp_path)
        if item.job.quota > 0:
            self.sizes.add(item.job.maildir, item.size)
        return item.new_path


_NOT_YET = OSError("not written")  # a staged job's place in the results until it is linked


def delivery_unique(arrival: float, queue_id: str, mailbox: str) -> str:
    """The unique part of the Maildir name for delivering queued message `queue_id` to
    `mailbox`: Dovecot's `<secs>.M<usecs>...` shape, the same on every attempt."""
    secs, usecs = divmod(round(arrival * 1_000_000), 1_000_000)
    tag = zlib.crc32(mailbox.lower().encode("utf-8", "surrogateescape"))
    return f"{secs}.M{usecs}Q{queue_id}R{tag:08x}"


def _find_delivered(maildir: Path, name: str) -> Path | None:
    """The message called `name` in new/, or in cur/ with any flags, if it is there."""
    new_path = maildir / "new" / name
    if os.path.lexists(new_path):
        return new_path
    prefix = name + INFO_SEPARATOR
    try:
        with os.scandir(maildir / "cur") as entries:
            for entry in entries:
                if entry.name == name or entry.name.startswith(prefix):
                    return Path(entry.path)
    except FileNotFoundError:
        pass
    return None


def _write_all(fd: int, header: bytes, data: bytes) -> None:
    total = len(header) + len(data)
    written = os.writev(fd, (header, data)) if total else 0
    if written < total:
        view = memoryview(header + data)[written:]
        while view:
            view = view[os.write(fd, view):]


def deliver_to_maildir(
    maildir: Path,
    data: bytes,
    *,
    header: bytes = b"",
    clock: Callable[[], float] = time.time,
    hostname: str | None = None,
) -> Path:
    """Store `header + data` (line ends made LF) as a new message; return its path in new/.

    Durable when it returns: the file and the new/ entry are fsynced.
    """
    return MaildirWriter(hostname=hostname, clock=clock).deliver(maildir, data, header=header)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def message_size(directory: Path, name: str) -> int:
    """The ,S= size in a Maildir name, else the file's size (foreign or old files)."""
    match = _SIZE_RE.search(name.encode())
    if match:
        return int(match.group(1))
    try:
        return (directory / name).stat().st_size
    except FileNotFoundError:
        return 0  # expunged meanwhile


def mailbox_size(maildir: Path) -> int:
    """Bytes used by all folders (INBOX and Maildir++ `.Folder`s), as Dovecot's quota counts."""
    total = 0
    for folder in _folders(maildir):
        for sub in ("new", "cur"):
            directory = folder / sub
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            total += sum(message_size(directory, n) for n in names if not n.startswith("."))
    return total


class MailboxSizes:
    """mailbox_size() per Maildir, listed again only when a folder changed.

    A cached total stays valid while the modification times of the Maildir and of
    each folder's new/ and cur/ are what they were when it was counted; the
    writer adds what it delivers itself and re-reads those times. A change made by
    another process within the same file-system clock tick as one of ours can be
    missed until the next change: quota is a limit on growth, not an exact count.
    """

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[list[Path], tuple[int, ...], int]] = {}

    @staticmethod
    def _stamp(maildir: Path, folders: list[Path]) -> tuple[int, ...]:
        stamps = []
        for directory in [maildir, *(f / sub for f in folders for sub in ("new", "cur"))]:
            try:
                stamps.append(os.stat(directory).st_mtime_ns)
            except FileNotFoundError:
                stamps.append(-1)
        return tuple(stamps)

    def size(self, maildir: Path) -> int:
        entry = self._entries.get(maildir)
        if entry is not None and self._stamp(maildir, entry[0]) == entry[1]:
            return entry[2]
        folders = _folders(maildir)
        stamp = self._stamp(maildir, folders)  # before counting: a change meanwhile shows next time
        total = mailbox_size(maildir)
        if len(self._entries) >= MAX_CACHED_MAILBOXES:
            self._entries.clear()
        self._entries[maildir] = (folders, stamp, total)
        return total

    def add(self, maildir: Path, size: int) -> None:
        entry = self._entries.get(maildir)
        if entry is not None:
            self._entries[maildir] = (entry[0], self._stamp(maildir, entry[0]), entry[2] + size)

    def forget(self, maildir: Path) -> None:
        self._entries.pop(maildir, None)


def _folders(maildir: Path) -> list[Path]:
    """INBOX and the Maildir++ `.Folder`s."""
    folders = [maildir]
    try:
        with os.scandir(maildir) as entries:
            folders += [Path(e.path) for e in entries if e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        pass
    return folders
