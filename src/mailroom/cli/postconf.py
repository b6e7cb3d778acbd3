"""`mailroom postconf`: Postfix's postconf for mailroom's main.cf (-n -d -h -e -X -x)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailroom.cli.errors import CommandError
from mailroom.config.maincf import NAME_RE, ConfigError, edit_text, parse_text, write_atomically
from mailroom.config.registry import PARAMETERS, READ_ONLY
from mailroom.config.settings import MAIN_CF, Config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("postconf", help="show or edit main.cf parameters (like Postfix's postconf)", add_help=False)
    p.add_argument("--help", action="help", help="show this help")
    p.add_argument("-n", dest="non_default", action="store_true", help="only parameters set in main.cf")
    p.add_argument("-d", dest="defaults", action="store_true", help="default values")
    p.add_argument("-h", dest="value_only", action="store_true", help="values only, without 'name = '")
    p.add_argument("-e", dest="edit", action="store_true", help="edit main.cf: name=value ...")
    p.add_argument("-X", dest="remove", action="store_true", help="remove parameters from main.cf")
    p.add_argument("-x", dest="expand", action="store_true", help="expand $name references")
    p.add_argument("names", nargs="*", metavar="name[=value]")
    p.set_defaults(func=run, needs_config=False)


def run(args: argparse.Namespace) -> int:
    config_dir = Path(args.config_dir)
    edits = [n for n in args.names if "=" in n]
    if args.edit or (edits and not args.remove):
        return _edit(config_dir, args.names)
    if args.remove:
        return _remove(config_dir, args.names)
    if args.defaults:
        config = None
    else:
        try:
            config = Config.load(config_dir, validate=False)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
    for d in config.unknown_names() if config else []:
        _warn(f"{config.filename if config else MAIN_CF}, line {d.line}: unused parameter: {d.name}={d.value}")
    names = args.names or sorted(
        config.explicit if (config and args.non_default) else set(PARAMETERS) | (set(config.explicit) if config else set())
    )
    status = 0
    for name in names:
        if args.defaults:
            param = PARAMETERS.get(name)
            value = param.default if param else None
            if value is not None and args.expand:
                value = _expand_default(name)
        else:
            assert config is not None
            if name not in PARAMETERS and name not in config.explicit:
                value = None
            else:
                value = config.explicit[name].value if name in config.explicit else config.raw(name)
                if args.expand:
                    try:
                        value = config.expanded(name) if name in PARAMETERS else value
                    except ConfigError as exc:
                        raise CommandError(str(exc)) from None
        if value is None:
            _warn(f"{name}: unknown parameter")
            continue
        print(value if args.value_only else (f"{name} = {value}" if value else f"{name} ="))
    return status


def _expand_default(name: str) -> str:
    from mailroom.config.maincf import expand

    return expand(PARAMETERS[name].default, lambda n: PARAMETERS[n].default if n in PARAMETERS else None)


def _warn(message: str) -> None:
    print(f"mailroom: warning: {message}", file=sys.stderr)


def _read(config_dir: Path) -> tuple[Path, str]:
    path = config_dir / MAIN_CF
    if not config_dir.is_dir():
        raise CommandError(f"{config_dir}: configuration directory does not exist")
    try:
        return path, path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror}") from None


def _edit(config_dir: Path, items: list[str]) -> int:
    """Validate every edit first, then write once; a bad item leaves main.cf untouched."""
    edits: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise CommandError(f"-e: missing '=' in '{item}' (expected name=value)")
        if not NAME_RE.match(name):
            raise CommandError(f"-e: bad parameter name '{name}'")
        if "\n" in value or "\r" in value:
            raise CommandError(f"-e: {name}: value must be one line")
        if name in READ_ONLY:
            raise CommandError(f"-e: {name} cannot be set in main.cf")
        edits[name] = value
    path, text = _read(config_dir)
    new_text = edit_text(text, edits)
    try:
        definitions = parse_text(new_text, str(path))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    candidate = Config(config_dir.resolve(), definitions, str(path))
    for name in edits:
        if name not in PARAMETERS:
            _warn(f"{path}: unused parameter: {name}={edits[name]}")
            continue
        try:
            candidate[name]
        except ConfigError as exc:
            raise CommandError(f"{exc} (main.cf not changed)") from None
    try:
        write_atomically(path, new_text)
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
    return 0


def _remove(config_dir: Path, names: list[str]) -> int:
    path, text = _read(config_dir)
    for name in names:
        if not NAME_RE.match(name):
            raise CommandError(f"-X: bad parameter name '{name}'")
    try:
        write_atomically(path, edit_text(text, dict.fromkeys(names)))
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
    return 0
