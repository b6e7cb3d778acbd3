"""fsync() of many files at once, for the batching writer threads.

Theory of operation. A writer thread (queue/batch.py) that writes a batch of
messages used to fsync them one after the other, and each fsync waits for the
disk's cache flush: a batch of twenty cost twenty flush round trips, and that wait,
not CPU, bounded the messages per second. FsyncPool.sync() instead spreads the
files over a few streams, the calling thread being one of them and helper threads
the others, so the flushes are in flight together: the block layer merges flushes
that wait at the same time, so the batch costs a few round trips instead of one per
file. Durability is unchanged: sync() returns only when every file's own fsync has
returned, and reports each file's error separately.

The helpers are started on first use and wait on a SimpleQueue; while the GIL is
released during fsync they cost no interpreter time.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence

STREAMS = 4  # files fsynced at once: the calling thread plus STREAMS - 1 helpers

# A helper's share: the fds, which of them (indices), where to report the failures.
_Failures = list[tuple[int, OSError]]
_Task = tuple[Sequence[int], range, "queue.SimpleQueue[_Failures]"]


class FsyncPool:
    def __init__(self, name: str, streams: int = STREAMS,
                 fsync: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.streams = max(1, streams)
        self._fsync = fsync  # None: os.fsync, looked up at each call
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._helpers: list[threading.Thread] = []
        self._closed = False

    def sync(self, fds: Sequence[int]) -> list[OSError | None]:
        """fsync every fd (concurrently when there are several); the error of each, in order."""
        errors: list[OSError | None] = [None] * len(fds)
        streams = min(self.streams, len(fds))
        if streams <= 1 or not self._start_helpers():
            streams = 1
        done: queue.SimpleQueue[_Failures] = queue.SimpleQueue()
        for k in range(1, streams):
            self._tasks.put((fds, range(k, len(fds), streams), done))
        failed = self._run(fds, range(0, len(fds), streams))
        for _ in range(1, streams):
            failed += done.get()
        for i, exc in failed:
            errors[i] = exc
        return errors

    def _run(self, fds: Sequence[int], indices: range) -> _Failures:
        failed: _Failures = []
        fsync = self._fsync or os.fsync
        for i in indices:
            try:
                fsync(fds[i])
            except OSError as exc:
                failed.append((i, exc))
            except Exception as exc:  # noqa: BLE001 - never leave the caller waiting
                failed.append((i, OSError(f"fsync failed: {exc!r}")))
        return failed

    def _start_helpers(self) -> bool:
        if len(self._helpers) == self.streams - 1:
            return True
        with self._lock:
            if self._closed:
                return False
            while len(self._helpers) < self.streams - 1:
                helper = threading.Thread(target=self._serve, daemon=True,
                                          name=f"{self.name}-fsync{len(self._helpers) + 1}")
                helper.start()
                self._helpers.append(helper)
        return True

    def _serve(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fds, indices, done = task
            done.put(self._run(fds, indices))

    def close(self) -> None:
        """Stop the helpers (a later sync() runs in the calling thread alone)."""
        with self._lock:
            self._closed = True
            helpers, self._helpers = self._helpers, []
        for _ in helpers:
            self._tasks.put(None)
        for helper in helpers:
            helper.join(5.0)
