#!/usr/bin/env python3
"""`make bench`: mailroom's SMTP throughput and memory, next to a trivial baseline.

Steps (all on 127.0.0.1, free ports, temp directories removed at the end):
1. ``mailroom init --demo`` in a temp dir; only the MX listener on a free port.
2. ``mailroom serve`` in the background; wait (bounded) until it accepts.
3. BASELINE: bench/sink.py (accepts everything, fsyncs each message) with the same
   generator parameters; then the same load against mailroom into john's Maildir.
4. Idle connections held against both (server RSS per connection).
5. Postfix's ``smtp-source`` against mailroom when it is on PATH (a cross-check of
   the generator).
6. MAILBOX (bench/mailbox.py): IMAP and POP3 on a generated 10,000-message Maildir,
   beside a private Dovecot on an identical copy when ``dovecot`` is on PATH.
Prints one line per figure, the mailroom/baseline and mailroom/Dovecot ratios, then
one JSON line. ``--only smtp`` or ``--only mailbox`` runs one part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` from the repo root
from bench.idle import IdleResult, format_idle, hold_idle, raise_nofile  # noqa: E402
from bench.mailbox import MailboxBenchError, run_mailbox  # noqa: E402
from bench.smtp_load import (  # noqa: E402
    LoadConfig,
    LoadResult,
    count_maildir,
    format_result,
    run_load,
    run_with_best_loop,
)

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
OFF_LISTENERS = ("submission_listen", "submissions_listen", "imap_listen", "imaps_listen", "pop3_listen", "pop3s_listen")


class BenchError(Exception):
    """Ends the run with one line (and whatever output was attached)."""


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until ``port`` answers with a 220 banner while ``proc`` is alive (bounded).

    The banner check matters: another program holding the port would otherwise
    pass for the server we started.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0) as s:
            s.settimeout(2.0)
            if s.recv(512).startswith(b"220") and proc.poll() is None:
                return True
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    """SIGTERM, bounded wait, then SIGKILL; returns the exit code."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5.0)


