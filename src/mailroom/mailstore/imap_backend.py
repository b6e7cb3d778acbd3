"""The IMAP core's Backend (mailroom.imap.backend) on a user's Maildir++ tree.

Blocking: the IMAP adapter calls it from a worker thread. Store failures become
`MailboxError` with the response codes of RFC 5530 (NONEXISTENT, ALREADYEXISTS...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mailroom.imap.backend import SPECIAL_USE, MailboxError, MessageMeta, Status
from mailroom.imap.mime import to_crlf
from mailroom.mailstore import folders
from mailroom.mailstore.maildir import mailbox_size
from mailroom.mailstore.store import (
    INBOX,
    Folder,
    MaildirStore,
    MessageInfo,
    StoreError,
    UidListError,
)

META_VIEW = "imap-meta"  # Folder.views key: ({uid: (MessageInfo, MessageMeta)}, [MessageMeta])
INTERNALDATE = "INTERNALDATE"  # summary cache field: the file's mtime, as text
AUTO_FOLDERS = tuple(sorted(SPECIAL_USE))  # created and subscribed on first login


def _meta(info: MessageInfo, recent: bool) -> MessageMeta:
    return MessageMeta(info.uid, info.vsize, info.flags | info.keywords if info.keywords else info.flags, recent)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except MailboxError:
        raise
    except FileNotFoundError as exc:
        raise MailboxError(f"Mailbox doesn't exist: {exc.args[0] if exc.args else ''}", "NONEXISTENT") from None
    except FileExistsError:
        raise MailboxError("Mailbox already exists", "ALREADYEXISTS") from None
    except StoreError as exc:
        text = str(exc)
        if text.startswith("no such folder"):
            raise MailboxError(f"Mailbox doesn't exist: {text.partition(': ')[2]}", "NONEXISTENT") from None
        if text.startswith("invalid folder name"):
            raise MailboxError("Invalid mailbox name.", "CANNOT") from None
        raise


class MaildirMailbox:
    def __init__(self, backend: MaildirBackend, folder: Folder, *, readonly: bool = False) -> None:
        self.backend = backend
        self.folder = folder
        self.readonly = readonly  # EXAMINE: leave new/ alone, so \Recent stays for the next SELECT
        self.nowait = False  # see imap.backend: answer from memory and the page cache, or raise BlockingIOError
        self.name = folder.name
        self._generation = -1
        self._known: dict[int, tuple[MessageInfo, MessageMeta]] = {}  # MessageMeta built once per MessageInfo
        self._listed: list[MessageMeta] = []

    @property
    def uidvalidity(self) -> int:
        return self.folder.uidvalidity

    @property
    def uidnext(self) -> int:
        return self.folder.next_uid

    def sync(self) -> list[MessageMeta]:
        """The folder now; the same list object while nothing changed (the core skips work then)."""
        if self.nowait:  # only an unchanged folder is answered without the disk
            unchanged = None if self.folder.cache.pending else self.folder.peek(move_new=not self.readonly)
            if unchanged is None:
                raise BlockingIOError("the folder needs a look on disk")
            messages = unchanged
        else:
            self.folder.cache.flush()  # summaries computed by the last command
            messages = self.folder.sync(move_new=not self.readonly)
        if self.folder.generation != self._generation:
            views, claimed = self.folder.views, self.folder.claimed
            shared = None if claimed else views.get(META_VIEW)
            if isinstance(shared, tuple):  # built by another session from these very messages
                self._known, self._listed = shared
            else:
                known = self._known
                fresh: dict[int, tuple[MessageInfo, MessageMeta]] = {}
                for info in messages:
                    seen = known.get(info.uid)
                    fresh[info.uid] = seen if seen is not None and seen[0] is info else (
                        info, _meta(info, info.base in claimed or info.subdir == "new"))
                self._known = fresh
                self._listed = [meta for _, meta in fresh.values()]
                if not claimed:  # \Recent then follows from the messages alone: the next session may reuse it
                    views[META_VIEW] = (fresh, self._listed)
            self._generation = self.folder.generation
        if self.nowait:
            return self._listed
        current = self._known  # cheap unless the loaded summaries far outnumber the messages
        self.folder.cache.prune(lambda: {info.base for info, _ in current.values()}, len(current))
        return self._listed

    def read(self, uid: int) -> bytes | None:
        data = self.read_raw(uid)
        return None if data is None else to_crlf(data)

    def read_raw(self, uid: int) -> bytes | None:
        return self.folder.read_nowait(uid) if self.nowait else self.folder.read(uid)

    def summary(self, uid: int, item: str, compute: Callable[[], bytes]) -> bytes:
        """From the folder's summary cache, keyed by the file's base name (see mailstore.cache)."""
        info = self.folder.get(uid)
        if info is None:
            return compute()
        cache = self.folder.cache
        if self.nowait:  # only what is in memory: computing means parsing the message
            value = cache.get(item, info.base) if cache.loaded(item) else None
            if value is None:
                raise BlockingIOError("not in the summary cache")
            return value
        value = cache.get(item, info.base)
        if value is None:
            value = compute()
            cache.put(item, info.base, value)
        return value

    def internal_date(self, uid: int) -> float:
        """The file's mtime (Dovecot's rule), kept in the summary cache so SEARCH and FETCH skip the stat."""
        info = self.folder.get(uid)
        cache = self.folder.cache
        if info is not None and (cache.loaded(INTERNALDATE) or not self.nowait):
            cached = cache.get(INTERNALDATE, info.base)
            if cached is not None:
                with contextlib.suppress(ValueError):
                    stored = float(cached)
                    if 0 <= stored < 2**36:  # a real time (crafted "inf" or "nan" is not)
                        return stored
        if self.nowait:
            raise BlockingIOError("the date needs a stat")
        value = self.folder.internal_date(uid)
        if value is None:
            return 0.0
        if info is not None:
            cache.put(INTERNALDATE, info.base, repr(value).encode())
        return value

    def store(self, uids: Iterable[int], add: frozenset[str], remove: frozenset[str]) -> list[MessageMeta]:
        def system(flags: frozenset[str]) -> set[str]:
            return {f for f in flags if f.startswith("\\")}

        def keywords(flags: frozenset[str]) -> set[str]:
            return {f for f in flags if not f.startswith("\\")}

        updated = self.folder.store_flags(list(uids), add=system(add), remove=system(remove),
                                          add_keywords=keywords(add), remove_keywords=keywords(remove))
        return [_meta(m, m.base in self.folder.claimed) for m in updated]

    def expunge(self, uids: Iterable[int]) -> list[int]:
        return self.folder.expunge(list(uids))

    def copy(self, uids: Iterable[int], target: str) -> tuple[int, list[int], list[int]]:
        with _errors():
            dest = self.backend.store.folder(target)
        sources: list[int] = []
        targets: list[int] = []
        for uid in uids:
            info = self.folder.get(uid)
            data = self.folder.read(uid)
            if info is None or data is None:
                continue
            new = dest.append(data, flags=info.flags, keywords=info.keywords,
                              internal_date=self.folder.internal_date(uid))
            sources.append(uid)
            targets.append(new.uid)
        return dest.uidvalidity, sources, targets


def _unlimited() -> int:
    return 0


class MaildirBackend:
    def __init__(self, store: MaildirStore, quota_limit: Callable[[], int] = _unlimited) -> None:
        self.store = store
        self.quota_limit = quota_limit  # the user's quota in octets, 0 = unlimited (asked each time)

    @classmethod
    def for_user(cls, base: Path, address: str, *, hostname: str | None = None,
                 clock: Callable[[], float] | None = None,
                 quota_limit: Callable[[], int] = _unlimited, nfs: bool = False) -> MaildirBackend:
        """Open (and on first login, prepare) a user's store: INBOX, Sent, Drafts, Junk, Trash."""
        store = (MaildirStore.for_user(base, address, hostname=hostname, nfs=nfs) if clock is None
                 else MaildirStore.for_user(base, address, hostname=hostname, clock=clock, nfs=nfs))
        store.folder()  # INBOX
        existing = set(store.list_folders())
        created = [name for name in AUTO_FOLDERS if name not in existing]
        for name in created:
            store.folder(name, create=True)
        if created:
            subscribed = folders.read_subscriptions(store)
            wanted = [n for n in (INBOX, *created) if n not in subscribed]
            if wanted:
                folders.write_subscriptions(store, [*subscribed, *wanted])
        return cls(store, quota_limit)

    def quota(self) -> tuple[int, int]:
        """(octets in all folders, as delivery counts them; the limit, 0 = unlimited)."""
        limit = self.quota_limit()
        return mailbox_size(self.store.root), max(limit, 0)

    def list_mailboxes(self) -> list[str]:
        return self.store.list_folders()

    def subscriptions(self) -> list[str]:
        return folders.read_subscriptions(self.store)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        with _errors():
            folders.set_subscribed(self.store, name, subscribed)

    def create(self, name: str) -> None:
        with _errors():
            if folders.exists(self.store, name):
                raise FileExistsError(name)
            self.store.folder(name, create=True)

    def delete(self, name: str) -> None:
        with _errors():
            if name.upper() == INBOX:
                raise MailboxError("INBOX can't be deleted.", "CANNOT")
            if not folders.exists(self.store, name):
                raise FileNotFoundError(name)
            if folders.children(self.store, name):
                raise MailboxError("Mailbox has children, delete them first", "INUSE")
            folders.delete_folder(self.store, name)

    def rename(self, old: str, new: str) -> None:
        with _errors():
            if old.upper() == INBOX or new.upper() == INBOX:
                raise MailboxError("Renaming INBOX isn't supported.", "CANNOT")
            folders.rename_folder(self.store, old, new)

    def open(self, name: str, *, readonly: bool = False) -> MaildirMailbox:
        with _errors():
            return MaildirMailbox(self, self.store.folder(name), readonly=readonly)

    def status(self, name: str) -> Status:
        with _errors():
            folder = self.store.folder(name)
            try:
                messages = folder.sync(move_new=False)
            except UidListError as exc:
                raise StoreError(str(exc)) from None
        return Status(len(messages), sum(m.subdir == "new" for m in messages), folder.next_uid,
                      folder.uidvalidity, sum("\\Seen" not in m.flags for m in messages))

    def append(self, name: str, data: bytes, flags: frozenset[str], date: float | None) -> tuple[int, int]:
        with _errors():
            try:
                folder = self.store.folder(name)
            except StoreError as exc:
                if str(exc).startswith("no such folder"):
                    raise MailboxError(f"Mailbox doesn't exist: {name}", "TRYCREATE") from None
                raise
            info = folder.append(data, flags={f for f in flags if f.startswith("\\")},
                                 keywords=[f for f in flags if not f.startswith("\\")], internal_date=date)
            return folder.uidvalidity, info.uid
