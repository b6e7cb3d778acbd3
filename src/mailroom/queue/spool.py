"""The durable queue: a message is either wholly in the spool, or not at all.

Theory of operation. Each message is ONE file, `active/<id>`: the line
`MRQ1 <envelope as JSON>\\n` followed by the message as received (CRLF, Received
header already prepended). It is written under `incoming/` with O_EXCL, fsynced,
then hard-linked into `active/` (a link, unlike rename, refuses to replace another
message); one fsync of `active/` makes the name durable, and only then does
enqueue return: that is when SMTP may answer 250. One file means one file fsync
per message, and the envelope cannot be separated from its data.

Delivery state changes (a multi-recipient message half delivered, a deferral) go
to `active/<id>.env`, written the same way and renamed over the previous one; it
supersedes the envelope inside the queue file. A single-recipient message that is
simply delivered never has one.

remove() takes the queue file out of `active/` (the commit point), then removes
any `.env`, WITHOUT a directory fsync. A killed process loses nothing (the page
cache survives), but after a power loss a removed message may come back and be
delivered a second time: a possible duplicate, never a loss, the trade Postfix
makes too.

Recycling: a removed queue file is renamed into `spare/` (up to MAX_SPARES small
ones) and the next message overwrites it in place before linking it into
`active/`. Creating and deleting an inode per message is costly on ext4 (inode
allocation scans past recently freed inodes, a large cost without a journal);
reuse costs a rename. A spare's old content is as private as the queue (0600
files in 0700 directories) and is overwritten when reused. recover() drops a
spare that is also linked in `active/` (a power loss can undo the unlink that
followed its reuse).

After a crash, `recover()` empties `incoming/` (nothing there was acknowledged)
and drops a `.env` whose queue file is gone. A crash while a spare is being
rewritten leaves garbage only in `spare/`, which is never read. A queue file that cannot be parsed
moves to `corrupt/`, like Postfix's, for a human to look at.

Deferred-ness lives in the envelope (per recipient next_attempt), not in a
directory, so a retry never costs a rename.

Group commit: enqueue() hands its message to one writer thread (batch.BatchThread)
that writes every message waiting, fsyncs them all together (queue/fsync.py: the
flushes overlap instead of queueing one behind the other), links them all, fsyncs
`active/` ONCE for all of them and wakes their coroutines with one call into the
event loop. The bytes just written stay in memory (`take_hot`) so the queue manager can
deliver them without reading the file back; the file stays the recovery source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailroom.queue.batch import BatchThread
from mailroom.queue.envelope import ClientInfo, Envelope, Recipient
from mailroom.queue.fsync import FsyncPool
from mailroom.queue.ids import is_queue_id, new_queue_id

FILE_MODE = 0o600  # queue files hold other people's mail
DIR_MODE = 0o700
MAX_ID_RETRIES = 5  # an ID collision needs the same pid, microsecond and counter
MAGIC = b"MRQ1 "  # queue file format 1: this, the envelope JSON, "\n", the message
ENV_SUFFIX = ".env"  # the newer envelope of a partly delivered message
HOT_LIMIT_BYTES = 64 * 1024 * 1024  # messages kept in memory for the queue manager, at most
MAX_SPARES = 256  # removed queue files kept for reuse (about the messages in flight at once)
SPARE_MAX_BYTES = 256 * 1024  # larger files are deleted, not kept: bounds the disk they hold

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


def write_all(fd: int, chunks: Sequence[bytes]) -> None:
    """Write every chunk, in one writev() when the kernel takes it all (it nearly always does)."""
    total = sum(len(c) for c in chunks)
    written = os.writev(fd, chunks) if total else 0
    if written < total:
        view = memoryview(b"".join(chunks))[written:]
        while view:
            view = view[os.write(fd, view):]


def write_file_durably(path: Path, chunks: Iterable[bytes]) -> None:
    """Create `path` (refusing to overwrite), write the chunks, fsync; remove it on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, list(chunks))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: Path | str) -> None:
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


