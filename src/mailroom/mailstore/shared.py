"""The last full scan of recently used folders, shared by every session of this process.

A session's first look at a folder of 10,000 messages costs tens of milliseconds even
from the on-disk snapshot (JSON to parse, every row checked, an object per message).
Dovecot answers the same look from its index files, which the kernel keeps in memory.
mailroom is one long-lived process, so it keeps the result of a folder's last full
scan here, and a new session (IMAP or POP3) whose folder still has the same times
(`Folder._folder_marks`, settled as for the snapshot) starts from it in well under a
millisecond.

The trust is exactly the snapshot's: times that were settled well before the scan move
with any later change, and `mail_nfs_storage = yes` turns both off. Entries are
immutable: a Folder takes a copy of the message map (MessageInfo objects are never
mutated, only replaced, so they are shared). `views` is a dict upper layers may fill
with things derived from exactly these MessageInfo objects (the IMAP backend keeps its
per-message metadata there), so the next session need not derive them again.

The memory is bounded by a message count (`mail_index_cache_messages`, about 650 bytes
a message); the least recently used folders go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mailroom.mailstore.store import MessageInfo

DEFAULT_MAX_MESSAGES = 100_000


class Scan(NamedTuple):
    marks: tuple[object, ...]
    uidvalidity: int
    next_uid: int
    header_ext: tuple[tuple[str, str], ...]
    messages: dict[int, MessageInfo]  # never mutated once here
    has_new: bool
    views: dict[str, object]


class SharedScans:
    """An LRU of folder path -> Scan, bounded by the messages it holds; thread-safe."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Scan] = OrderedDict()
        self._held = 0

    def get(self, path: str, marks: tuple[object, ...]) -> Scan | None:
        """The scan of `path` if the folder still has these times."""
        with self._lock:
            scan = self._entries.get(path)
            if scan is None:
                return None
            if scan.marks != marks:
                self._drop(path)  # the folder changed: this scan can never match again
                return None
            self._entries.move_to_end(path)
            return scan

    def put(self, path: str, scan: Scan) -> None:
        with self._lock:
            self._drop(path)
            if not 0 < len(scan.messages) <= self.max_messages:
                return  # off, too big to hold, or empty (nothing to save by holding it)
            self._entries[path] = scan
            self._held += len(scan.messages)
            self._trim()

    def resize(self, max_messages: int) -> None:
        """Set the bound (0 turns sharing off); folders over it are dropped at once."""
        with self._lock:
            self.max_messages = max(0, max_messages)
            self._trim()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0

    @property
    def held(self) -> int:
        """Messages held now (for tests and the bound)."""
        return self._held

    def _drop(self, path: str) -> None:
        old = self._entries.pop(path, None)
        if old is not None:
            self._held -= len(old.messages)

    def _trim(self) -> None:
        while self._entries and self._held > self.max_messages:
            _, old = self._entries.popitem(last=False)
            self._held -= len(old.messages)


SHARED_SCANS = SharedScans()
