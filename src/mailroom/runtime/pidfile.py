"""The pid file in data_directory: one server per configuration, and `reload`/`stop` find it."""

from __future__ import annotations

import os
from pathlib import Path

PID_FILE = "mailroom.pid"


class PidFileError(Exception):
    pass


def read_pid(path: Path) -> int | None:
    """The pid of a live server, or None (no file, garbage, or a stale pid)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def acquire(path: Path) -> None:
    """Create the pid file, replacing a stale one; refuse if a server is running."""
    running = read_pid(path)
    if running is not None and running != os.getpid():
        raise PidFileError(f"mailroom is already running with this configuration (pid {running}, {path})")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()}\n")


def release(path: Path) -> None:
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)
