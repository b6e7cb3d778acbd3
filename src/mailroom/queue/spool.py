"""The durable queue: a message is either wholly in the spool, or not at all.

Theory of operation. Each message is two files in `active/`: `<id>.data` (the
message as received, CRLF, with the Received header already prepended) and
`<id>.env` (the Envelope as JSON, rewritten as delivery state changes). Files are
written under `incoming/` with O_EXCL, fsynced, then moved into `active/`: data
first, envelope last, so the envelope is the commit point. One fsync of `active/`
makes both names durable, and enqueue returns only after it; that is when SMTP may
answer 250. After a crash, `recover()` empties `incoming/` and drops an orphan of
either kind in `active/` (such a message was never acknowledged). An envelope that
cannot be parsed moves to `corrupt/`, like Postfix's, for a human to look at.

Deferred-ness lives in the envelope (per recipient next_attempt), not in a
directory, so a retry never costs a rename.

Group commit: directory fsyncs are the expensive, shareable part. Writers run in a
thread pool; each calls GroupSync.sync() after its renames, and one fsync of
`active/` covers every rename made before it started, whoever asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mailroom.queue.envelope import Envelope
from mailroom.queue.ids import is_queue_id, new_queue_id

ENQUEUE_WORKERS = 16  # concurrent writers; more of them waiting means bigger fsync groups
FILE_MODE = 0o600  # queue files hold other people's mail
DIR_MODE = 0o700
MAX_ID_RETRIES = 5  # an ID collision needs the same pid, microsecond and counter
DATA_SUFFIX = ".data"
ENV_SUFFIX = ".env"

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


class SpoolError(Exception):
    """The spool cannot take or give a message now; SMTP answers 451 4.3.0."""

    def __init__(self, message: str, *, disk: bool = False) -> None:
        super().__init__(message)
        self.disk = disk  # full, read-only or failing storage


def fsync_dir(path: Path) -> None:
    """Make the names in `path` durable (renames, creations, unlinks)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, chunks: Iterable[bytes]) -> None:
    """Create `path` (refusing to overwrite), write the chunks, fsync; remove it on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class GroupSync:
    """One directory fsync for every caller that arrived while the previous one ran.

    A caller needs an fsync that *started* after its rename; rounds are numbered,
    and each caller waits for the round after the one in progress when it came.
    """

    def __init__(self, path: Path, fsync: Callable[[Path], None] = fsync_dir) -> None:
        self.path = path
        self._fsync = fsync
        self._cond = threading.Condition()
        self._started = 0
        self._finished = 0
        self._busy = False
        self._failed_round = 0
        self._failure: OSError | None = None
        self.waiters = 0  # for tests and metrics

    @property
    def rounds(self) -> int:
        """How many fsyncs were done."""
        return self._finished

    def sync(self) -> None:
        with self._cond:
            target = self._started + 1
            while self._finished < target:
                if self._busy:
                    self.waiters += 1
                    self._cond.wait()
                    self.waiters -= 1
                    continue
                self._busy = True
                self._started += 1
                this_round = self._started
                self._cond.release()
                failure: OSError | None = None
                try:
                    self._fsync(self.path)
                except OSError as exc:
                    failure = exc
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._finished = this_round
                    if failure is not None:
                        self._failed_round, self._failure = this_round, failure
                    self._cond.notify_all()
            if self._failed_round == target and self._failure is not None:
                raise self._failure


class Spool:
    """The queue directory. Blocking methods are safe to call from worker threads."""

    def __init__(
        self,
        root: Path,
        *,
        id_factory: Callable[[], str] = new_queue_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._clock = clock
        self.incoming = root / "incoming"
        self.active = root / "active"
        self.corrupt = root / "corrupt"
        for directory in (root, self.incoming, self.active, self.corrupt):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._new_id = id_factory
        self._commit = GroupSync(self.active)
        self._executor = ThreadPoolExecutor(ENQUEUE_WORKERS, thread_name_prefix="spool")

    @property
    def commit_rounds(self) -> int:
        """Directory fsyncs done for `active/` so far (group commit makes this < messages)."""
        return self._commit.rounds

    def new_queue_id(self) -> str:
        """An ID for a message about to be enqueued, e.g. to name it in the Received header."""
        return self._new_id()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- writing ------------------------------------------------------------------
    async def enqueue(self, envelope: Envelope, data: bytes, *, header: bytes = b"") -> str:
        """Store `header + data` and `envelope`; return the queue ID once both are durable.

        Uses `envelope.queue_id` when set (see new_queue_id), else makes one; fills
        in size, queue_id and (if unset) arrival_time. Raises SpoolError if the disk refuses.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.enqueue_sync, envelope, data, header)

    def enqueue_sync(self, envelope: Envelope, data: bytes, header: bytes = b"") -> str:
        """The blocking body of enqueue(), for the command line and worker threads."""
        chosen = envelope.queue_id
        if chosen and not is_queue_id(chosen):
            raise SpoolError(f"invalid queue id {chosen!r}")
        envelope.size = len(header) + len(data)
        envelope.arrival_time = envelope.arrival_time or self._clock()
        for _ in range(MAX_ID_RETRIES):
            qid = chosen or self._new_id()
            envelope.queue_id = qid
            try:
                if self._store(qid, envelope, (header, data)):
                    return qid
            except OSError as exc:
                raise SpoolError(f"cannot write queue file: {exc.strerror or exc}",
                                 disk=exc.errno in _DISK_ERRNOS) from exc
            if chosen:
                raise SpoolError(f"queue id {qid} already in use")
        raise SpoolError("cannot allocate a unique queue id")

    def _store(self, qid: str, envelope: Envelope, chunks: tuple[bytes, bytes]) -> bool:
        tmp_data = self.incoming / (qid + DATA_SUFFIX)
        tmp_env = self.incoming / (qid + ENV_SUFFIX)
        final_data = self.active / (qid + DATA_SUFFIX)
        try:
            write_file_durably(tmp_data, chunks)
        except FileExistsError:
            return False  # another writer holds this ID right now
        try:
            write_file_durably(tmp_env, [_encode_envelope(envelope)])
        except FileExistsError:
            _unlink_quietly(tmp_data)
            return False
        except BaseException:
            _unlink_quietly(tmp_data)
            raise
        try:
            try:
                os.link(tmp_data, final_data)  # refuses to replace another message's data
            except FileExistsError:
                return False
            os.rename(tmp_env, self.active / (qid + ENV_SUFFIX))
            self._commit.sync()
        except BaseException:
            # Nothing was acknowledged: take the message back out completely.
            _unlink_quietly(self.active / (qid + ENV_SUFFIX))
            _unlink_quietly(final_data)
            raise
        finally:
            _unlink_quietly(tmp_data)
            _unlink_quietly(tmp_env)
        return True

    def update_envelope(self, qid: str, envelope: Envelope) -> None:
        """Atomically replace the envelope (delivery state) and make the change durable."""
        self._check(qid)
        tmp = self.incoming / f"{qid}{ENV_SUFFIX}.{threading.get_ident()}"
        try:
            _unlink_quietly(tmp)
            write_file_durably(tmp, [_encode_envelope(envelope)])
            os.replace(tmp, self.active / (qid + ENV_SUFFIX))
            self._commit.sync()
        except OSError as exc:
            _unlink_quietly(tmp)
            raise SpoolError(f"cannot update queue file {qid}: {exc.strerror or exc}",
                             disk=exc.errno in _DISK_ERRNOS) from exc

    def remove(self, qid: str) -> None:
        """Delete a message after its final delivery; the envelope goes first (commit point)."""
        self._check(qid)
        try:
            _unlink_quietly(self.active / (qid + ENV_SUFFIX))
            _unlink_quietly(self.active / (qid + DATA_SUFFIX))
            self._commit.sync()
        except OSError as exc:
            raise SpoolError(f"cannot remove queue file {qid}: {exc.strerror or exc}") from exc

    # -- reading ------------------------------------------------------------------
    def list_ids(self) -> list[str]:
        """Committed messages, oldest first (IDs sort by arrival time)."""
        names = os.listdir(self.active)
        return sorted(n[: -len(ENV_SUFFIX)] for n in names
                      if n.endswith(ENV_SUFFIX) and is_queue_id(n[: -len(ENV_SUFFIX)]))

    def load(self, qid: str) -> tuple[Envelope, Path]:
        """The envelope and the path of the message data; SpoolError if missing or corrupt."""
        self._check(qid)
        data_path = self.active / (qid + DATA_SUFFIX)
        try:
            raw = (self.active / (qid + ENV_SUFFIX)).read_bytes()
        except FileNotFoundError as exc:
            raise SpoolError(f"no such queue file: {qid}") from exc
        try:
            envelope = Envelope.from_json_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise SpoolError(f"corrupt queue file: {qid}: {exc}") from exc
        if not data_path.exists():
            raise SpoolError(f"queue file {qid} has no message data")
        return envelope, data_path

    def recover(self) -> list[str]:
        """At start-up: drop half-written leftovers, quarantine corrupt ones, list the rest."""
        for name in os.listdir(self.incoming):
            _unlink_quietly(self.incoming / name)
        names = set(os.listdir(self.active))
        kept: list[str] = []
        for name in sorted(names):
            stem, _, suffix = name.rpartition(".")
            whole = is_queue_id(stem) and f"{stem}{DATA_SUFFIX}" in names and f"{stem}{ENV_SUFFIX}" in names
            if not whole:
                _unlink_quietly(self.active / name)  # orphan: never acknowledged
            elif "." + suffix == ENV_SUFFIX:
                try:
                    self.load(stem)
                except SpoolError:
                    self._quarantine(stem)
                else:
                    kept.append(stem)
        fsync_dir(self.active)
        fsync_dir(self.incoming)
        return kept

    def _quarantine(self, qid: str) -> None:
        for suffix in (DATA_SUFFIX, ENV_SUFFIX):
            source = self.active / (qid + suffix)
            if source.exists():
                shutil.move(str(source), str(self.corrupt / (qid + suffix)))

    def has_room(self, size: int, reserve: int = 0) -> bool:
        """Whether `size` bytes (plus `reserve`) fit on the queue's file system."""
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize >= size + reserve

    @staticmethod
    def _check(qid: str) -> None:
        if not is_queue_id(qid):
            raise SpoolError(f"invalid queue id {qid!r}")


def _encode_envelope(envelope: Envelope) -> bytes:
    return json.dumps(envelope.to_json_dict(), ensure_ascii=False, separators=(",", ":")).encode()
