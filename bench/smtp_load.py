#!/usr/bin/env python3
"""SMTP load generator: N messages of S bytes over C concurrent sessions.

Like Postfix's ``smtp-source -s C -m N -l S``: by default one message per connection,
so connection set-up (banner, EHLO, policy) is part of what is measured. It pipelines
MAIL/RCPT/DATA when the server offers PIPELINING, counts replies, and reports

* accepted messages/s — from the first connect to the last ``250`` after DATA;
* end-to-end messages/s — until the target Maildir's ``new/`` + ``cur/`` holds every
  accepted message (a server that queues first delivers after its ``250``);
* server CPU ms per message (``--server-pid``), from /proc/PID/stat.

Importable (``run_load``) and a CLI; every wait is bounded by a timeout, so it always
stops by itself. Only meant for 127.0.0.1/::1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CRLF = b"\r\n"
MAX_ERROR_KINDS = 20  # distinct error texts kept; the rest are lumped together
MAX_REPLY_LINES = 100  # a reply longer than this is a protocol error, not a reply


class SMTPProtocolError(Exception):
    """The peer sent something that is not an SMTP reply (or closed mid-reply)."""


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """Reply as one short line, for error reports."""
        return f"{self.code} {' / '.join(self.lines)}"[:120]


def parse_reply_line(line: bytes) -> tuple[int, bool, str]:
    """Split one reply line into (code, is_last, text); raises on garbage.

    RFC 5321 4.2: ``ddd-text`` continues, ``ddd text`` or bare ``ddd`` ends the reply.
    """
    s = line.rstrip(b"\r\n").decode("utf-8", "replace")
    if len(s) < 3 or not s[:3].isdigit() or (len(s) > 3 and s[3] not in " -"):
        raise SMTPProtocolError(f"bad reply line {s[:80]!r}")
    return int(s[:3]), len(s) == 3 or s[3] == " ", s[4:]


def build_message(size: int, seq: int, sender: str, recipient: str) -> bytes:
    """A message of about ``size`` bytes, CRLF lines, already dot-safe, ending in CRLF.

    Body lines never start with '.', so no dot-stuffing is needed; the size counts
    headers and body (as smtp-source's -l does for the body only, roughly).
    """
    header = (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: bench message {seq}\r\n"
        f"Message-ID: <bench.{seq}.{os.getpid()}@bench.invalid>\r\n"
        f"\r\n"
    ).encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + CRLF
    remaining = max(size - len(header), len(CRLF))
    full, rest = divmod(remaining, len(line))
    body = line * full
    if rest:
        body += b"x" * max(rest - 2, 0) + CRLF
    return header + body


def ehlo_keywords(reply: Reply) -> set[str]:
    """Upper-case EHLO keywords (first word of every line but the greeting line)."""
    return {ln.split()[0].upper() for ln in reply.lines[1:] if ln.split()}


def count_maildir(path: Path | None) -> int:
    """Files in a Maildir's new/ and cur/ (0 when it does not exist yet)."""
    if path is None:
        return 0
    total = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError), os.scandir(path / sub) as it:
            total += sum(1 for e in it if not e.name.startswith("."))
    return total


def proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process in seconds, or None when it is gone/unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may contain spaces
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class LoadConfig:
    """What to send, where, and how hard."""

    host: str = "127.0.0.1"
    port: int = 2525
    messages: int = 2000
    concurrency: int = 20
    size: int = 5000
    sender: str = "sender@example.net"
    recipient: str = "john@example.org"
    per_connection: int = 1
    helo: str = "bench.example.net"
    starttls: bool = False
    auth: str | None = None  # "user:pass", AUTH PLAIN
    maildir: Path | None = None
    server_pid: int | None = None
    io_timeout: float = 30.0  # per read/connect
    delivery_timeout: float = 60.0  # for the Maildir to fill after the last reply
    total_timeout: float = 600.0  # the whole sending phase


