"""Postfix lookup tables for routing: `inline:{...}` and `texthash:/path`.

Both are read once, when the table is opened (Postfix reads texthash at daemon start
too); a SIGHUP reload builds new tables. Keys are case-insensitive, as in Postfix's
hash-style tables (the search string is folded to lower case).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from mailroom.config.types import split_list

MAX_TABLE_BYTES = 16 * 1024 * 1024  # a texthash file bigger than this is a mistake, not a table


class TableError(ValueError):
    """A table spec or file that cannot be used; the message names the table."""


class LookupTable:
    """An in-memory key -> value map with Postfix's case folding."""

    def __init__(self, name: str, entries: Iterable[tuple[str, str]]) -> None:
        self.name = name
        self._map: dict[str, str] = {}
        for key, value in entries:
            self._map.setdefault(key.lower(), value)  # Postfix: the first entry wins

    def lookup(self, key: str) -> str | None:
        return self._map.get(key.lower())

    def __len__(self) -> int:
        return len(self._map)


def _inline_entries(spec: str, body: str) -> list[tuple[str, str]]:
    """Postfix inline_table(5): `{ k=v, k2=v2, { k3 = text with spaces } }`.

    Postfix splits on commas and white space; a braced item keeps its spaces. mailroom
    also accepts `k = v` with spaces around "=", a common slip that Postfix rejects.
    """
    tokens = split_list(body)
    merged: list[str] = []
    for tok in tokens:
        if merged and (tok.startswith("=") or merged[-1].endswith("=")) and not tok.startswith("{"):
            merged[-1] += tok
        else:
            merged.append(tok)
    out = []
    for item in merged:
        if item.startswith("{"):
            if not item.endswith("}"):
                raise TableError(f"{spec}: unbalanced braces in '{item}'")
            item = item[1:-1].strip()
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise TableError(f"{spec}: expected key=value, got '{item}'")
        out.append((key, value))
    return out


def _texthash_entries(path: Path) -> list[tuple[str, str]]:
    """postmap(1) input format: `key<whitespace>value`, `#` comments, and lines that
    start with white space continue the previous one."""
    try:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise TableError(f"texthash:{path}: file larger than {MAX_TABLE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError(f"texthash:{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TableError(f"texthash:{path}: not UTF-8 text") from None
    logical: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[:1].isspace() and logical:
            logical[-1] += " " + stripped
        else:
            logical.append(stripped)
    out = []
    for entry in logical:
        parts = entry.split(None, 1)
        if len(parts) != 2:
            raise TableError(f"texthash:{path}: missing value for key '{parts[0]}'")
        out.append((parts[0], parts[1].strip()))
    return out


def open_table(spec: str) -> LookupTable:
    """`inline:{...}` or `texthash:/path` -> LookupTable; TableError otherwise."""
    kind, colon, name = spec.partition(":")
    if not colon:
        raise TableError(f"bad lookup table '{spec}' (expected type:name)")
    if kind == "inline":
        body = name.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise TableError(f"{spec}: inline table must be enclosed in {{}}")
        return LookupTable(spec, _inline_entries(spec, body[1:-1]))
    if kind == "texthash":
        return LookupTable(spec, _texthash_entries(Path(name)))
    raise TableError(f"{spec}: unsupported table type '{kind}' (use inline: or texthash:)")


def open_tables(specs: Sequence[str]) -> list[LookupTable]:
    """A Postfix table list (transport_maps) in search order."""
    return [open_table(s) for s in specs]


def lookup_first(tables: Sequence[LookupTable], key: str) -> str | None:
    """The first table with the key wins (Postfix searches a table list in order)."""
    for table in tables:
        value = table.lookup(key)
        if value is not None:
            return value
    return None
