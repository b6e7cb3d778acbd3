"""Log lines in Postfix's shapes: `mailroom/smtpd[PID]: ...`, to stderr and `maillog_file`.

Postfix's line shape is what fail2ban filters, logwatch and administrators' greps
expect, so each service gets a logger whose name becomes the `mailroom/NAME` tag.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_ROOT = "mailroom"


class PostfixFormatter(logging.Formatter):
    """`Mon DD HH:MM:SS host mailroom/service[pid]: message` for files; no date on stderr."""

    def __init__(self, with_timestamp: bool) -> None:
        super().__init__()
        self.with_timestamp = with_timestamp
        self.hostname = os.uname().nodename.split(".")[0]

    def format(self, record: logging.LogRecord) -> str:
        service = record.name.split(".", 1)[1] if "." in record.name else "master"
        prefix = ""
        if record.levelno >= logging.ERROR:
            prefix = "fatal: " if record.levelno >= logging.CRITICAL else "error: "
        elif record.levelno >= logging.WARNING:
            prefix = "warning: "
        line = f"{_ROOT}/{service}[{os.getpid()}]: {prefix}{record.getMessage()}"
        if self.with_timestamp:
            stamp = time.strftime("%b %e %H:%M:%S", time.localtime(record.created))
            line = f"{stamp} {self.hostname} {line}"
        return line


def get_logger(service: str) -> logging.Logger:
    """The logger for one service (smtpd, cleanup, qmgr, virtual, smtp, imap, pop3, auth)."""
    return logging.getLogger(f"{_ROOT}.{service}")


def setup_logging(maillog_file: str = "", level: int = logging.INFO) -> None:
    """(Re)configure handlers; called at start and on SIGHUP."""
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(PostfixFormatter(with_timestamp=False))
    root.addHandler(stderr)
    if maillog_file:
        filehandler = logging.FileHandler(maillog_file)
        filehandler.setFormatter(PostfixFormatter(with_timestamp=True))
        root.addHandler(filehandler)
    root.setLevel(level)
    root.propagate = False
