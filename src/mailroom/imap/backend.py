"""What the IMAP core needs of a user's mail store, grouped by state (as go-imap v2).

The core calls these synchronously; the adapter runs the core's `execute()` in a
worker thread, so an implementation may block on the file system. A small, read-only
command is first tried on the event loop with `Mailbox.nowait` set: the mailbox then
answers only from memory and the page cache, and raises `BlockingIOError` where it
would have to wait for the disk (the core then rolls back and the adapter uses a
thread). The Maildir
implementation is mailroom.mailstore.imap_backend; tests use an in-memory one.
Errors a client can cause raise `MailboxError` (answered NO, with an optional
response code such as NONEXISTENT or ALREADYEXISTS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SPECIAL_USE = {"Drafts": "\\Drafts", "Junk": "\\Junk", "Sent": "\\Sent", "Trash": "\\Trash"}
SEPARATOR = "."
QUOTA_ROOT = "User quota"  # the one quota root per user, named as Dovecot names it


class MailboxError(Exception):
    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code  # e.g. "NONEXISTENT", "ALREADYEXISTS", "CANNOT"


@dataclass(slots=True)
class MessageMeta:
    """Never mutated, only replaced (not frozen: a SELECT builds one per message)."""

    uid: int
    size: int  # RFC822.SIZE (CRLF octets)
    flags: frozenset[str]  # system flags and keywords
    recent: bool = False  # \Recent in this session: it is the first to see the message


@dataclass(frozen=True, slots=True)
class Status:
    messages: int
    recent: int
    uidnext: int
    uidvalidity: int
    unseen: int


class Mailbox(Protocol):
    """A selected mailbox; `sync()` is its view of the disk now."""

    name: str
    nowait: bool  # set by the core around an inline attempt: raise BlockingIOError rather than wait

    @property
    def uidvalidity(self) -> int: ...
    @property
    def uidnext(self) -> int: ...
    def sync(self) -> list[MessageMeta]: ...
    def read(self, uid: int) -> bytes | None: ...  # CRLF line ends; None = expunged
    def read_raw(self, uid: int) -> bytes | None: ...  # as stored (LF or CRLF): for mime.crlf_header
    def internal_date(self, uid: int) -> float: ...
    def summary(self, uid: int, item: str, compute: Callable[[], bytes]) -> bytes: ...
    # A FETCH item computed from the message's content (ENVELOPE, BODY, BODYSTRUCTURE):
    # content never changes, so a store may keep `compute()`'s answer and skip the file.
    def store(self, uids: Iterable[int], add: frozenset[str], remove: frozenset[str]) -> list[MessageMeta]: ...
    def expunge(self, uids: Iterable[int]) -> list[int]: ...
    def copy(self, uids: Iterable[int], target: str) -> tuple[int, list[int], list[int]]: ...
    # -> (target UIDVALIDITY, source UIDs copied, their new UIDs)


class Backend(Protocol):
    """One logged-in user's mailboxes (IMAP names, "." hierarchy, INBOX)."""

    def list_mailboxes(self) -> list[str]: ...
    def subscriptions(self) -> list[str]: ...
    def set_subscribed(self, name: str, subscribed: bool) -> None: ...
    def create(self, name: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def open(self, name: str, *, readonly: bool = False) -> Mailbox: ...
    # readonly (EXAMINE): must not take \Recent from other sessions (RFC 3501 §6.3.2)
    def status(self, name: str) -> Status: ...
    def append(self, name: str, data: bytes, flags: frozenset[str], date: float | None) -> tuple[int, int]: ...
    # -> (UIDVALIDITY, UID)


@runtime_checkable
class QuotaBackend(Protocol):
    """A Backend that knows the user's storage quota (RFC 2087); QUOTA is advertised only then."""

    def quota(self) -> tuple[int, int]: ...
    # -> (octets used in all mailboxes, limit in octets; 0 = unlimited)
