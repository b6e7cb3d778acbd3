"""One worker thread that does blocking disk work in batches for the event loop.

Theory of operation. Coroutines submit jobs and await a future. The thread takes
every job waiting when it wakes, hands the whole list to `handler` (which can then
share one directory fsync among them: group commit), and settles all their futures
with a single call_soon_threadsafe per event loop. Under load a batch fills while
the previous one is being fsynced, so the cost of a wake-up, a thread hop and a
directory fsync is shared by as many messages as arrived meanwhile; idle, a job is
taken at once. One thread, not a pool: the GIL lets only one run Python anyway,
and a pool's threads contend for it (futex storms) for no gain.

`handler(jobs)` returns one result per job, in order; a result that is an
exception instance fails that job's future. If `handler` raises, every job of the
batch fails with that exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

J = TypeVar("J")
R = TypeVar("R")

JOIN_TIMEOUT = 30.0  # close(): how long to wait for the last batch's fsyncs


class BatchThread(Generic[J, R]):
    def __init__(self, name: str, handler: Callable[[list[J]], Sequence[R | BaseException]]) -> None:
        self.name = name
        self._handler = handler
        # Jobs travel in a SimpleQueue (put and get are C code; a Condition's notify is
        # Python code run on the event loop for every job). The lock only orders put()
        # against close(), so that nothing is put behind the stop marker (None).
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[J, asyncio.Future[R], asyncio.AbstractEventLoop] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # for tests and metrics
        self.jobs = 0

    async def submit(self, job: J) -> R:
        """Run `job` in the next batch and return its result (or raise its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put((job, future, loop))
        return await future

    def close(self) -> None:
        """Finish what was submitted, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)

    def _run(self) -> None:
        jobs = self._queue
        while True:
            item = jobs.get()  # the thread waits only when nothing is pending
            batch: list[tuple[J, asyncio.Future[R], asyncio.AbstractEventLoop]] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                else:
                    batch.append(item)
                try:
                    item = jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._handle(batch)
            if stop:
                return

    def _handle(self, batch: list[tuple[J, asyncio.Future[R], asyncio.AbstractEventLoop]]) -> None:
        results: Sequence[R | BaseException]
        try:
            results = self._handler([job for job, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} jobs")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting coroutine
            results = [exc] * len(batch)
        self.batches += 1
        self.jobs += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | BaseException]]] = {}
        for (_, future, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[R], R | BaseException]]) -> None:
    for future, result in settled:
        if future.done():  # cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
