from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

from mailroom.queue.fsync import FsyncPool


def test_every_fd_is_fsynced_once_concurrently_and_errors_stay_with_their_fd() -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def fsync(fd: int) -> None:
        time.sleep(0.01)  # a disk flush: the streams overlap these
        with lock:
            seen.append((fd, threading.current_thread().name))
        if fd in (3, 7):
            raise OSError(errno.EIO, "Input/output error")

    pool = FsyncPool("test", streams=4, fsync=fsync)
    fds = list(range(10))
    errors = pool.sync(fds)
    assert sorted(fd for fd, _ in seen) == fds
    assert len({name for _, name in seen}) == 4
    assert [i for i, e in enumerate(errors) if e is not None] == [3, 7]
    assert all(e is None or e.errno == errno.EIO for e in errors)
    assert pool.sync([]) == [] and pool.sync([5]) == [None]
    pool.close()
    seen.clear()
    assert pool.sync([1, 2]) == [None, None]  # after close: in the calling thread alone
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_a_helper_never_leaves_the_caller_waiting() -> None:
    def fsync(fd: int) -> None:
        if fd == 2:
            raise ValueError("not an OSError")

    pool = FsyncPool("test", streams=3, fsync=fsync)
    errors = pool.sync([0, 1, 2, 3])
    assert [e is None for e in errors] == [True, True, False, True]
    pool.close()


def test_real_files(tmp_path: Path) -> None:
    pool = FsyncPool("test")
    fds = [os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o600) for i in range(6)]
    try:
        assert pool.sync(fds) == [None] * 6
    finally:
        for fd in fds:
            os.close(fd)
        pool.close()