def tail(path: Path, lines: int = 30) -> str:
    """The end of a log file, for error reports."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def mailroom(cfg_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a mailroom admin command (same interpreter, so the editable install is used)."""
    return subprocess.run(
        [sys.executable, "-m", "mailroom", "-c", str(cfg_dir), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def maildir_of(cfg_dir: Path) -> Path:
    """john@example.org's Maildir under the configured virtual_mailbox_base."""
    try:
        from mailroom.config.settings import Config

        base = Path(Config.load(cfg_dir).path("virtual_mailbox_base"))
    except Exception:  # the layout of init --demo, if the config API moves
        base = cfg_dir / "vmail"
    return base / "example.org" / "john" / "Maildir"


def start_mailroom(tmp: Path, port: int, client_limit: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """init --demo, postconf, serve; returns (process, config dir, log file)."""
    cfg = tmp / "mailroom"
    r = mailroom(cfg, "init", "--demo", "--hostname", "bench.example.org")
    if r.returncode != 0:
        raise BenchError(f"mailroom init failed: {r.stderr.strip() or r.stdout.strip()}")
    settings = [f"smtp_listen={HOST}:{port}", *(f"{name}=" for name in OFF_LISTENERS),
                "smtpd_client_connection_count_limit=0", f"smtpd_client_limit={client_limit}"]
    r = mailroom(cfg, "postconf", "-e", *settings)
    if r.returncode != 0:
        raise BenchError(f"mailroom postconf -e failed: {r.stderr.strip()}")
    log = tmp / "mailroom.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailroom", "-c", str(cfg), "serve"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    if not wait_port(port, proc, START_TIMEOUT):
        stop(proc)
        sys.stderr.write(tail(log) + "\n")
        why = f"exited {proc.returncode}" if proc.returncode not in (None, -signal.SIGTERM) else f"no 220 banner within {START_TIMEOUT:.0f}s"
        raise BenchError(f"mailroom serve on {HOST}:{port} failed to start ({why}); its log is above")
    return proc, cfg, log


def start_sink(tmp: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """bench/sink.py as its own process (so its CPU and RSS can be read like mailroom's)."""
    out_dir = tmp / "sink"
    log = tmp / "sink.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("sink.py")), "--host", HOST,
             "--port", str(port), "--dir", str(out_dir), "--max-seconds", "3600"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    if not wait_port(port, proc, START_TIMEOUT):
        stop(proc)
        raise BenchError(f"bench sink did not start: {tail(log, 5)}")
    return proc, out_dir


def load(args: argparse.Namespace, port: int, maildir: Path, pid: int) -> LoadResult:
    """One generator run with the shared parameters."""
    cfg = LoadConfig(
        host=HOST, port=port, messages=args.messages, concurrency=args.concurrency,
        size=args.size, per_connection=args.per_connection, maildir=maildir, server_pid=pid,
        delivery_timeout=args.delivery_timeout,
    )
    result: LoadResult = run_with_best_loop(lambda: run_load(cfg))
    return result


def relay(
    args: argparse.Namespace, tmp: Path, port: int, cfg_dir: Path, server: subprocess.Popen[bytes]
) -> LoadResult | None:
    """Outbound: route example.com to a local sink, reload, relay N messages to it.

    127.0.0.1 is in the demo's mynetworks, so the load is relayed without AUTH; the
    figure counts messages that reached the sink's directory (mailroom's SMTP client
    and queue manager end to end).
    """
    if args.no_outbound:
        return None
    sink_port = free_port()
    (tmp / "outbound").mkdir(exist_ok=True)
    sink, sink_dir = start_sink(tmp / "outbound", sink_port)
    try:
        r = mailroom(cfg_dir, "postconf", "-e", f"transport_maps=inline:{{ example.com=smtp:[{HOST}]:{sink_port} }}")
        if r.returncode != 0:
            raise BenchError(f"mailroom postconf -e transport_maps failed: {r.stderr.strip()}")
        server.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # the reload is applied on the server's loop
        cfg = LoadConfig(
            host=HOST, port=port, messages=args.messages, concurrency=args.concurrency,
            size=args.size, per_connection=args.per_connection, maildir=sink_dir,
            server_pid=server.pid, recipient="lisa@example.com",
            delivery_timeout=args.delivery_timeout,
        )
        result: LoadResult = run_with_best_loop(lambda: run_load(cfg))
        return result
    finally:
        stop(sink)


def idle(args: argparse.Namespace, port: int, pid: int) -> IdleResult | None:
    """Idle-connection RSS, unless --idle 0."""
    if args.idle <= 0:
        return None
    result: IdleResult = run_with_best_loop(lambda: hold_idle(HOST, port, args.idle, args.hold, pid))
    return result


def smtp_source(args: argparse.Namespace, port: int, maildir: Path) -> dict[str, Any] | None:
    """Postfix's smtp-source against mailroom, timed to the last Maildir file (if installed)."""
    exe = shutil.which("smtp-source")
    if exe is None:
        return None
    before = count_maildir(maildir)
    cmd = [exe, "-s", str(args.concurrency), "-m", str(args.messages), "-l", str(args.size),
           "-f", "sender@example.net", "-t", "john@example.org", f"{HOST}:{port}"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "smtp-source timed out"}
    sent_s = time.perf_counter() - t0
    deadline = time.perf_counter() + args.delivery_timeout
    while count_maildir(maildir) - before < args.messages and time.perf_counter() < deadline:
        time.sleep(0.005)
    e2e_s = time.perf_counter() - t0
    delivered = count_maildir(maildir) - before
    return {
        "exit": r.returncode, "stderr": r.stderr.strip()[-300:], "seconds": sent_s,
        "per_s": args.messages / sent_s if sent_s > 0 else 0.0, "delivered": delivered,
        "e2e_per_s": delivered / e2e_s if e2e_s > 0 else 0.0,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a/b when both are known and b is not zero."""
    return a / b if a is not None and b else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Generator parameters shared by both runs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", "--messages", type=int, default=2000)
    ap.add_argument("-c", "--concurrency", type=int, default=20)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--per-connection", type=int, default=1)
    ap.add_argument("--idle", type=int, default=2000, help="idle connections to hold (0 = skip, max 10000)")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to hold the idle connections")
    ap.add_argument("--delivery-timeout", type=float, default=120.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the sink baseline")
    ap.add_argument("--no-outbound", action="store_true", help="skip the outbound (relay to a sink) figure")
    ap.add_argument("--only", choices=("smtp", "mailbox"), help="run one part (default: both)")
    ap.add_argument("--mailbox-messages", type=int, default=10000, help="messages in the IMAP/POP3 mailbox")
    ap.add_argument("--mailbox-seed", type=int, default=1, help="seed of the generated mailbox")
    ap.add_argument("--mailbox-runs", type=int, default=3, help="warm runs (best counts) after the cold one")
    ap.add_argument("--no-dovecot", action="store_true", help="mailbox part without Dovecot's column")
    ap.add_argument("--mailbox-scheme", default="PLAIN",
                    help="john's password scheme on both servers (PLAIN, SHA512-CRYPT, ARGON2ID...)")
    return ap.parse_args(argv)


def smtp_part(args: argparse.Namespace, tmp: Path, report: dict[str, Any]) -> bool:
    """Baseline, inbound, idle, outbound, smtp-source; True when mailroom took every message."""
    server: subprocess.Popen[bytes] | None = None
    sink: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        server, cfg_dir, log = start_mailroom(tmp, port, max(args.idle, args.concurrency) + 100)
        maildir = maildir_of(cfg_dir)
        print(f"mailroom pid {server.pid} on {HOST}:{port}; {args.messages} msgs x {args.size} B, "
              f"{args.concurrency} sessions, {args.per_connection}/connection", flush=True)

        base: LoadResult | None = None
        base_idle: IdleResult | None = None
        if not args.no_baseline:
            sink_port = free_port()
            sink, sink_dir = start_sink(tmp, sink_port)
            base = load(args, sink_port, sink_dir, sink.pid)
            print("\n".join(format_result(base, "baseline")), flush=True)
            base_idle = idle(args, sink_port, sink.pid)
            if base_idle:
                print("\n".join(format_idle(base_idle, "baseline")), flush=True)
            stop(sink)
            sink = None
            report["baseline"] = asdict(base)
            report["baseline_idle"] = asdict(base_idle) if base_idle else None

        mr = load(args, port, maildir, server.pid)
        print("\n".join(format_result(mr, "mailroom")), flush=True)
        report["mailroom"] = asdict(mr)
        mr_idle = idle(args, port, server.pid)
        if mr_idle:
            print("\n".join(format_idle(mr_idle, "mailroom")), flush=True)
        report["mailroom_idle"] = asdict(mr_idle) if mr_idle else None

        outbound = relay(args, tmp, port, cfg_dir, server)
        if outbound is not None:
            print("\n".join(format_result(outbound, "outbound")), flush=True)
            report["outbound"] = asdict(outbound)

        src = smtp_source(args, port, maildir)
        if src is not None:
            print(f"smtp-source: {src.get('per_s', 0):.1f} msg/s sent, {src.get('e2e_per_s', 0):.1f} msg/s "
                  f"end-to-end, {src.get('delivered')} delivered, exit {src.get('exit')}")
        else:
            print("smtp-source: not on PATH (apt install postfix to cross-check), skipped")
        report["smtp_source"] = src

        if base is not None:
            ratios = {
                "accepted_per_s": ratio(mr.accepted_per_s, base.accepted_per_s),
                "e2e_per_s": ratio(mr.e2e_per_s, base.e2e_per_s),
                "server_cpu_ms_per_msg": ratio(mr.server_cpu_ms_per_msg, base.server_cpu_ms_per_msg),
                "kb_per_idle_connection": ratio(mr_idle.kb_per_connection if mr_idle else None,
                                                base_idle.kb_per_connection if base_idle else None),
            }
            report["ratio_mailroom_over_baseline"] = ratios
            for name, value in ratios.items():
                print(f"ratio mailroom/baseline {name}: " + (f"{value:.2f}" if value is not None else "n/a"))
        code = stop(server)
        server = None
        if code not in (0, None):
            print(f"warning: mailroom exited {code} on SIGTERM; log tail:\n{tail(log, 10)}")
        report["mailroom_exit"] = code
        ok = mr.accepted == args.messages and mr.e2e_per_s is not None
        if not ok:
            print(f"bench: error: mailroom accepted {mr.accepted}/{args.messages}, "
                  f"delivered {mr.delivered}; log tail:\n{tail(log, 10)}", file=sys.stderr)
        return ok
    finally:
        stop(sink)
        stop(server)


def mailbox_part(args: argparse.Namespace, tmp: Path, report: dict[str, Any]) -> bool:
    """IMAP and POP3 beside Dovecot; True when mailroom's answers were all correct."""
    (tmp / "mailbox").mkdir()
    try:
        result, ok = run_mailbox(tmp / "mailbox", messages=args.mailbox_messages, seed=args.mailbox_seed,
                                 runs=max(1, args.mailbox_runs), dovecot=not args.no_dovecot,
                                 scheme=args.mailbox_scheme)
    except MailboxBenchError as exc:
        raise BenchError(str(exc)) from exc
    report["mailbox"] = result
    if not ok:
        print("bench: error: mailroom's IMAP/POP3 answers were wrong or incomplete (see checks above)",
              file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for; exit 1 with one line when mailroom cannot be benchmarked."""
    args = parse_args(argv)
    args.idle = min(args.idle, 10000)
    if args.only != "mailbox":
        raise_nofile(args.idle + args.concurrency + 1000)  # the servers inherit it
    tmp = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    report: dict[str, Any] = {"params": {k: v for k, v in vars(args).items()}}
    try:
        ok = True
        if args.only in (None, "smtp"):
            ok = smtp_part(args, tmp, report) and ok
        if args.only in (None, "mailbox"):
            ok = mailbox_part(args, tmp, report) and ok
        print(json.dumps(report, sort_keys=True, default=str))
        return 0 if ok else 1
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
