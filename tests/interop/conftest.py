"""Interop tests drive a real `mailroom serve` with Debian's own client programs."""

from tests.e2e.server import mailroom_server, mailroom_server_factory  # noqa: F401
