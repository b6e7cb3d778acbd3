"""Linux inotify for IMAP IDLE: a session is woken when its folder changes, not by a timer.

Polling every idling session's folder twice a second costs CPU in proportion to the
idle clients (phones keep IDLE open all day). Dovecot watches the Maildir with
inotify and checks by time only as a fallback (mailbox_idle_check_interval); so
does mailroom. One inotify descriptor per process, read from the event loop; one
watch per directory, shared by the sessions idling on it. The callbacks only set a
flag: the session then looks at the folder as before, so a missed or merged event
costs at most one fallback interval, never a wrong answer.

Not used where inotify cannot see changes: other hosts' writes on NFS
(mail_nfs_storage = yes), or when the kernel refuses (no inotify, too many watches).
ctypes rather than a dependency: three libc calls and a fixed-layout record.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# Maildir changes are renames, links and unlinks in new/ and cur/, and the uidlist and
# keywords files renamed into the folder directory.
FOLDER_EVENTS = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
READ_SIZE = 64 * 1024

Callback = Callable[[], None]


class WatchError(OSError):
    """The kernel refused a watch (no inotify here, or the watch limit is reached)."""


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


class Watcher:
    """One inotify descriptor on an event loop; `watch(dirs, callback)` until `unwatch`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._libc = _Libc()
        except (OSError, AttributeError) as exc:
            raise WatchError(errno.ENOSYS, f"inotify is not available: {exc}") from None
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise WatchError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        self._loop = loop
        self._by_wd: dict[int, set[int]] = {}  # watch descriptor -> tokens
        self._tokens: dict[int, tuple[Callback, list[int]]] = {}  # token -> (callback, its wds)
        self._next = 0
        loop.add_reader(fd, self._read)

    def watch(self, directories: list[str], callback: Callback) -> int:
        """Call `callback` (on the loop) after any change in these directories; a token."""
        wds: list[int] = []
        try:
            for directory in directories:
                wd = self._libc.add_watch(self._fd, os.fsencode(directory), FOLDER_EVENTS)
                if wd < 0:
                    code = ctypes.get_errno()
                    raise WatchError(code, f"inotify_add_watch {directory}: {os.strerror(code)}")
                wds.append(wd)
        except WatchError:
            for wd in wds:  # drop the watches this call made, not those other sessions share
                if not self._by_wd.get(wd):
                    self._by_wd.pop(wd, None)
                    self._libc.rm_watch(self._fd, wd)
            raise
        self._next += 1
        token = self._next
        self._tokens[token] = (callback, wds)
        for wd in wds:
            self._by_wd.setdefault(wd, set()).add(token)
        return token

    def unwatch(self, token: int) -> None:
        entry = self._tokens.pop(token, None)
        if entry is None:
            return
        for wd in entry[1]:
            tokens = self._by_wd.get(wd)
            if tokens is None:
                continue  # the kernel dropped it already (IN_IGNORED): the number may be reused
            tokens.discard(token)
            if not tokens:
                del self._by_wd[wd]
                self._libc.rm_watch(self._fd, wd)

    @property
    def watches(self) -> int:
        """Directories watched now (the kernel shares one watch per directory)."""
        return len(self._by_wd)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._tokens.clear()
        self._by_wd.clear()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._wake_all()
            return
        woken: set[int] = set()
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                self._wake_all()
                return
            tokens = self._by_wd.get(wd)
            if tokens:
                woken |= tokens
            if mask & IN_IGNORED:  # the directory is gone: the kernel dropped the watch
                self._by_wd.pop(wd, None)
        for token in woken:
            entry = self._tokens.get(token)
            if entry is not None:
                entry[0]()

    def _wake_all(self) -> None:
        for callback, _ in list(self._tokens.values()):
            callback()
