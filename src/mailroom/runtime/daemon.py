"""`mailroom serve`: one event loop, every configured listener, signals like a daemon.

Start-up order: logging, pid file, directory, spool + queue manager, listeners (a
listener that cannot bind ends start-up with one line and exit 1). SIGHUP re-reads
main.cf and hands the new Config to every service (an invalid main.cf is logged and
the old one kept); SIGTERM/SIGINT close the listeners, give sessions
`shutdown_timeout` to finish, stop the queue manager and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from mailroom.config.maincf import ConfigError
from mailroom.config.registry import PARAMETERS
from mailroom.config.settings import Config
from mailroom.runtime.log import get_logger, setup_logging
from mailroom.runtime.pidfile import PID_FILE, PidFileError, acquire, release
from mailroom.runtime.services import StartupError, build_runtime

log = get_logger("master")


def run_server(config_dir: Path, config: Config) -> int:
    setup_logging(str(config.path("maillog_file")) if config["maillog_file"] else "")
    pid_path = config.path("data_directory") / PID_FILE
    try:
        acquire(pid_path)
    except (PidFileError, OSError) as exc:
        print(f"mailroom: error: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            return int(asyncio.run(_main(config_dir, config)))
        return int(uvloop.run(_main(config_dir, config)))
    except StartupError as exc:
        print(f"mailroom: error: {exc}", file=sys.stderr)
        return 1
    finally:
        release(pid_path)


async def _main(config_dir: Path, config: Config) -> int:
    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()
    runtime = await build_runtime(config)
    try:
        await runtime.start()
    except BaseException:
        await runtime.stop(0.0)
        raise

    def on_hup() -> None:
        try:
            new_config = Config.load(config_dir)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        changed = [
            name
            for name, param in PARAMETERS.items()
            if param.restart and new_config.raw(name) != runtime.config.raw(name)
        ]
        for name in changed:
            log.warning("reload: %s changed; the new value takes effect after a restart", name)
        setup_logging(str(new_config.path("maillog_file")) if new_config["maillog_file"] else "")
        runtime.reload(new_config)
        log.info("reload -- version configuration %s", new_config.filename)

    def on_usr1() -> None:
        log.info("flush requested: retrying every queued message now")
        runtime.queue_manager.flush()

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    loop.add_signal_handler(signal.SIGTERM, stop_event.set)
    loop.add_signal_handler(signal.SIGINT, stop_event.set)
    log.info("daemon started -- mailroom, configuration %s", config.filename)
    await stop_event.wait()
    log.info("terminating on signal")
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    await runtime.stop(float(runtime.config["shutdown_timeout"]))
    return 0
