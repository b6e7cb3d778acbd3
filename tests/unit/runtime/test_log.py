"""Postfix-shaped log lines: the INFO fast path writes exactly what logging's road writes."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.runtime import log as logmod
from mailroom.runtime.log import ServiceLogger, get_logger, setup_logging

STAMP = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ "


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, Path]]:
    """setup_logging() into a StringIO (stderr) and a maillog file; undone afterwards."""
    root = logging.getLogger("mailroom")
    saved = (list(root.handlers), root.propagate, root.level, logmod._installed)
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    maillog = tmp_path / "maillog"
    setup_logging(str(maillog))
    try:
        yield stderr, maillog
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.propagate, logmod._installed = saved[1], saved[3]
        root.setLevel(saved[2])


def _slow_road(logger: logging.Logger) -> logging.Filter:
    """A pass-everything filter: its mere presence sends records the standard way."""
    passing = logging.Filter()
    logger.addFilter(passing)
    return passing


def test_service_loggers_are_service_loggers() -> None:
    assert isinstance(get_logger("smtpd"), ServiceLogger)
    assert get_logger("smtpd") is get_logger("smtpd")
    assert not isinstance(logging.getLogger("mailroom-unrelated"), ServiceLogger)


def test_fast_and_standard_roads_write_the_same_lines(installed: tuple[io.StringIO, Path]) -> None:
    stderr, maillog = installed
    log = get_logger("smtpd")
    log.info("connect from %s", "localhost[127.0.0.1]")
    log.info("%s: client=%s%s", "ABC", "localhost[127.0.0.1]", "")
    log.info("100% plain, no arguments")
    passing = _slow_road(log)
    try:
        log.info("connect from %s", "localhost[127.0.0.1]")
        log.info("%s: client=%s%s", "ABC", "localhost[127.0.0.1]", "")
        log.info("100% plain, no arguments")
    finally:
        log.removeFilter(passing)
    pid = os.getpid()
    err = stderr.getvalue().splitlines()
    assert err[:3] == err[3:] == [
        f"mailroom/smtpd[{pid}]: connect from localhost[127.0.0.1]",
        f"mailroom/smtpd[{pid}]: ABC: client=localhost[127.0.0.1]",
        f"mailroom/smtpd[{pid}]: 100% plain, no arguments",
    ]
    lines = maillog.read_text().splitlines()
    assert len(lines) == 6
    assert [re.sub(f"^{STAMP}", "", line) for line in lines] == err
    assert all(re.match(STAMP, line) for line in lines)


def test_warnings_keep_their_prefix_and_are_written_at_once(installed: tuple[io.StringIO, Path]) -> None:
    stderr, _ = installed
    get_logger("qmgr").warning("%s: %s", "ABC", "disk full")
    assert stderr.getvalue() == f"mailroom/qmgr[{os.getpid()}]: warning: ABC: disk full\n"


def test_a_handler_added_later_still_gets_every_record(installed: tuple[io.StringIO, Path]) -> None:
    stderr, _ = installed
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collect = Collect()
    root = logging.getLogger("mailroom")
    root.addHandler(collect)
    try:
        get_logger("virtual").info("%s: to=<%s>", "ABC", "john@example.org")
    finally:
        root.removeHandler(collect)
    assert [r.getMessage() for r in records] == ["ABC: to=<john@example.org>"]
    assert stderr.getvalue().endswith(f"mailroom/virtual[{os.getpid()}]: ABC: to=<john@example.org>\n")


def test_lines_logged_in_a_loop_iteration_are_written_at_its_end(
        installed: tuple[io.StringIO, Path]) -> None:
    stderr, _ = installed
    log = get_logger("smtpd")

    async def main() -> list[str]:
        log.info("one")
        log.info("two %d", 2)
        before = stderr.getvalue()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [before, stderr.getvalue()]

    before, after = asyncio.run(main())
    pid = os.getpid()
    assert before == ""
    assert after == f"mailroom/smtpd[{pid}]: one\nmailroom/smtpd[{pid}]: two 2\n"


def test_a_mapping_argument_formats_by_name_as_in_logging(installed: tuple[io.StringIO, Path]) -> None:
    stderr, _ = installed
    get_logger("smtpd").info("%(who)s said hi", {"who": "alice"})
    assert stderr.getvalue() == f"mailroom/smtpd[{os.getpid()}]: alice said hi\n"
