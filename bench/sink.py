#!/usr/bin/env python3
"""A trivial asyncio SMTP sink: the baseline that mailroom's numbers are divided by.

It accepts every envelope (no policy, no queue), writes each message to
``DIR/tmp``, fsyncs it and renames it into ``DIR/new`` (so the generator's Maildir
count works the same way), then answers 250. The file write runs in a thread so
concurrent sessions overlap their fsyncs, as any decent server would.

A few fault knobs (no PIPELINING, 4xx/5xx replies, dropped connections) exist so the
load generator can be tested against misbehaving servers. Only listens where told
(use 127.0.0.1); the CLI stops by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

MAX_LINE = 4096
MAX_MESSAGE = 50 * 1024 * 1024


@dataclass
class SinkOptions:
    """Behaviour of the sink; the defaults are a well-behaved fast server."""

    directory: Path
    pipelining: bool = True
    fsync: bool = True
    banner_code: int = 220  # e.g. 554 to refuse every session
    data_fail_every: int = 0  # every Nth message: "451 4.3.0" after DATA (0 = never)
    rcpt_fail_every: int = 0  # every Nth RCPT: "550 5.1.1" (0 = never)
    drop_every: int = 0  # every Nth message: hang up instead of answering (0 = never)


class _Counters:
    """Sink-wide sequence numbers (for fault injection and unique file names)."""

    def __init__(self) -> None:
        self.messages = itertools.count(1)
        self.rcpts = itertools.count(1)
        self.files = itertools.count(1)


def _store(opts: SinkOptions, name: str, body: bytes) -> None:
    """Write, fsync, rename into new/ — runs in a worker thread."""
    tmp = opts.directory / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        if opts.fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, opts.directory / "new" / name)


def unstuff(body: bytes) -> bytes:
    """Undo SMTP dot-stuffing (RFC 5321 4.5.2)."""
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


class SinkProtocol(asyncio.Protocol):
    """One SMTP session as a small state machine over a byte buffer."""

    def __init__(self, opts: SinkOptions, counters: _Counters) -> None:
        self.opts = opts
        self.counters = counters
        self.buf = bytearray()
        self.in_data = False
        self.scan_from = 0
        self.busy = False  # a message is being written; hold further input
        self.closed = False
        self.mail = False
        self.rcpts = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.opts.banner_code != 220:
            self._reply(f"{self.opts.banner_code} 5.3.2 sink refuses service")
            self._close()
            return
        self._reply("220 sink.invalid ESMTP bench sink")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()
        elif len(self.buf) > MAX_LINE * 16 and self.transport is not None:
            self.transport.pause_reading()  # back-pressure while the write is pending

    def _reply(self, text: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(text.encode() + b"\r\n")

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _process(self) -> None:
        """Consume whole commands / a whole message; stops when more input is needed."""
        while not self.busy and not self.closed:
            if self.in_data:
                if not self._take_message():
                    return
            else:
                i = self.buf.find(b"\n")
                if i < 0:
                    if len(self.buf) > MAX_LINE:
                        self._reply("500 5.5.0 line too long")
                        self._close()
                    return
                line = bytes(self.buf[: i + 1]).rstrip(b"\r\n").decode("utf-8", "replace")
                del self.buf[: i + 1]
                self._command(line)

    def _take_message(self) -> bool:
        """If the buffer holds the end of DATA, start storing the message."""
        if self.buf.startswith(b".\r\n"):
            end, body = 0, b""
        else:
            end = self.buf.find(b"\r\n.\r\n", self.scan_from)
            if end < 0:
                if len(self.buf) > MAX_MESSAGE:
                    self._reply("552 5.3.4 message too big")
                    self._close()
                self.scan_from = max(len(self.buf) - 4, 0)
                return False
            body = unstuff(bytes(self.buf[: end + 2]))
            end += 2
        del self.buf[: end + 3]
        self.in_data = False
        self.scan_from = 0
        self.mail, self.rcpts = False, 0
        n = next(self.counters.messages)
        if self.opts.drop_every and n % self.opts.drop_every == 0:
            assert self.transport is not None
            self.transport.abort()  # connection reset, no reply
            self.closed = True
            return False
        if self.opts.data_fail_every and n % self.opts.data_fail_every == 0:
            self._reply("451 4.3.0 sink: injected temporary failure")
            return True
        self.busy = True
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.counters.files)}.sink"
        fut = asyncio.get_running_loop().run_in_executor(None, _store, self.opts, name, body)
        fut.add_done_callback(self._stored)
        return True

    def _stored(self, fut: asyncio.Future[None]) -> None:
        self.busy = False
        if fut.exception() is not None:
            self._reply("451 4.3.0 sink: cannot store message")
        else:
            self._reply("250 2.0.0 Ok: queued")
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self._process()

    def _command(self, line: str) -> None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            ext = ["PIPELINING"] if self.opts.pipelining else []
            ext += ["SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES"]
            self.mail, self.rcpts = False, 0
            self._reply("\r\n".join(["250-sink.invalid"] + [f"250-{e}" for e in ext[:-1]] + [f"250 {ext[-1]}"]))
        elif verb == "HELO":
            self.mail, self.rcpts = False, 0
            self._reply("250 sink.invalid")
        elif verb == "MAIL":
            if self.mail:
                self._reply("503 5.5.1 Error: nested MAIL command")
            else:
                self.mail = True
                self._reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            n = next(self.counters.rcpts)
            if not self.mail:
                self._reply("503 5.5.1 Error: need MAIL command")
            elif self.opts.rcpt_fail_every and n % self.opts.rcpt_fail_every == 0:
                self._reply("550 5.1.1 sink: injected unknown user")
            else:
                self.rcpts += 1
                self._reply("250 2.1.5 Ok")
        elif verb == "DATA":
            if not self.mail:
                self._reply("503 5.5.1 Error: need RCPT command")
            elif not self.rcpts:
                self._reply("554 5.5.1 Error: no valid recipients")
            else:
                self.in_data = True
                self._reply("354 End data with <CR><LF>.<CR><LF>")
        elif verb == "RSET":
            self.mail, self.rcpts = False, 0
            self._reply("250 2.0.0 Ok")
        elif verb == "NOOP":
            self._reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            self._reply("221 2.0.0 Bye")
            self._close()
        else:
            self._reply("502 5.5.2 Error: command not recognized")


async def start_sink(host: str, port: int, opts: SinkOptions) -> asyncio.Server:
    """Listen on host:port (0 = any free port) and return the server."""
    for sub in ("tmp", "new", "cur"):
        (opts.directory / sub).mkdir(parents=True, exist_ok=True)
    counters = _Counters()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SinkProtocol(opts, counters), host, port, backlog=1024)


async def _serve(host: str, port: int, opts: SinkOptions, max_seconds: float) -> None:
    server = await start_sink(host, port, opts)
    bound = server.sockets[0].getsockname()
    print(f"sink listening on {bound[0]}:{bound[1]} pid {os.getpid()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """CLI: run the sink until SIGTERM/SIGINT or --max-seconds."""
    ap = argparse.ArgumentParser(description="trivial SMTP sink (benchmark baseline)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", type=Path, required=True, help="Maildir-like output directory")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    a = ap.parse_args(argv)
    opts = SinkOptions(directory=a.dir, pipelining=not a.no_pipelining, fsync=not a.no_fsync)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(a.host, a.port, opts, a.max_seconds))
    else:
        uvloop.run(_serve(a.host, a.port, opts, a.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
