"""`mailroom serve|reload|stop`: the server process and the signals that steer it."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from mailroom.cli.errors import CommandError
from mailroom.config.settings import Config
from mailroom.runtime.pidfile import PID_FILE, read_pid

STOP_WAIT_SECONDS = 30.0  # how long `mailroom stop` waits for the server to exit


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run all configured listeners and the queue manager in the foreground")
    p.set_defaults(func=serve)
    p = sub.add_parser("reload", help="make the running server re-read main.cf (SIGHUP)")
    p.set_defaults(func=reload)
    p = sub.add_parser("stop", help="stop the running server (SIGTERM) and wait for it")
    p.set_defaults(func=stop)


def serve(args: argparse.Namespace) -> int:
    from mailroom.runtime.daemon import run_server

    return run_server(Path(args.config_dir), args.config)


def _running_pid(config: Config) -> int:
    pid_path = config.path("data_directory") / PID_FILE
    pid = read_pid(pid_path)
    if pid is None:
        raise CommandError(f"mailroom is not running (no live pid in {pid_path})")
    return pid


def reload(args: argparse.Namespace) -> int:
    pid = _running_pid(args.config)
    os.kill(pid, signal.SIGHUP)
    print(f"mailroom: reload signal sent to pid {pid}")
    return 0


def stop(args: argparse.Namespace) -> int:
    pid = _running_pid(args.config)
    pid_path = args.config.path("data_directory") / PID_FILE
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while time.monotonic() < deadline:
        # The server removes its pid file as its last act; an exited but not yet
        # reaped process still answers kill(pid, 0), so the file is the better sign.
        if read_pid(pid_path) != pid:
            print(f"mailroom: stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    raise CommandError(f"pid {pid} did not stop within {STOP_WAIT_SECONDS:.0f}s")
