"""`mailroom [-c CONFIG_DIR] COMMAND ...`: every command ends in 0 or one `mailroom: error:` line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mailroom import __version__
from mailroom.cli import admin, check, directory, init, postconf, queue, serve
from mailroom.cli.errors import CommandError
from mailroom.config.maincf import ConfigError
from mailroom.config.settings import Config
from mailroom.directory.base import DirectoryError

DEFAULT_CONFIG_DIR = "/etc/mailroom"


class _Parser(argparse.ArgumentParser):
    """argparse, but its usage errors are one line too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError(f"{message} (try 'mailroom --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailroom", description="mailroom — a mail server that speaks Postfix's and Dovecot's language")
    parser.add_argument(
        "-c",
        dest="config_dir",
        default=os.environ.get("MAILROOM_CONFIG_DIR") or DEFAULT_CONFIG_DIR,
        help="configuration directory holding main.cf (default: $MAILROOM_CONFIG_DIR or /etc/mailroom)",
    )
    parser.add_argument("--version", action="version", version=f"mailroom {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    init.add_parser(sub)
    postconf.add_parser(sub)
    check.add_parser(sub)
    admin.add_parsers(sub)
    directory.add_parsers(sub)
    serve.add_parsers(sub)
    queue.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "needs_config", True):
            args.config = Config.load(Path(args.config_dir))
        return int(args.func(args))
    except CommandError as exc:
        return _fail(str(exc))
    except (ConfigError, DirectoryError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:
        return 1
    except OSError as exc:
        return _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
    except Exception as exc:  # the promise is one line, never a traceback
        if os.environ.get("MAILROOM_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (set MAILROOM_DEBUG=1 for a traceback)")


def _fail(message: str) -> int:
    print(f"mailroom: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
