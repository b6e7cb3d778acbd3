"""An in-memory Backend for the IMAP core's tests (no files, fixed dates)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailroom.imap.backend import SPECIAL_USE, MailboxError, MessageMeta, Status

DATE = 1700000000.0


@dataclass
class Stored:
    uid: int
    data: bytes
    flags: frozenset[str]
    date: float = DATE
    recent: bool = True  # no session has seen it yet (the Maildir's new/)


@dataclass
class Box:
    uidvalidity: int
    messages: list[Stored] = field(default_factory=list)
    uidnext: int = 1

    def add(self, data: bytes, flags: frozenset[str] = frozenset(), date: float | None = None) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self.messages.append(Stored(uid, data, flags, DATE if date is None else date))
        return uid


class MemoryMailbox:
    def __init__(self, backend: MemoryBackend, name: str, readonly: bool = False) -> None:
        self.backend = backend
        self.name = name
        self.readonly = readonly
        self.claimed: set[int] = set()
        self.nowait = False  # everything is in memory: never blocks

    @property
    def box(self) -> Box:
        return self.backend.boxes[self.name]

    @property
    def uidvalidity(self) -> int:
        return self.box.uidvalidity

    @property
    def uidnext(self) -> int:
        return self.box.uidnext

    def sync(self) -> list[MessageMeta]:
        """The first session to look claims \\Recent, as the Maildir store's move out of new/."""
        for m in self.box.messages:
            if m.recent and not self.readonly:
                m.recent = False
                self.claimed.add(m.uid)
        return [MessageMeta(m.uid, len(m.data), m.flags, m.uid in self.claimed or m.recent)
                for m in self.box.messages]

    def _get(self, uid: int) -> Stored | None:
        return next((m for m in self.box.messages if m.uid == uid), None)

    def summary(self, uid: int, item: str, compute: Callable[[], bytes]) -> bytes:
        return compute()  # nothing to save: the message is in memory already

    def read(self, uid: int) -> bytes | None:
        found = self._get(uid)
        return None if found is None else found.data

    def read_raw(self, uid: int) -> bytes | None:
        return self.read(uid)

    def internal_date(self, uid: int) -> float:
        found = self._get(uid)
        return DATE if found is None else found.date

    def store(self, uids: Iterable[int], add: frozenset[str], remove: frozenset[str]) -> list[MessageMeta]:
        out: list[MessageMeta] = []
        for uid in uids:
            found = self._get(uid)
            if found is not None:
                found.flags = (found.flags | add) - remove
                out.append(MessageMeta(uid, len(found.data), found.flags))
        return out

    def expunge(self, uids: Iterable[int]) -> list[int]:
        wanted = set(uids)
        gone = [m.uid for m in self.box.messages if m.uid in wanted]
        self.box.messages = [m for m in self.box.messages if m.uid not in wanted]
        return gone

    def copy(self, uids: Iterable[int], target: str) -> tuple[int, list[int], list[int]]:
        dest = self.backend.boxes.get(target)
        if dest is None:
            raise MailboxError(f"Mailbox doesn't exist: {target}", "NONEXISTENT")
        sources, targets = [], []
        for uid in uids:
            found = self._get(uid)
            if found is not None:
                sources.append(uid)
                targets.append(dest.add(found.data, found.flags, found.date))
        return dest.uidvalidity, sources, targets


class DiskLikeMailbox(MemoryMailbox):
    """As if every other message had left the page cache: reading its content while
    `nowait` is set raises BlockingIOError, so an inline attempt is abandoned midway
    (after answering for the messages before it) and must be redone from the start."""

    def _check(self, uid: int) -> None:
        if self.nowait and uid % 2 == 0:
            raise BlockingIOError("not cached")

    def read(self, uid: int) -> bytes | None:
        self._check(uid)
        return super().read(uid)

    def internal_date(self, uid: int) -> float:
        self._check(uid)
        return super().internal_date(uid)

    def summary(self, uid: int, item: str, compute: Callable[[], bytes]) -> bytes:
        self._check(uid)
        return super().summary(uid, item, compute)


class MemoryBackend:
    mailbox_type: type[MemoryMailbox] = MemoryMailbox

    def __init__(self) -> None:
        self.boxes: dict[str, Box] = {"INBOX": Box(1)}
        for i, name in enumerate(sorted(SPECIAL_USE)):
            self.boxes[name] = Box(2 + i)
        self.subscribed: list[str] = ["INBOX", *sorted(SPECIAL_USE)]

    def list_mailboxes(self) -> list[str]:
        return ["INBOX", *sorted(n for n in self.boxes if n != "INBOX")]

    def subscriptions(self) -> list[str]:
        return list(self.subscribed)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        if subscribed and name not in self.subscribed:
            self.subscribed.append(name)
        elif not subscribed and name in self.subscribed:
            self.subscribed.remove(name)

    def create(self, name: str) -> None:
        if name in self.boxes:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        self.boxes[name] = Box(100 + len(self.boxes))

    def delete(self, name: str) -> None:
        if name == "INBOX" or name not in self.boxes:
            raise MailboxError(f"Mailbox doesn't exist: {name}", "NONEXISTENT")
        del self.boxes[name]

    def rename(self, old: str, new: str) -> None:
        if old not in self.boxes:
            raise MailboxError(f"Mailbox doesn't exist: {old}", "NONEXISTENT")
        if new in self.boxes:
            raise MailboxError("Mailbox already exists", "ALREADYEXISTS")
        self.boxes[new] = self.boxes.pop(old)

    def open(self, name: str, *, readonly: bool = False) -> MemoryMailbox:
        if name not in self.boxes:
            raise MailboxError(f"Mailbox doesn't exist: {name}", "NONEXISTENT")
        return self.mailbox_type(self, name, readonly)

    def status(self, name: str) -> Status:
        box = self.open(name).box
        return Status(len(box.messages), 0, box.uidnext, box.uidvalidity,
                      sum("\\Seen" not in m.flags for m in box.messages))

    def append(self, name: str, data: bytes, flags: frozenset[str], date: float | None) -> tuple[int, int]:
        if name not in self.boxes:
            raise MailboxError(f"Mailbox doesn't exist: {name}", "TRYCREATE")
        box = self.boxes[name]
        return box.uidvalidity, box.add(data, flags, date)
