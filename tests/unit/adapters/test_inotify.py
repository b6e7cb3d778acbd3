"""The inotify watcher behind IMAP IDLE: wakes on Maildir changes, shares and drops watches."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path

import pytest

from mailroom.adapters import inotify
from mailroom.adapters.inotify import Watcher, WatchError


async def woken_by(loop_work: list[object], change: object) -> None:
    """Let the loop read the events `change` caused."""
    assert callable(change)
    change()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if loop_work:
            return


def test_maildir_changes_wake_the_watcher(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "new").mkdir()
        (tmp_path / "cur").mkdir()
        watcher = Watcher(asyncio.get_running_loop())
        calls: list[object] = []
        watcher.watch([str(tmp_path), str(tmp_path / "new"), str(tmp_path / "cur")], lambda: calls.append(1))
        (tmp_path / "tmp-file").write_bytes(b"x")  # a file written elsewhere: create counts too
        steps = [
            lambda: os.link(tmp_path / "tmp-file", tmp_path / "new" / "1.mx"),  # delivery
            lambda: os.rename(tmp_path / "new" / "1.mx", tmp_path / "cur" / "1.mx:2,"),  # SELECT
            lambda: os.rename(tmp_path / "cur" / "1.mx:2,", tmp_path / "cur" / "1.mx:2,S"),  # flags
            lambda: os.unlink(tmp_path / "cur" / "1.mx:2,S"),  # expunge
            lambda: os.replace(tmp_path / "tmp-file", tmp_path / "dovecot-uidlist"),  # uidlist
        ]
        for step in steps:
            calls.clear()
            await woken_by(calls, step)
            assert calls, f"no wake-up for {step}"
        watcher.close()

    asyncio.run(main())


def test_sessions_share_one_watch_per_directory(tmp_path: Path) -> None:
    async def main() -> None:
        watcher = Watcher(asyncio.get_running_loop())
        first, second = [], []
        a = watcher.watch([str(tmp_path)], lambda: first.append(1))
        b = watcher.watch([str(tmp_path)], lambda: second.append(1))
        assert watcher.watches == 1
        await woken_by(second, lambda: (tmp_path / "x").touch())
        assert first and second
        watcher.unwatch(a)
        first.clear()
        second.clear()
        await woken_by(second, lambda: (tmp_path / "y").touch())
        assert second and not first  # the other session still watches
        watcher.unwatch(b)
        assert watcher.watches == 0
        watcher.unwatch(b)  # twice: harmless
        watcher.close()

    asyncio.run(main())


def test_a_removed_directory_and_a_refused_watch(tmp_path: Path) -> None:
    async def main() -> None:
        watcher = Watcher(asyncio.get_running_loop())
        gone = tmp_path / "gone"
        gone.mkdir()
        calls: list[object] = []
        token = watcher.watch([str(gone)], lambda: calls.append(1))
        await woken_by(calls, lambda: shutil.rmtree(gone))
        assert calls  # the folder was deleted: the session looks (and finds it gone)
        await asyncio.sleep(0.05)
        assert watcher.watches == 0  # the kernel dropped it (IN_IGNORED)
        watcher.unwatch(token)
        kept = watcher.watch([str(tmp_path)], lambda: None)
        with pytest.raises(WatchError):  # a missing directory: the caller polls instead
            watcher.watch([str(tmp_path), str(tmp_path / "missing")], lambda: None)
        assert watcher.watches == 1  # the shared watch on tmp_path survived the failed call
        watcher.unwatch(kept)
        watcher.close()

    asyncio.run(main())


def test_a_queue_overflow_wakes_every_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        watcher = Watcher(asyncio.get_running_loop())
        woken: list[str] = []
        other = tmp_path / "other"
        other.mkdir()
        watcher.watch([str(tmp_path)], lambda: woken.append("a"))
        watcher.watch([str(other)], lambda: woken.append("b"))
        overflow = struct.pack("iIII", -1, inotify.IN_Q_OVERFLOW, 0, 0)
        monkeypatch.setattr(inotify.os, "read", lambda _fd, _n: overflow)
        watcher._read()
        assert sorted(woken) == ["a", "b"]
        monkeypatch.undo()
        watcher.close()

    asyncio.run(main())
