"""Log lines in Postfix's shapes: `mailroom/smtpd[PID]: ...`, to stderr and `maillog_file`.

Postfix's line shape is what fail2ban filters, logwatch and administrators' greps
expect, so each service gets a logger whose name becomes the `mailroom/NAME` tag.

Logging is on the per-message path (several lines per message), so it is kept cheap:
setup_logging() turns off the LogRecord fields nobody prints (caller frame, thread,
process: a getpid() and a stack walk per line), and the formatter caches the pid
(refreshed after fork), the service tag of each logger and the timestamp of the
current second. The queue and the SMTP adapter log from the event loop's thread, so
the handlers' locks are not contended, and the handlers write the lines logged in
one event-loop iteration with one write() at its end (a line logged outside a
running loop, and any warning or error, is written at once). A kill -9 can thus
lose the lines of the iteration it interrupts, never more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from typing import Any

_ROOT = "mailroom"

_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


class PostfixFormatter(logging.Formatter):
    """`Mon DD HH:MM:SS host mailroom/service[pid]: message` for files; no date on stderr."""

    def __init__(self, with_timestamp: bool) -> None:
        super().__init__()
        self.with_timestamp = with_timestamp
        self.hostname = os.uname().nodename.split(".")[0]
        self._tags: dict[str, str] = {}
        self._stamp_second = -1
        self._stamp = ""

    def _tag(self, name: str) -> str:
        tag = self._tags.get(name)
        if tag is None:
            service = name.split(".", 1)[1] if "." in name else "master"
            tag = self._tags[name] = f"{_ROOT}/{service}"
        return tag

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._stamp_second:  # one strftime per second, not per line
            self._stamp = f"{time.strftime('%b %e %H:%M:%S', time.localtime(second))} {self.hostname}"
            self._stamp_second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        prefix = ""
        if record.levelno >= logging.WARNING:
            if record.levelno >= logging.CRITICAL:
                prefix = "fatal: "
            elif record.levelno >= logging.ERROR:
                prefix = "error: "
            else:
                prefix = "warning: "
        line = f"{self._tag(record.name)}[{_pid}]: {prefix}{record.getMessage()}"
        if self.with_timestamp:
            line = f"{self._timestamp(record.created)} {line}"
        return line


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes once per event-loop iteration (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lines: list[str] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # a flush is scheduled there
        self._flush_thread = 0  # ... by this thread

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            self._lines.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno < logging.WARNING:
            if self._flush_loop is not None and self._flush_thread == threading.get_ident():
                return  # this thread's loop flushes at the end of the iteration
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._flush_loop, self._flush_thread = loop, threading.get_ident()
                loop.call_soon(self.flush)
                return
        self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._flush_loop = None
            stream = self.stream
            if stream is None:
                return
            if self._lines:
                text = self.terminator.join(self._lines) + self.terminator
                self._lines.clear()
                try:
                    stream.write(text)
                except Exception:  # noqa: BLE001 - like logging: never raise into the caller
                    sys.stderr.write("--- Logging error: cannot write log lines ---\n")
            if hasattr(stream, "flush"):
                stream.flush()
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()


class BufferedFileHandler(BufferedStreamHandler, logging.FileHandler):
    """`maillog_file`, written like BufferedStreamHandler."""


def get_logger(service: str) -> logging.Logger:
    """The logger for one service (smtpd, cleanup, qmgr, virtual, smtp, imap, pop3, auth)."""
    return logging.getLogger(f"{_ROOT}.{service}")


def setup_logging(maillog_file: str = "", level: int = logging.INFO) -> None:
    """(Re)configure handlers; called at start and on SIGHUP."""
    # The Postfix line shape uses none of these; computing them costs a stack walk,
    # a getpid() and thread look-ups per line (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python 3.12+
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    stderr = BufferedStreamHandler(sys.stderr)
    stderr.setFormatter(PostfixFormatter(with_timestamp=False))
    root.addHandler(stderr)
    if maillog_file:
        filehandler = BufferedFileHandler(maillog_file)
        filehandler.setFormatter(PostfixFormatter(with_timestamp=True))
        root.addHandler(filehandler)
    root.setLevel(level)
    root.propagate = False
