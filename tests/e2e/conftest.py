"""Helpers to run the real `mailroom` command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_mailroom(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "mailroom", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, fragment: str = "") -> None:
    """Non-zero exit, exactly one `mailroom: error:` line on stderr, no traceback."""
    assert result.code != 0, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("mailroom: error: "), result.err
    assert "Traceback" not in result.err
    assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `init --demo` configuration shared by read-only tests."""
    path = tmp_path_factory.mktemp("demo") / "etc"
    result = run_mailroom("-c", str(path), "init", "--demo", "--hostname", "mail.example.org")
    assert result.code == 0, result
    return path


@pytest.fixture
def fresh_demo(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    result = run_mailroom("-c", str(path), "init", "--demo", "--hostname", "mail.example.org")
    assert result.code == 0, result
    return path


# A running `mailroom serve` on free loopback ports (see tests/e2e/server.py).
from tests.e2e.server import mailroom_server, mailroom_server_factory  # noqa: E402,F401
