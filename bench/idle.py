#!/usr/bin/env python3
"""Idle-connection memory: open K SMTP sessions, hold them, read the server's RSS.

Answers "what does one waiting client cost?" — the figure that decides how many
connections a small VPS can hold (C10k). Each connection reads the 220 banner and then
sits idle; after ``--hold`` seconds the server's VmRSS (/proc/PID/status) is compared
with its value before the first connect. Only meant for 127.0.0.1/::1; bounded by
per-connect timeouts and the hold time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.smtp_load import run_with_best_loop  # noqa: E402

MAX_CONNECTIONS = 10000


def raise_nofile(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; returns the new soft limit.

    Children (the server started by run.py) inherit it, so run.py calls this first.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class IdleResult:
    """What the hold measured (JSON-friendly)."""

    requested: int = 0
    opened: int = 0
    failed: int = 0
    hold_seconds: float = 0.0
    open_seconds: float = 0.0
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    kb_per_connection: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


async def hold_idle(
    host: str,
    port: int,
    count: int,
    hold_seconds: float = 3.0,
    server_pid: int | None = None,
    connect_parallel: int = 100,
    timeout: float = 10.0,
) -> IdleResult:
    """Open ``count`` sessions (at most ``connect_parallel`` connecting at once), hold, measure."""
    count = max(0, min(count, MAX_CONNECTIONS))
    raise_nofile(count + 100)
    res = IdleResult(requested=count, hold_seconds=hold_seconds)
    rss0 = read_rss_kb(server_pid) if server_pid else None
    writers: list[asyncio.StreamWriter] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(connect_parallel)

    async def open_one() -> None:
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (TimeoutError, OSError) as exc:
                key = f"connect: {type(exc).__name__} {exc}"[:100]
                errors[key] = errors.get(key, 0) + 1
                return
            writers.append(writer)
            try:
                banner = await asyncio.wait_for(reader.readline(), timeout)
            except (TimeoutError, OSError) as exc:
                banner = f"{type(exc).__name__}".encode()
            if not banner.startswith(b"220"):
                key = f"banner: {banner[:80].decode('utf-8', 'replace').strip() or 'closed'}"
                errors[key] = errors.get(key, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(count)))
    res.open_seconds = time.perf_counter() - t0
    res.failed = sum(errors.values())
    res.opened = count - res.failed
    await asyncio.sleep(hold_seconds)
    rss1 = read_rss_kb(server_pid) if server_pid else None
    for w in writers:
        with contextlib.suppress(Exception):
            w.write(b"QUIT\r\n")
        w.close()
    for w in writers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.wait_closed(), 1.0)
    res.errors = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:20])
    if rss0 is not None and rss1 is not None:
        res.rss_before_mb = rss0 / 1024
        res.rss_after_mb = rss1 / 1024
        if res.opened:
            res.kb_per_connection = (rss1 - rss0) / res.opened
    return res


def format_idle(res: IdleResult, label: str = "") -> list[str]:
    """Human lines, one figure each."""
    p = f"{label}: " if label else ""
    out = [f"{p}idle connections: {res.opened}/{res.requested} held {res.hold_seconds:.1f} s (opened in {res.open_seconds:.2f} s)"]
    if res.rss_after_mb is not None and res.rss_before_mb is not None:
        out.append(f"{p}server RSS: {res.rss_after_mb:.1f} MB total ({res.rss_before_mb:.1f} MB before)")
    if res.kb_per_connection is not None:
        out.append(f"{p}server RSS per idle connection: {res.kb_per_connection:.1f} KB")
    out += [f"{p}error x{n}: {k}" for k, n in res.errors.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: exit 0 when every connection got its banner."""
    ap = argparse.ArgumentParser(description="hold K idle SMTP connections and read the server's RSS")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("-k", "--connections", type=int, default=2000, help=f"at most {MAX_CONNECTIONS}")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to hold them")
    ap.add_argument("--server-pid", type=int)
    a = ap.parse_args(argv)
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("this benchmark only targets 127.0.0.1, ::1 or localhost")
    res: IdleResult = run_with_best_loop(
        lambda: hold_idle(a.host, a.port, a.connections, a.hold, a.server_pid)
    )
    for line in format_idle(res):
        print(line)
    print(json.dumps(asdict(res), sort_keys=True))
    return 0 if res.opened == res.requested else 1


if __name__ == "__main__":
    sys.exit(main())
