"""The benchmark's load generator against bench/sink.py: counts must be right, or the
figures `make bench` prints mean nothing. Small N, 127.0.0.1 only, a few seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bench.sink import SinkOptions, start_sink, unstuff
from bench.smtp_load import (
    LoadConfig,
    LoadResult,
    Reply,
    SMTPProtocolError,
    build_message,
    count_maildir,
    ehlo_keywords,
    parse_reply_line,
    run_load,
)


def _run(tmp_path: Path, n: int = 50, c: int = 5, per_connection: int = 1, **sink: object) -> LoadResult:
    opts = SinkOptions(directory=tmp_path / "md", **sink)  # type: ignore[arg-type]

    async def go() -> LoadResult:
        server = await start_sink("127.0.0.1", 0, opts)
        port = server.sockets[0].getsockname()[1]
        try:
            cfg = LoadConfig(port=port, messages=n, concurrency=c, size=2000,
                             per_connection=per_connection, maildir=opts.directory,
                             io_timeout=5.0, delivery_timeout=5.0, total_timeout=30.0)
            return await run_load(cfg)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(asyncio.wait_for(go(), 60))


@pytest.mark.parametrize("per_connection", [1, 7])
@pytest.mark.parametrize("pipelining", [True, False])
def test_all_accepted_and_delivered(tmp_path: Path, pipelining: bool, per_connection: int) -> None:
    res = _run(tmp_path, per_connection=per_connection, pipelining=pipelining)
    assert (res.accepted, res.failed, res.delivered) == (50, 0, 50), res.errors
    assert res.pipelining is pipelining
    assert res.e2e_per_s is not None and res.accepted_per_s > 0
    assert count_maildir(tmp_path / "md") == 50
    body = next((tmp_path / "md" / "new").iterdir()).read_bytes()
    assert body.startswith(b"From: <sender@example.net>\r\n") and body.endswith(b"\r\n")


def test_4xx_after_data_counts_as_failure(tmp_path: Path) -> None:
    res = _run(tmp_path, per_connection=5, data_fail_every=5)
    assert (res.accepted, res.failed, res.delivered) == (40, 10, 40)
    assert any("451" in kind for kind in res.errors)


def test_rejected_rcpt_in_a_pipeline(tmp_path: Path) -> None:
    res = _run(tmp_path, rcpt_fail_every=10)
    assert (res.accepted, res.failed) == (45, 5)
    assert any(kind.startswith("RCPT 550") for kind in res.errors)


def test_connection_reset_and_refused_banner(tmp_path: Path) -> None:
    res = _run(tmp_path / "a", per_connection=2, drop_every=4)
    assert res.accepted + res.failed == 50 and res.failed >= 12 and res.connection_errors > 0
    res = _run(tmp_path / "b", n=10, banner_code=554)
    assert (res.accepted, res.failed) == (0, 10) and res.e2e_per_s is None


def test_pure_parts() -> None:
    assert parse_reply_line(b"250-PIPELINING\r\n") == (250, False, "PIPELINING")
    assert parse_reply_line(b"250 OK\r\n") == (250, True, "OK")
    assert parse_reply_line(b"354\r\n") == (354, True, "")
    with pytest.raises(SMTPProtocolError):
        parse_reply_line(b"hello\r\n")
    assert ehlo_keywords(Reply(250, ("host", "pipelining", "SIZE 100"))) == {"PIPELINING", "SIZE"}
    for size in (0, 100, 5000, 5001):
        msg = build_message(size, 1, "a@b.c", "d@e.f")
        assert abs(len(msg) - max(size, 150)) <= 150 and msg.endswith(b"\r\n")
        assert b"\r\n." not in msg and b"\n" not in msg.replace(b"\r\n", b"")
    assert unstuff(b"..a\r\n..b\r\n") == b".a\r\n.b\r\n"
