"""Folder operations store.py leaves out: delete, rename, and Dovecot's `subscriptions` file.

Maildir++ keeps every folder flat under the Maildir (`.Lists.mailroom` is "Lists" >
"mailroom"), so a rename moves the folder and each `.<old>.*` below it; a delete moves
the folder aside into the Maildir's tmp/ (one rename, atomic for concurrent readers)
and then removes it. `subscriptions` is read in both of Dovecot's formats (v1: one
name per line; v2: a "V\\t2" header and tab-separated hierarchy) and written as v1,
which Dovecot reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mailroom.mailstore.store import (
    INBOX,
    SEPARATOR,
    MaildirStore,
    StoreError,
    validate_folder_name,
)

SUBSCRIPTIONS = "subscriptions"
MAX_SUBSCRIPTIONS_FILE = 1024 * 1024


def folder_path(store: MaildirStore, name: str) -> Path:
    if name.upper() == INBOX:
        return store.root
    return store.root / (SEPARATOR + validate_folder_name(name))


def exists(store: MaildirStore, name: str) -> bool:
    try:
        return (folder_path(store, name) / "cur").is_dir()
    except StoreError:
        return False


def children(store: MaildirStore, name: str) -> list[str]:
    prefix = name + SEPARATOR
    return [n for n in store.list_folders() if n.startswith(prefix)]


def delete_folder(store: MaildirStore, name: str) -> None:
    if name.upper() == INBOX:
        raise StoreError("INBOX can't be deleted.")
    path = folder_path(store, name)
    if not (path / "cur").is_dir():
        raise FileNotFoundError(name)
    aside = store.root / "tmp" / f".deleted.{os.getpid()}.{path.name[1:]}"
    try:
        os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from None


def rename_folder(store: MaildirStore, old: str, new: str) -> None:
    """Rename `old` and its children; raises FileNotFoundError / FileExistsError / StoreError."""
    if old.upper() == INBOX or new.upper() == INBOX:
        raise StoreError("Renaming INBOX isn't supported.")
    source, target = folder_path(store, old), folder_path(store, new)
    if not (source / "cur").is_dir():
        raise FileNotFoundError(old)
    if target.exists() or new.startswith(old + SEPARATOR):
        raise FileExistsError(new)
    moves = [(source, target)]
    for child in children(store, old):
        moves.append((folder_path(store, child), folder_path(store, new + child[len(old):])))
    try:
        for _src, dst in moves:
            if dst.exists():
                raise FileExistsError(dst.name[1:])
        for src, dst in moves:
            os.rename(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        raise StoreError(f"{source}: {exc.strerror or exc}") from None


def read_subscriptions(store: MaildirStore) -> list[str]:
    path = store.root / SUBSCRIPTIONS
    try:
        if path.stat().st_size > MAX_SUBSCRIPTIONS_FILE:
            return []
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from None
    lines = text.split("\n")
    if lines and lines[0].startswith("V\t"):
        names = [line.replace("\t", SEPARATOR) for line in lines[1:] if line]
    else:
        names = [line for line in lines if line]
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)


def write_subscriptions(store: MaildirStore, names: list[str]) -> None:
    path = store.root / SUBSCRIPTIONS
    tmp = path.with_name(f"{SUBSCRIPTIONS}.tmp.{os.getpid()}")
    try:
        tmp.write_text("".join(f"{n}\n" for n in names), "utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"{path}: {exc.strerror or exc}") from None


def set_subscribed(store: MaildirStore, name: str, subscribed: bool) -> None:
    names = read_subscriptions(store)
    if subscribed and name not in names:
        write_subscriptions(store, [*names, name])
    elif not subscribed and name in names:
        write_subscriptions(store, [n for n in names if n != name])
