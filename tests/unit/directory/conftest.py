"""`directory_url` for the directory suite: SQLite, PostgreSQL and MariaDB, each test once per backend.

SQLite is a fresh file per test. A server backend gets a scratch schema/database per
test module (servers.scratch_database) whose tables are dropped after each test; a
server that is down makes its tests skip with a one-line reason.
MAILROOM_TEST_DIRECTORY_URL, when set, replaces the two servers with that one URL
(its ISPmail tables are dropped after each test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.directory.servers import SERVERS, drop_tables, scratch_database, unreachable

SERVER_URL_ENV = "MAILROOM_TEST_DIRECTORY_URL"


def _backends() -> list[str]:
    return ["sqlite", "custom"] if os.environ.get(SERVER_URL_ENV) else ["sqlite", *SERVERS]


@pytest.fixture(scope="module", params=_backends())
def directory_server(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite, else a URL to an empty schema/database kept for the module."""
    if request.param == "sqlite":
        yield None
        return
    if request.param == "custom":
        yield os.environ[SERVER_URL_ENV]
        return
    server = SERVERS[request.param]
    reason = unreachable(server)
    if reason:
        pytest.skip(reason)
    with scratch_database(server) as url:
        yield url


@pytest.fixture
def directory_url(directory_server: str | None, tmp_path: Path) -> Iterator[str]:
    if directory_server is None:
        yield f"sqlite:///{tmp_path / 'directory.db'}"
        return
    yield directory_server
    drop_tables(directory_server)