@dataclass
class LoadResult:
    """Counters and figures of one run (JSON-friendly)."""

    messages: int = 0
    accepted: int = 0
    failed: int = 0
    connections: int = 0
    connection_errors: int = 0
    pipelining: bool | None = None
    send_seconds: float = 0.0
    accepted_per_s: float = 0.0
    delivered: int | None = None
    e2e_seconds: float | None = None
    e2e_per_s: float | None = None
    server_cpu_ms_per_msg: float | None = None
    client_cpu_ms_per_msg: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class _Stats:
    """Shared mutable counters for the sessions of one run."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.accepted = 0
        self.failed = 0
        self.connections = 0
        self.connection_errors = 0
        self.pipelining: bool | None = None
        self.first_connect: float | None = None
        self.last_accept: float | None = None
        self.errors: Counter[str] = Counter()

    def error(self, kind: str, n: int = 1) -> None:
        """Count ``n`` failed messages under a bounded set of error texts."""
        self.failed += n
        if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
            kind = "(other errors)"
        self.errors[kind] += n

    def take(self, k: int) -> int:
        """Claim up to ``k`` messages for one connection; 0 when none are left."""
        n = min(k, self.remaining)
        self.remaining -= n
        return n


class _Session:
    """One SMTP connection sending a few messages; never raises to its caller."""

    def __init__(self, cfg: LoadConfig, stats: _Stats, seq0: int) -> None:
        self.cfg = cfg
        self.stats = stats
        self.seq0 = seq0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.closing = False  # the server said 421: it is ending the session

    async def _read_reply(self) -> Reply:
        assert self.reader is not None
        lines: list[str] = []
        for _ in range(MAX_REPLY_LINES):
            raw = await asyncio.wait_for(self.reader.readline(), self.cfg.io_timeout)
            if not raw.endswith(b"\n"):
                raise SMTPProtocolError("connection closed by server")
            code, last, text = parse_reply_line(raw)
            lines.append(text)
            if last:
                self.closing = self.closing or code == 421
                return Reply(code, tuple(lines))
        raise SMTPProtocolError("reply too long")

    async def _command(self, line: str) -> Reply:
        assert self.writer is not None
        self.writer.write(line.encode() + CRLF)
        await self.writer.drain()
        return await self._read_reply()

    async def _handshake(self) -> tuple[bool, str | None]:
        """Banner, EHLO (HELO fallback), STARTTLS, AUTH; returns (pipelining, error)."""
        greeting = await self._read_reply()
        if greeting.code != 220:
            return False, f"banner {greeting.text}"
        ehlo = await self._command(f"EHLO {self.cfg.helo}")
        if ehlo.code != 250:
            helo = await self._command(f"HELO {self.cfg.helo}")
            if helo.code != 250:
                return False, f"HELO {helo.text}"
            if self.cfg.starttls or self.cfg.auth:
                return False, "EHLO refused; cannot STARTTLS/AUTH"
            return False, None
        keywords = ehlo_keywords(ehlo)
        if self.cfg.starttls:
            if "STARTTLS" not in keywords:
                return False, "server does not offer STARTTLS"
            r = await self._command("STARTTLS")
            if r.code != 220:
                return False, f"STARTTLS {r.text}"
            assert self.writer is not None
            ctx = ssl.create_default_context()
            ctx.check_hostname = False  # benchmark against a self-signed test certificate
            ctx.verify_mode = ssl.CERT_NONE
            await asyncio.wait_for(self.writer.start_tls(ctx), self.cfg.io_timeout)
            ehlo = await self._command(f"EHLO {self.cfg.helo}")
            if ehlo.code != 250:
                return False, f"EHLO after STARTTLS {ehlo.text}"
            keywords = ehlo_keywords(ehlo)
        if self.cfg.auth:
            user, _, password = self.cfg.auth.partition(":")
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            r = await self._command(f"AUTH PLAIN {token}")
            if r.code != 235:
                return False, f"AUTH {r.text}"
        return "PIPELINING" in keywords, None

    async def _envelope(self, pipelining: bool) -> tuple[bool, str | None]:
        """MAIL, RCPT, DATA (one write when pipelining); (got 354, error text)."""
        assert self.writer is not None
        mail = f"MAIL FROM:<{self.cfg.sender}>"
        rcpt = f"RCPT TO:<{self.cfg.recipient}>"
        if pipelining:
            self.writer.write(f"{mail}\r\n{rcpt}\r\nDATA\r\n".encode())
            await self.writer.drain()
            replies = [await self._read_reply() for _ in range(3)]
        else:
            replies = []
            for cmd, ok in ((mail, 250), (rcpt, 250), ("DATA", 354)):
                r = await self._command(cmd)
                replies.append(r)
                if r.code != ok:
                    break
        names = ("MAIL", "RCPT", "DATA")
        error = next(
            (f"{n} {r.text}" for n, r, ok in zip(names, replies, (250, 250, 354), strict=False) if r.code // 100 != ok // 100),
            None,
        )
        got_354 = len(replies) == 3 and replies[2].code == 354
        return got_354, error

    async def run(self, count: int) -> None:
        """Send ``count`` messages on one connection; count every one as ok or failed."""
        cfg, stats = self.cfg, self.stats
        sent = 0
        now = time.perf_counter()
        if stats.first_connect is None:
            stats.first_connect = now
        stats.connections += 1
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.host, cfg.port, limit=1 << 16), cfg.io_timeout
            )
            pipelining, error = await self._handshake()
            if stats.pipelining is None and error is None:
                stats.pipelining = pipelining
            if error:
                stats.error(error, count)
                sent = count
                await self._quit()
                return
            for i in range(count):
                got_354, error = await self._envelope(pipelining)
                if got_354:
                    body = build_message(cfg.size, self.seq0 + i, cfg.sender, cfg.recipient)
                    assert self.writer is not None
                    # the server said 354 even if MAIL/RCPT failed (pipelined): finish DATA
                    self.writer.write(body + b".\r\n" if error is None else b".\r\n")
                    await self.writer.drain()
                    r = await self._read_reply()
                    if error is None and r.code == 250:
                        stats.accepted += 1
                        stats.last_accept = time.perf_counter()
                    elif error is None:
                        error = f"end of DATA {r.text}"
                sent += 1
                if error is not None:
                    stats.error(error)
                    if self.closing:
                        break
                    if i + 1 < count:
                        await self._command("RSET")
            await self._quit()
        except Exception as exc:  # resets, timeouts, TLS and protocol errors: never lose a count
            stats.connection_errors += 1
            kind = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            if count - sent > 0:
                stats.error(kind[:120], count - sent)
            sent = count
        finally:
            if sent < count:  # a 421 ended the session early
                stats.error("session ended (421) before this message", count - sent)
            if self.writer is not None:
                self.writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    async def _quit(self) -> None:
        """QUIT politely; a server that just hangs up is fine too."""
        with contextlib.suppress(Exception):
            assert self.writer is not None
            self.writer.write(b"QUIT\r\n")
            await self.writer.drain()
            await asyncio.wait_for(self._read_reply(), min(self.cfg.io_timeout, 5.0))


async def run_load(cfg: LoadConfig) -> LoadResult:
    """Run one load test and return its figures (see the module docstring)."""
    if cfg.messages < 0 or cfg.concurrency < 1 or cfg.per_connection < 1:
        raise ValueError("messages >= 0, concurrency >= 1, per_connection >= 1")
    stats = _Stats(cfg.messages)
    maildir_before = count_maildir(cfg.maildir)
    cpu_before = proc_cpu_seconds(cfg.server_pid) if cfg.server_pid else None
    ru_before = resource.getrusage(resource.RUSAGE_SELF)
    seq = 0

    async def worker() -> None:
        nonlocal seq
        # bounded: every iteration claims at least one of the finitely many messages
        while (n := stats.take(cfg.per_connection)) > 0:
            seq += n
            await _Session(cfg, stats, seq - n).run(n)

    tasks = [asyncio.create_task(worker()) for _ in range(min(cfg.concurrency, max(cfg.messages, 1)))]
    _done, pending = await asyncio.wait(tasks, timeout=cfg.total_timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        unaccounted = cfg.messages - stats.accepted - stats.failed
        if unaccounted > 0:
            stats.error("total timeout", unaccounted)
    t_end_send = time.perf_counter()
    start = stats.first_connect or t_end_send

    res = LoadResult(
        messages=cfg.messages,
        accepted=stats.accepted,
        failed=stats.failed,
        connections=stats.connections,
        connection_errors=stats.connection_errors,
        pipelining=stats.pipelining,
        errors=dict(stats.errors.most_common()),
    )
    if stats.last_accept is not None:
        res.send_seconds = stats.last_accept - start
        res.accepted_per_s = stats.accepted / res.send_seconds if res.send_seconds > 0 else 0.0

    if cfg.maildir is not None:
        target = maildir_before + stats.accepted
        deadline = time.perf_counter() + cfg.delivery_timeout
        have = count_maildir(cfg.maildir)
        while have < target and time.perf_counter() < deadline:  # bounded poll
            await asyncio.sleep(0.005)
            have = count_maildir(cfg.maildir)
        res.delivered = have - maildir_before
        if have >= target and stats.accepted:
            res.e2e_seconds = time.perf_counter() - start
            res.e2e_per_s = stats.accepted / res.e2e_seconds

    if cfg.server_pid and cpu_before is not None:
        cpu_after = proc_cpu_seconds(cfg.server_pid)
        if cpu_after is not None and cfg.messages:
            res.server_cpu_ms_per_msg = (cpu_after - cpu_before) * 1000 / cfg.messages
    ru = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (ru.ru_utime - ru_before.ru_utime) + (ru.ru_stime - ru_before.ru_stime)
    res.client_cpu_ms_per_msg = client_cpu * 1000 / cfg.messages if cfg.messages else 0.0
    return res


def format_result(res: LoadResult, label: str = "") -> list[str]:
    """Human lines, one figure each (the caller prints the JSON line)."""
    p = f"{label}: " if label else ""
    out = [
        f"{p}messages: {res.messages} accepted: {res.accepted} failed: {res.failed} "
        f"connections: {res.connections} (errors {res.connection_errors}) pipelining: {res.pipelining}",
        f"{p}accepted: {res.accepted_per_s:.1f} msg/s ({res.send_seconds:.3f} s first connect -> last 250)",
    ]
    if res.delivered is not None:
        if res.e2e_per_s is not None and res.e2e_seconds is not None:
            out.append(f"{p}end-to-end: {res.e2e_per_s:.1f} msg/s ({res.e2e_seconds:.3f} s until all {res.accepted} in Maildir)")
        else:
            out.append(f"{p}end-to-end: INCOMPLETE, {res.delivered}/{res.accepted} in Maildir before timeout")
    if res.server_cpu_ms_per_msg is not None:
        out.append(f"{p}server CPU: {res.server_cpu_ms_per_msg:.3f} ms/msg")
    out.append(f"{p}client CPU: {res.client_cpu_ms_per_msg:.3f} ms/msg")
    for kind, n in res.errors.items():
        out.append(f"{p}error x{n}: {kind}")
    return out


def run_with_best_loop(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """uvloop when installed (as the server uses), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


