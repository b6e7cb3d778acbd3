"""How the IMAP/POP3 session adapter hands received bytes to its core: in slices, in order,
EOF last, and nothing held from before STARTTLS survives the upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from mailroom.adapters.session import FEED_SLICE, LoginSession


class RecordingCore:
    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def receive_data(self, data: bytes) -> None:
        self.fed.append(data)


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, _name: str) -> Any:
        return None


class Service:
    sessions: set[object] = set()


def make_session() -> tuple[LoginSession, RecordingCore]:
    session = LoginSession(Service(), lambda: None)
    core = RecordingCore()
    session.conn = core
    session.transport = FakeTransport()  # type: ignore[assignment]
    return session, core


def test_a_big_read_reaches_the_core_a_slice_at_a_time_then_eof() -> None:
    async def main() -> None:
        session, core = make_session()
        data = bytes(range(256)) * 400  # 100 KiB in one read
        session.data_received(data)
        session.eof_received()
        assert [len(chunk) for chunk in core.fed] == [FEED_SLICE]  # the rest waits its turn
        while not core.fed or core.fed[-1] != b"":
            assert await session._wait_input(1.0)
        assert b"".join(core.fed) == data  # in order, nothing lost, EOF after the bytes
        assert max(len(chunk) for chunk in core.fed) <= FEED_SLICE

    asyncio.run(main())


def test_reads_behind_unconsumed_input_wait_their_turn() -> None:
    """TLS hands over record after record before the session runs: they queue behind."""
    async def main() -> None:
        session, core = make_session()
        session.data_received(b"a NOOP\r\n")
        session.data_received(b"b NOOP\r\n")  # the session has not looked yet
        assert core.fed == [b"a NOOP\r\n"]
        assert await session._wait_input(1.0)
        assert core.fed == [b"a NOOP\r\n", b"b NOOP\r\n"]

    asyncio.run(main())


def test_bytes_held_before_starttls_are_dropped() -> None:
    async def main() -> None:
        session, core = make_session()
        session.data_received(b"a STARTTLS\r\n" + b"x LOGIN john secret\r\n" * 2000)
        assert len(core.fed) == 1
        assert not await session._start_tls()  # no TLS context here: the upgrade fails, but
        assert not session._held  # what came behind STARTTLS in plaintext is gone either way

    asyncio.run(main())


def test_small_reads_go_straight_to_the_core() -> None:
    async def main() -> None:
        session, core = make_session()
        session.data_received(b"a CAPABILITY\r\n")
        assert core.fed == [b"a CAPABILITY\r\n"] and not session._held

    asyncio.run(main())


def test_a_lost_connection_still_runs_every_byte_read_before_it() -> None:
    """A POP3 DELE+QUIT (or an IMAP EXPUNGE) already read must reach the core before EOF,
    even when the connection drops while bytes are held."""
    async def main() -> None:
        session, core = make_session()
        session.pause_writing()  # answers to an earlier burst are still on their way
        waiter = asyncio.create_task(session._wait_input(5.0))
        await asyncio.sleep(0)
        data = b"NOOP\r\n" * 3000 + b"DELE 1\r\nQUIT\r\n"  # one read, more than FEED_SLICE
        session.data_received(data)
        session.data_received(b"NOOP\r\n")  # and one more behind it
        session.connection_lost(ConnectionResetError())
        assert await waiter
        for _ in range(10):
            if core.fed and core.fed[-1] == b"":
                break
            assert await session._wait_input(1.0)
        assert core.fed[-1] == b"" and b"" not in core.fed[:-1]
        assert b"".join(core.fed) == data + b"NOOP\r\n"

    asyncio.run(main())
