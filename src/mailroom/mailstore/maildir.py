"""Maildir delivery in the Dovecot/ISPmail layout: base/<domain>/<localpart>/Maildir.

A message is written to tmp/ under a unique name, fsynced, hard-linked into new/
(a link refuses to replace an existing file, unlike rename) and new/ is fsynced,
so a reader sees either nothing or the whole message. Names follow Dovecot's
`<secs>.M<usecs>P<pid>Q<n>R<rand>.<host>,S=<size>,W=<vsize>`: S= is the file size
and W= the size with CRLF line ends (RFC822.SIZE), so IMAP and quota never stat.
Files use LF line ends, the Maildir convention Dovecot expects.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700  # Dovecot creates mail directories private to the owner
FILE_MODE = 0o600
SUBDIRS = ("tmp", "new", "cur")
MAX_NAME_RETRIES = 10  # a clash needs the same second, microsecond, pid and counter
RANDOM_HEX_DIGITS = 8

_SIZE_RE = re.compile(rb",S=(\d+)")
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
_counter = itertools.count(1)


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
    """Create Maildir/{tmp,new,cur} (and parents) with mode 0700 if missing."""
    for sub in SUBDIRS:
        (maildir / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def _host_part(hostname: str) -> str:
    # Maildir spec: "/" and ":" in the host name are written as octal escapes.
    return hostname.replace("/", r"\057").replace(":", r"\072")


def to_lf(data: bytes) -> bytes:
    """CRLF → LF in one C-level pass; data without CR is returned as is."""
    return data.replace(b"\r\n", b"\n") if b"\r" in data else data


def maildir_name(now: float, size: int, vsize: int, hostname: str) -> str:
    """A Dovecot-compatible unique base name (no flags suffix: new/ has none)."""
    secs, usecs = divmod(round(now * 1_000_000), 1_000_000)
    rand = secrets.token_hex(RANDOM_HEX_DIGITS // 2)
    return (f"{secs}.M{usecs}P{os.getpid()}Q{next(_counter)}R{rand}."
            f"{_host_part(hostname)},S={size},W={vsize}")


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
    ensure_maildir(maildir)
    header, data = to_lf(header), to_lf(data)
    size = len(header) + len(data)
    vsize = size + header.count(b"\n") + data.count(b"\n")
    host = hostname or socket.gethostname()
    for _ in range(MAX_NAME_RETRIES):
        name = maildir_name(clock(), size, vsize, host)
        tmp_path, new_path = maildir / "tmp" / name, maildir / "new" / name
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        try:
            try:
                for chunk in (header, data):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp_path, new_path)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                os.rename(tmp_path, new_path)  # file systems without hard links
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
        _fsync_dir(maildir / "new")
        return new_path
    raise FileExistsError(errno.EEXIST, "cannot find a unique maildir name", str(maildir))


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
    folders = [maildir]
    try:
        with os.scandir(maildir) as entries:
            folders += [Path(e.path) for e in entries if e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        return 0
    total = 0
    for folder in folders:
        for sub in ("new", "cur"):
            directory = folder / sub
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            total += sum(message_size(directory, n) for n in names if not n.startswith("."))
    return total
