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

The INFO lines (nearly all of them) take a shorter road still: a ServiceLogger
whose records would only reach the handlers setup_logging() installed formats the
line itself and hands the text to them, without building a LogRecord or walking
logging's filter and handler chain (together most of a line's cost). Any other
arrangement (a handler or filter added by someone else, propagation turned on,
keyword arguments, WARNING and above) goes the standard way, so what is written
is the same text either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
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
        self._cache: tuple[int, str] = (-1, "")  # (second, its timestamp), replaced whole

    def _tag(self, name: str) -> str:
        tag = self._tags.get(name)
        if tag is None:
            service = name.split(".", 1)[1] if "." in name else "master"
            tag = self._tags[name] = f"{_ROOT}/{service}"
        return tag

    def _timestamp(self, created: float) -> str:
        second = int(created)
        cached = self._cache  # one tuple: a thread never sees one second's stamp with another's
        if second != cached[0]:  # one strftime per second, not per line
            cached = (second, f"{time.strftime('%b %e %H:%M:%S', time.localtime(second))} {self.hostname}")
            self._cache = cached
        return cached[1]

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record.name, record.levelno, record.getMessage(), record.created)

    def line(self, name: str, levelno: int, message: str, created: float) -> str:
        """The line for a message of logger `name` (format() of a record, without the record)."""
        prefix = ""
        if levelno >= logging.WARNING:
            if levelno >= logging.CRITICAL:
                prefix = "fatal: "
            elif levelno >= logging.ERROR:
                prefix = "error: "
            else:
                prefix = "warning: "
        line = f"{self._tag(name)}[{_pid}]: {prefix}{message}"
        if self.with_timestamp:
            line = f"{self._timestamp(created)} {line}"
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
        self._after_append(record.levelno)

    def emit_info(self, line: str) -> None:
        """ServiceLogger's fast path: what emit() does for an INFO record, given its line."""
        with self.lock:  # type: ignore[union-attr]  # createLock() made it
            self._lines.append(line)
            if self._flush_loop is None or self._flush_thread != threading.get_ident():
                self._after_append(logging.INFO)

    def _after_append(self, levelno: int) -> None:
        """Write now, or make sure the running loop writes at the end of this iteration."""
        if levelno < logging.WARNING:
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


# What setup_logging() installed on the "mailroom" logger: (that logger, its handlers,
# each with its PostfixFormatter, the tag prefix), or None while no such arrangement is
# in place. A ServiceLogger is named "mailroom.SERVICE", so its tag is "mailroom/SERVICE".
_installed: tuple[
    logging.Logger,
    list[logging.Handler],
    tuple[tuple[BufferedStreamHandler, PostfixFormatter], ...],
    str,
] | None = None
_TAG_FROM = len(_ROOT) + 1


class ServiceLogger(logging.Logger):
    """A service's logger; INFO lines skip the LogRecord when only our handlers get them."""

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        installed = _installed
        if (
            installed is None
            or kwargs
            or not self.isEnabledFor(logging.INFO)
            or self.parent is not installed[0]
            or self.handlers
            or self.filters
            or not self.propagate
            or self.disabled
            or installed[0].handlers != installed[1]  # someone added or removed a handler
            or installed[0].filters
            or installed[0].propagate
            or (len(args) == 1 and isinstance(args[0], Mapping))  # logging's %(name)s form
        ):
            super().info(msg, *args, **kwargs)
            return
        try:
            message = str(msg) % args if args else str(msg)
        except Exception:  # noqa: BLE001 - let logging report the bad format as it does
            super().info(msg, *args)
            return
        for handler, formatter in installed[2]:
            if handler.filters or handler.level > logging.INFO or handler.formatter is not formatter:
                super().info(msg, *args)  # a changed handler: let logging sort it out
                return
        # PostfixFormatter.line() for each handler, with the common part made once.
        line = f"{installed[3]}{self.name[_TAG_FROM:]}[{_pid}]: {message}"
        now = time.time()
        for handler, formatter in installed[2]:
            handler.emit_info(f"{formatter._timestamp(now)} {line}" if formatter.with_timestamp else line)


def get_logger(service: str) -> logging.Logger:
    """The logger for one service (smtpd, cleanup, qmgr, virtual, smtp, imap, pop3, auth).

    A ServiceLogger, unless a plain logger of that name already existed (it then
    simply takes logging's standard road).
    """
    # Manager.getLogger makes new loggers of manager.loggerClass. Another thread
    # creating an unrelated logger meanwhile would get a ServiceLogger too, which
    # is harmless: outside our arrangement it behaves exactly like a Logger.
    manager = logging.Logger.manager
    saved = manager.loggerClass
    manager.loggerClass = ServiceLogger
    try:
        return manager.getLogger(f"{_ROOT}.{service}")
    finally:
        manager.loggerClass = saved


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
    global _installed
    handlers = list(root.handlers)
    ours = tuple((h, h.formatter) for h in handlers
                 if isinstance(h, BufferedStreamHandler) and isinstance(h.formatter, PostfixFormatter))
    _installed = (root, handlers, ours, f"{_ROOT}/") if len(ours) == len(handlers) else None
