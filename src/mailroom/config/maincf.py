"""main.cf in Postfix's syntax: read, expand `$name`, and edit in place like `postconf -e`.

Syntax (postconf(5)): `name = value`; `#` starts a comment line; blank and comment
lines are ignored; a line that starts with white space continues the previous
logical line. Values are kept raw (unexpanded) as Postfix does; `$name`, `${name}`,
`${name?text}` and `${name:text}` expand when a value is used.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_REF_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")
MAX_EXPANSION_DEPTH = 100  # a deeper chain of $references is a loop or a mistake


class ConfigError(Exception):
    """A problem in main.cf; the message names the file, line and parameter."""


@dataclass(frozen=True)
class Definition:
    name: str
    value: str
    line: int  # first physical line of the logical line


def parse_text(text: str, filename: str) -> list[Definition]:
    """Logical lines of main.cf as definitions, in file order (later ones win)."""
    definitions: list[Definition] = []
    logical: list[str] = []
    start = 0

    def flush() -> None:
        if not logical:
            return
        line = " ".join(part.strip() for part in logical)
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"{filename}, line {start}: missing '=' after parameter name: {line[:60]}")
        if not NAME_RE.match(name):
            raise ConfigError(f"{filename}, line {start}: bad parameter name '{name[:60]}'")
        definitions.append(Definition(name, value.strip(), start))
        logical.clear()

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if not logical:
                raise ConfigError(f"{filename}, line {number}: continuation line without a parameter before it")
            logical.append(raw)
            continue
        flush()
        logical.append(raw)
        start = number
    flush()
    return definitions


def expand(value: str, lookup: Callable[[str], str | None], *, _depth: int = 0, _stack: tuple[str, ...] = ()) -> str:
    """Expand `$name`, `${name}`, `$(name)`, `${name?text}` and `${name:text}` recursively.

    `lookup` returns a parameter's raw value or None when it is unknown (expands to
    nothing, as Postfix does). A reference that leads back to itself is an error.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4) or match.group(5)
        raw = lookup(name)
        if name in _stack or _depth >= MAX_EXPANSION_DEPTH:
            chain = " -> ".join((*_stack, name))
            raise ConfigError(f"parameter expansion loop: {chain}")
        value_now = expand(raw, lookup, _depth=_depth + 1, _stack=(*_stack, name)) if raw else ""
        operator = match.group(2)
        if operator == "?":
            return expand(match.group(3), lookup, _depth=_depth + 1, _stack=_stack) if value_now else ""
        if operator == ":":
            return "" if value_now else expand(match.group(3), lookup, _depth=_depth + 1, _stack=_stack)
        return value_now

    return _REF_RE.sub(replace, value)


def read_file(path: Path) -> list[Definition]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run 'mailroom -c {path.parent} init' first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_text(text, str(path))


def edit_text(text: str, edits: Mapping[str, str | None]) -> str:
    """Apply `postconf -e` (value) and `postconf -X` (None) edits to main.cf text.

    Like Postfix: the first definition of an edited name is replaced in place (with
    its continuation lines), later duplicates are dropped, comments and order are
    kept, and new names are appended at the end.
    """
    out: list[str] = []
    seen: set[str] = set()
    skipping = False
    for raw in text.splitlines():
        stripped = raw.strip()
        if skipping and raw[:1].isspace() and stripped and not stripped.startswith("#"):
            continue  # continuation of a definition being replaced
        skipping = False
        if stripped and not stripped.startswith("#") and not raw[0].isspace():
            name = raw.partition("=")[0].strip()
            if name in edits:
                skipping = True
                if name not in seen:
                    seen.add(name)
                    value = edits[name]
                    if value is not None:
                        out.append(f"{name} = {value}")
                continue
        out.append(raw)
    for name, value in edits.items():
        if name not in seen and value is not None:
            out.append(f"{name} = {value}")
    return "\n".join(out) + "\n"


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace a file so readers see the old or the new content, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=".main.cf.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