@dataclass(slots=True)
class _Enqueue:
    envelope: Envelope
    header: bytes
    data: bytes
    chosen: bool  # the queue ID was given (and is in the Received header): never replace it
    encoded: bytes = b""  # the envelope JSON as written


@dataclass(slots=True)
class _Remove:
    qid: str


@dataclass(slots=True)
class _Staged:
    """A message written to a staging file (`path`, open as `fd`), not yet fsynced.

    `path` None: its ID turned out to be in use, nothing was written for it.
    """

    index: int  # of its job in the batch
    job: _Enqueue
    qid: str
    path: Path | None
    fd: int
    size: int


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
        self.spare = root / "spare"
        for directory in (root, self.incoming, self.active, self.corrupt, self.spare):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._new_id = id_factory
        self._commit = GroupSync(self.active)
        self._fsyncs = FsyncPool("spool")  # a batch's queue files are fsynced together
        self._writer: BatchThread[_Enqueue | _Remove, str | None] = BatchThread(
            "spool", self._run_batch)
        # Set by the queue manager: keep just-queued messages in memory for it.
        self.keep_hot = False
        self._hot: dict[str, tuple[bytes, bytes, bytes]] = {}
        self._hot_bytes = 0
        self._spares: list[tuple[str, int]] = []  # (name in spare/, size)
        self._sizes: dict[str, int] = {}  # queue files this process wrote: their sizes
        self._with_env: set[str] = set()  # messages known to have a `.env`

    @property
    def commit_rounds(self) -> int:
        """Directory fsyncs done for `active/` so far (group commit makes this < messages)."""
        return self._commit.rounds

    @property
    def write_batches(self) -> int:
        """Batches the writer thread handled (each shares one fsync of `active/`)."""
        return self._writer.batches

    def new_queue_id(self) -> str:
        """An ID for a message about to be enqueued, e.g. to name it in the Received header."""
        return self._new_id()

    def close(self) -> None:
        self._writer.close()
        self._fsyncs.close()

    # -- writing ------------------------------------------------------------------
    async def enqueue(self, envelope: Envelope, data: bytes, *, header: bytes = b"") -> str:
        """Store `header + data` and `envelope`; return the queue ID once both are durable.

        Uses `envelope.queue_id` when set (see new_queue_id), else makes one; fills
        in size, queue_id and (if unset) arrival_time. Raises SpoolError if the disk refuses.
        """
        job = self._job(envelope, data, header)
        qid = await self._writer.submit(job)
        assert qid is not None
        if self.keep_hot and self._hot_bytes + envelope.size <= HOT_LIMIT_BYTES:
            self._hot[qid] = (job.encoded, header, data)
            self._hot_bytes += envelope.size
        return qid

    def enqueue_sync(self, envelope: Envelope, data: bytes, header: bytes = b"") -> str:
        """The blocking body of enqueue(), for the command line and tests."""
        result = self._run_batch([self._job(envelope, data, header)])[0]
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    def _job(self, envelope: Envelope, data: bytes, header: bytes) -> _Enqueue:
        chosen = envelope.queue_id
        if chosen and not is_queue_id(chosen):
            raise SpoolError(f"invalid queue id {chosen!r}")
        envelope.size = len(header) + len(data)
        envelope.arrival_time = envelope.arrival_time or self._clock()
        return _Enqueue(envelope, header, data, bool(chosen))

    def _run_batch(self, jobs: list[_Enqueue | _Remove]) -> list[str | None | BaseException]:
        """Blocking, in the writer thread: store every message, ONE fsync of `active/`.

        Three steps, so that the batch's file fsyncs are in flight together (see
        queue/fsync.py): write every message to its staging file; fsync them all;
        link each one that is durable into `active/`. Then the one directory fsync.
        """
        results: list[str | None | BaseException] = [None] * len(jobs)
        staged: list[_Staged] = []
        for i, job in enumerate(jobs):
            if isinstance(job, _Remove):
                try:
                    self._remove_files(job.qid)
                except SpoolError as exc:
                    results[i] = exc
                continue
            try:
                staged.append(self._stage(i, job))
            except SpoolError as exc:
                results[i] = exc
        linked = self._link_staged(staged, results) if staged else []
        if linked:
            try:
                self._commit.sync()
            except OSError as exc:
                # Nothing was acknowledged: take the messages back out completely.
                error = SpoolError(f"cannot write queue file: {exc.strerror or exc}",
                                   disk=exc.errno in _DISK_ERRNOS)
                for i, qid in linked:
                    _unlink_quietly(self.active / qid)
                    self._sizes.pop(qid, None)
                    results[i] = error
            else:
                for i, qid in linked:
                    results[i] = qid
        return results

    def _stage(self, index: int, job: _Enqueue) -> _Staged:
        """Write one message to a recycled spare or a new `incoming/` file, not yet fsynced."""
        envelope = job.envelope
        qid = envelope.queue_id if job.chosen else self._new_id()
        envelope.queue_id = qid
        job.encoded = encode_envelope(envelope)
        chunks = (MAGIC, job.encoded, b"\n", job.header, job.data)
        size = sum(len(c) for c in chunks)
        spare = self._take_spare()
        try:
            if spare is not None:
                path = self.spare / spare[0]
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            else:
                path = self.incoming / qid
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            return _Staged(index, job, qid, None, -1, size)  # another writer holds this ID
        except OSError as exc:
            raise SpoolError(f"cannot write queue file: {exc.strerror or exc}",
                             disk=exc.errno in _DISK_ERRNOS) from exc
        try:
            write_all(fd, chunks)
            if spare is not None and spare[1] > size:
                os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(path)  # half written (a spare: half old, half new): not worth keeping
            raise SpoolError(f"cannot write queue file: {exc.strerror or exc}",
                             disk=exc.errno in _DISK_ERRNOS) from exc
        return _Staged(index, job, qid, path, fd, size)

    def _link_staged(self, staged: list[_Staged],
                     results: list[str | None | BaseException]) -> list[tuple[int, str]]:
        """fsync the staged files together, then link each durable one into `active/`."""
        written = [s for s in staged if s.path is not None]
        errors = self._fsyncs.sync([s.fd for s in written])
        linked: list[tuple[int, str]] = []
        for item, error in zip(written, errors, strict=True):
            path = item.path
            assert path is not None
            with contextlib.suppress(OSError):  # after fsync, close adds nothing to durability
                os.close(item.fd)
            try:
                if error is not None:
                    results[item.index] = SpoolError(
                        f"cannot write queue file: {error.strerror or error}",
                        disk=error.errno in _DISK_ERRNOS)
                    continue
                try:
                    os.link(path, self.active / item.qid)  # refuses to replace another message
                except FileExistsError:
                    item.path = None  # the ID is taken after all: see below
                    continue
                except OSError as exc:
                    results[item.index] = SpoolError(
                        f"cannot write queue file: {exc.strerror or exc}",
                        disk=exc.errno in _DISK_ERRNOS)
                    continue
                self._sizes[item.qid] = item.size
                linked.append((item.index, item.qid))
            finally:
                _unlink_quietly(path)  # the file lives on as active/<qid> (if it was linked)
        for item in staged:
            if item.path is not None:
                continue
            # The ID is in use (a rare collision with another writer): a chosen one is
            # named in the Received header already; any other is tried again with new IDs.
            if item.job.chosen:
                results[item.index] = SpoolError(f"queue id {item.qid} already in use")
                continue
            try:
                linked.append((item.index, self._store(item.job)))
            except SpoolError as exc:
                results[item.index] = exc
        return linked

    def _store(self, job: _Enqueue) -> str:
        """Write, fsync and link one message into `active/`; the caller fsyncs the directory."""
        envelope = job.envelope
        for _ in range(MAX_ID_RETRIES):
            qid = envelope.queue_id if job.chosen else self._new_id()
            envelope.queue_id = qid
            job.encoded = encode_envelope(envelope)
            chunks = (MAGIC, job.encoded, b"\n", job.header, job.data)
            size = sum(len(c) for c in chunks)
            try:
                spare = self._take_spare()
                if spare is not None:
                    staged = self._rewrite_spare(spare, chunks, size)
                else:
                    staged = self.incoming / qid
                    try:
                        write_file_durably(staged, chunks)
                    except FileExistsError:
                        if job.chosen:
                            raise SpoolError(f"queue id {qid} already in use") from None
                        continue  # another writer holds this ID right now
                try:
                    os.link(staged, self.active / qid)  # refuses to replace another message
                except FileExistsError:
                    if job.chosen:
                        raise SpoolError(f"queue id {qid} already in use") from None
                    continue
                finally:
                    _unlink_quietly(staged)  # the file lives on as active/<qid>
            except OSError as exc:
                raise SpoolError(f"cannot write queue file: {exc.strerror or exc}",
                                 disk=exc.errno in _DISK_ERRNOS) from exc
            self._sizes[qid] = size
            return qid
        raise SpoolError("cannot allocate a unique queue id")

    def _take_spare(self) -> tuple[str, int] | None:
        try:
            return self._spares.pop()  # atomic: callers may be on several threads
        except IndexError:
            return None

    def _rewrite_spare(self, spare: tuple[str, int], chunks: Sequence[bytes], size: int) -> Path:
        """Overwrite a recycled queue file in place (no inode or block allocation), fsynced."""
        name, old_size = spare
        path = self.spare / name
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            write_all(fd, chunks)
            if old_size > size:
                os.ftruncate(fd, size)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)  # half old, half new: not worth keeping
            raise
        os.close(fd)
        return path

    def update_envelope(self, qid: str, envelope: Envelope) -> None:
        """Atomically record new delivery state and make it durable (blocking)."""
        self._check(qid)
        tmp = self.incoming / f"{qid}{ENV_SUFFIX}.{threading.get_ident()}"
        try:
            if not os.path.exists(self.active / qid):
                raise SpoolError(f"no such queue file: {qid}")
            _unlink_quietly(tmp)
            write_file_durably(tmp, [encode_envelope(envelope)])
            self._with_env.add(qid)
            os.replace(tmp, self.active / (qid + ENV_SUFFIX))
            self._commit.sync()
        except OSError as exc:
            _unlink_quietly(tmp)
            raise SpoolError(f"cannot update queue file {qid}: {exc.strerror or exc}",
                             disk=exc.errno in _DISK_ERRNOS) from exc

    def remove(self, qid: str) -> None:
        """Delete a message after its final delivery (blocking; no fsync, see the docstring)."""
        self._check(qid)
        self._hot_drop(qid)
        self._remove_files(qid)

    def _remove_files(self, qid: str) -> None:
        size = self._sizes.pop(qid, None)  # known only for files this process wrote
        try:
            # The commit point: the queue file leaves active/, into spare/ for reuse
            # when it is small and the pool is not full.
            if size is not None and size <= SPARE_MAX_BYTES and len(self._spares) < MAX_SPARES:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.active / qid, self.spare / qid)
                    self._spares.append((qid, size))
            else:
                _unlink_quietly(self.active / qid)
            if size is None or qid in self._with_env:
                self._with_env.discard(qid)
                _unlink_quietly(self.active / (qid + ENV_SUFFIX))
        except OSError as exc:
            raise SpoolError(f"cannot remove queue file {qid}: {exc.strerror or exc}") from exc

    async def remove_async(self, qid: str) -> None:
        """remove() in the writer thread, batched with other spool work."""
        self._check(qid)
        self._hot_drop(qid)
        await self._writer.submit(_Remove(qid))

    # -- reading ------------------------------------------------------------------
    def take_hot(self, qid: str) -> tuple[Envelope, bytes] | None:
        """The envelope and message just enqueued, from memory, once (else None: use load)."""
        entry = self._hot.pop(qid, None)
        if entry is None:
            return None
        encoded, header, data = entry
        self._hot_bytes -= len(header) + len(data)
        return decode_envelope(encoded), header + data

    def _hot_drop(self, qid: str) -> None:
        entry = self._hot.pop(qid, None)
        if entry is not None:
            self._hot_bytes -= len(entry[1]) + len(entry[2])

    def list_ids(self) -> list[str]:
        """Committed messages, oldest first (IDs sort by arrival time)."""
        return sorted(n for n in os.listdir(self.active) if is_queue_id(n))

    def load(self, qid: str) -> tuple[Envelope, bytes]:
        """The current envelope and the message (blocking); SpoolError if missing or corrupt."""
        self._check(qid)
        try:
            raw = (self.active / qid).read_bytes()
        except FileNotFoundError as exc:
            raise SpoolError(f"no such queue file: {qid}") from exc
        except OSError as exc:
            raise SpoolError(f"cannot read queue file {qid}: {exc.strerror or exc}") from exc
        end = raw.find(b"\n")
        if not raw.startswith(MAGIC) or end < 0:
            raise SpoolError(f"corrupt queue file: {qid}: not a queue file")
        encoded = raw[len(MAGIC):end]
        with contextlib.suppress(FileNotFoundError):
            encoded = (self.active / (qid + ENV_SUFFIX)).read_bytes()
            self._with_env.add(qid)
        try:
            envelope = decode_envelope(encoded)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SpoolError(f"corrupt queue file: {qid}: {exc}") from exc
        return envelope, raw[end + 1:]

    def recover(self) -> list[str]:
        """At start-up: drop half-written leftovers, quarantine corrupt ones, list the rest."""
        for name in os.listdir(self.incoming):
            _unlink_quietly(self.incoming / name)
        self._recover_spares()
        names = set(os.listdir(self.active))
        kept: list[str] = []
        for name in sorted(names):
            if is_queue_id(name):
                try:
                    self.load(name)
                except SpoolError:
                    self._quarantine(name)
                else:
                    kept.append(name)
            elif not (name.endswith(ENV_SUFFIX) and name[: -len(ENV_SUFFIX)] in names):
                _unlink_quietly(self.active / name)  # orphan or stray: never acknowledged
        fsync_dir(self.active)
        fsync_dir(self.incoming)
        fsync_dir(self.spare)
        return kept

    def _recover_spares(self) -> None:
        """Keep the recycled files that are safe to overwrite; remove the rest."""
        self._spares.clear()
        for name in sorted(os.listdir(self.spare)):
            path = self.spare / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            # nlink > 1: a power loss undid the unlink after this file was reused, so
            # the same file is also a queued message; overwriting it would destroy that.
            if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size <= SPARE_MAX_BYTES
                    and len(self._spares) < MAX_SPARES):
                self._spares.append((name, st.st_size))
            else:
                _unlink_quietly(path)

    def _quarantine(self, qid: str) -> None:
        for name in (qid, qid + ENV_SUFFIX):
            source = self.active / name
            if source.exists():
                shutil.move(str(source), str(self.corrupt / name))

    def has_room(self, size: int, reserve: int = 0) -> bool:
        """Whether `size` bytes (plus `reserve`) fit on the queue's file system."""
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize >= size + reserve

    @staticmethod
    def _check(qid: str) -> None:
        if not is_queue_id(qid):
            raise SpoolError(f"invalid queue id {qid!r}")


# dataclasses.asdict() deep-copies every value; these plain reads make the same JSON.
_ENVELOPE_FIELDS = tuple(f.name for f in dataclasses.fields(Envelope))
_RECIPIENT_FIELDS = tuple(f.name for f in dataclasses.fields(Recipient))
_CLIENT_FIELDS = tuple(f.name for f in dataclasses.fields(ClientInfo))


def encode_envelope(envelope: Envelope) -> bytes:
    """The envelope as one line of JSON (json escapes newlines inside strings)."""
    out = {name: getattr(envelope, name) for name in _ENVELOPE_FIELDS}
    out["recipients"] = [{name: getattr(r, name) for name in _RECIPIENT_FIELDS}
                         for r in envelope.recipients]
    out["client"] = {name: getattr(envelope.client, name) for name in _CLIENT_FIELDS}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def decode_envelope(encoded: bytes) -> Envelope:
    return Envelope.from_json_dict(json.loads(encoded))