def parse_args(argv: list[str] | None = None) -> LoadConfig:
    """CLI flags -> LoadConfig (smtp-source-like names where they exist)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("-n", "--messages", type=int, default=2000)
    ap.add_argument("-c", "--concurrency", type=int, default=20)
    ap.add_argument("--size", type=int, default=5000, help="message size in bytes")
    ap.add_argument("--from", dest="sender", default="sender@example.net")
    ap.add_argument("--to", dest="recipient", default="john@example.org")
    ap.add_argument("--per-connection", type=int, default=1, help="messages per session")
    ap.add_argument("--helo", default="bench.example.net")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--auth", metavar="USER:PASS", help="AUTH PLAIN after EHLO")
    ap.add_argument("--maildir", type=Path, help="Maildir whose new/+cur/ should fill")
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--io-timeout", type=float, default=30.0)
    ap.add_argument("--delivery-timeout", type=float, default=60.0)
    ap.add_argument("--total-timeout", type=float, default=600.0)
    a = ap.parse_args(argv)
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("this benchmark only targets 127.0.0.1, ::1 or localhost")
    return LoadConfig(
        host=a.host, port=a.port, messages=a.messages, concurrency=a.concurrency, size=a.size,
        sender=a.sender, recipient=a.recipient, per_connection=a.per_connection, helo=a.helo,
        starttls=a.starttls, auth=a.auth, maildir=a.maildir, server_pid=a.server_pid,
        io_timeout=a.io_timeout, delivery_timeout=a.delivery_timeout, total_timeout=a.total_timeout,
    )


def result_json(res: LoadResult, **extra: Any) -> str:
    """The machine-readable line."""
    return json.dumps({**asdict(res), **extra}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: exit 0 when every message was accepted (and delivered, if watched)."""
    cfg = parse_args(argv)
    res: LoadResult = run_with_best_loop(lambda: run_load(cfg))
    for line in format_result(res):
        print(line)
    print(result_json(res))
    ok = res.accepted == cfg.messages and (cfg.maildir is None or res.e2e_per_s is not None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
