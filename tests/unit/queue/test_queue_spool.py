from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from mailroom.queue.envelope import ClientInfo, Envelope, Recipient
from mailroom.queue.spool import GroupSync, Spool, SpoolError

from .conftest import FakeClock

DATA = b"Subject: hi\r\n\r\nhello\r\n"


def envelope(*rcpts: str) -> Envelope:
    return Envelope(sender="john@example.org",
                    recipients=[Recipient(r) for r in rcpts or ("lisa@example.org",)],
                    client=ClientInfo(helo="client.example", address="192.0.2.1"))


def test_enqueue_load_round_trip(spool: Spool, clock: FakeClock) -> None:
    env = envelope("lisa@example.org", "fred@example.com")
    qid = asyncio.run(spool.enqueue(env, DATA, header=b"Received: x\r\n"))
    loaded, data = spool.load(qid)
    assert data == b"Received: x\r\n" + DATA
    assert loaded == env
    assert loaded.queue_id == qid and loaded.size == len(DATA) + 13
    assert loaded.arrival_time == clock.now
    assert [r.address for r in loaded.recipients] == ["lisa@example.org", "fred@example.com"]
    assert spool.list_ids() == [qid]
    assert os.listdir(spool.incoming) == []
    assert os.listdir(spool.active) == [qid]  # one file: envelope line, then the message
    assert stat.S_IMODE((spool.active / qid).stat().st_mode) == 0o600
    assert (spool.active / qid).read_bytes().startswith(b"MRQ1 {")
    assert spool.take_hot(qid) is None  # nobody asked to keep messages in memory


def test_hot_messages_are_handed_over_once(spool: Spool) -> None:
    spool.keep_hot = True
    env = envelope()
    qid = asyncio.run(spool.enqueue(env, DATA, header=b"Received: x\r\n"))
    hot = spool.take_hot(qid)
    assert hot is not None
    assert hot == spool.load(qid) and hot[0] is not env
    assert spool.take_hot(qid) is None
    other = asyncio.run(spool.enqueue(envelope(), DATA))
    spool.remove(other)
    assert spool.take_hot(other) is None

def test_given_queue_id_is_used_and_never_overwritten(spool: Spool) -> None:
    env = envelope()
    env.queue_id = spool.new_queue_id()
    qid = spool.enqueue_sync(env, DATA)
    assert qid == env.queue_id
    again = envelope()
    again.queue_id = qid
    with pytest.raises(SpoolError, match="already in use"):
        spool.enqueue_sync(again, b"other")
    assert spool.load(qid)[1] == DATA


def test_update_and_remove(spool: Spool) -> None:
    qid = spool.enqueue_sync(envelope(), DATA)
    env, _ = spool.load(qid)
    env.recipients[0].status = "delivered"
    spool.update_envelope(qid, env)
    assert spool.load(qid) == (env, DATA)
    assert sorted(os.listdir(spool.active)) == [qid, f"{qid}.env"]
    assert os.listdir(spool.incoming) == []
    env.recipients[0].attempts = 3
    spool.update_envelope(qid, env)
    assert spool.load(qid)[0].recipients[0].attempts == 3
    spool.remove(qid)
    assert spool.list_ids() == [] and os.listdir(spool.active) == []
    with pytest.raises(SpoolError, match="no such queue file"):
        spool.load(qid)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "abc", "X" * 15 + "/"])
def test_queue_ids_cannot_name_paths(spool: Spool, bad: str) -> None:
    for call in (spool.load, spool.remove):
        with pytest.raises(SpoolError, match="invalid queue id"):
            call(bad)


def test_recover_after_crash_keeps_only_whole_messages(tmp_path: Path) -> None:
    """Leftovers of every crash point: a half-written temp file, an envelope update whose
    message was removed meanwhile, an unparsable queue file, a foreign file."""
    spool = Spool(tmp_path / "q")
    whole = spool.enqueue_sync(envelope(), DATA)
    updated = spool.enqueue_sync(envelope(), DATA)
    env, _ = spool.load(updated)
    env.recipients[0].attempts = 1
    spool.update_envelope(updated, env)
    ids = [spool.new_queue_id() for _ in range(3)]
    (spool.incoming / ids[0]).write_bytes(b"MRQ1 {half a mess")
    (spool.incoming / f"{ids[0]}.env.123").write_bytes(b"{")
    (spool.active / f"{ids[1]}.env").write_text(json.dumps(envelope().to_json_dict()))
    (spool.active / ids[2]).write_bytes(b'MRQ1 {"sender": \n' + DATA)
    (spool.active / "stray-file").write_bytes(b"x")
    spool.close()

    restarted = Spool(tmp_path / "q")
    assert restarted.recover() == sorted([whole, updated])
    assert os.listdir(restarted.incoming) == []
    assert sorted(os.listdir(restarted.active)) == sorted([whole, updated, f"{updated}.env"])
    assert os.listdir(restarted.corrupt) == [ids[2]]
    assert restarted.list_ids() == sorted([whole, updated])
    assert restarted.load(updated)[0].recipients[0].attempts == 1
    restarted.close()


def test_disk_full_raises_spool_error_and_leaves_nothing(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(os, "writev", full)
    with pytest.raises(SpoolError) as info:
        asyncio.run(spool.enqueue(envelope(), DATA))
    assert info.value.disk
    monkeypatch.undo()
    assert os.listdir(spool.incoming) == [] and os.listdir(spool.active) == []


def test_failed_directory_fsync_withdraws_the_message(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool._commit, "_fsync", broken)
    with pytest.raises(SpoolError):
        spool.enqueue_sync(envelope(), DATA)
    assert os.listdir(spool.active) == [] and os.listdir(spool.incoming) == []


def test_group_sync_one_fsync_for_all_who_waited(tmp_path: Path) -> None:
    calls: list[Path] = []
    first_started, release = threading.Event(), threading.Event()

    def fsync(path: Path) -> None:
        calls.append(path)
        if len(calls) == 1:
            first_started.set()
            release.wait(10)

    group = GroupSync(tmp_path, fsync)
    leader = threading.Thread(target=group.sync)
    leader.start()
    assert first_started.wait(10)
    followers = [threading.Thread(target=group.sync) for _ in range(10)]
    for t in followers:
        t.start()
    deadline = time.monotonic() + 10  # until all followers queue behind the running fsync
    while group.waiters < 10 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert group.waiters == 10
    release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert group.rounds == 2 and len(calls) == 2


def test_group_sync_failure_reaches_the_callers_it_covered(tmp_path: Path) -> None:
    def fsync(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError):
        GroupSync(tmp_path, fsync).sync()


def test_many_concurrent_enqueues_share_directory_fsyncs(spool: Spool) -> None:
    count = 200

    async def main() -> list[str]:
        return await asyncio.gather(*(spool.enqueue(envelope(), DATA * 200) for _ in range(count)))

    ids = asyncio.run(main())
    assert len(set(ids)) == count
    assert sorted(ids) == spool.list_ids()
    assert spool.commit_rounds < count  # group commit: far fewer in practice
    assert spool.write_batches < count  # all were submitted before the writer woke
    assert all(spool.load(q)[1] == DATA * 200 for q in ids)


def test_failed_directory_fsync_fails_the_whole_batch(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool._commit, "_fsync", broken)

    async def main() -> list[str | BaseException]:
        return await asyncio.gather(*(spool.enqueue(envelope(), DATA) for _ in range(5)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, SpoolError) and r.disk for r in results)
    assert os.listdir(spool.active) == [] and os.listdir(spool.incoming) == []


def test_async_remove_and_envelope_of_a_removed_message(spool: Spool) -> None:
    qid = spool.enqueue_sync(envelope(), DATA)
    env, _ = spool.load(qid)
    spool.update_envelope(qid, env)

    async def main() -> None:
        await spool.remove_async(qid)

    asyncio.run(main())
    assert os.listdir(spool.active) == []
    with pytest.raises(SpoolError, match="no such queue file"):
        spool.update_envelope(qid, env)
    assert os.listdir(spool.active) == [] and os.listdir(spool.incoming) == []


def test_removed_queue_files_are_recycled(spool: Spool) -> None:
    first = spool.enqueue_sync(envelope(), DATA * 10)
    spool.remove(first)
    assert os.listdir(spool.active) == [] and os.listdir(spool.spare) == [first]
    inode = (spool.spare / first).stat().st_ino
    second = spool.enqueue_sync(envelope(), DATA)  # shorter: the old tail is cut off
    assert os.listdir(spool.spare) == [] and os.listdir(spool.active) == [second]
    assert (spool.active / second).stat().st_ino == inode
    assert spool.load(second)[1] == DATA
    assert stat.S_IMODE((spool.active / second).stat().st_mode) == 0o600


def test_recover_drops_a_spare_that_is_also_a_queued_message(tmp_path: Path) -> None:
    """A power loss can undo the unlink that followed a spare's reuse: two names, one file."""
    spool = Spool(tmp_path / "q")
    qid = spool.enqueue_sync(envelope(), DATA)
    os.link(spool.active / qid, spool.spare / "old-name")
    (spool.spare / "free").write_bytes(b"stale")
    spool.close()
    restarted = Spool(tmp_path / "q")
    assert restarted.recover() == [qid]
    assert os.listdir(restarted.spare) == ["free"]
    other = restarted.enqueue_sync(envelope(), DATA)
    assert restarted.load(qid)[1] == DATA and restarted.load(other)[1] == DATA
    assert os.listdir(restarted.spare) == []
    restarted.close()


def test_a_batch_is_fsynced_together_and_one_failed_fsync_fails_only_its_message(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every queue file of a batch is written, then all are fsynced (together), then linked."""
    real_fsync = os.fsync
    synced: list[str] = []
    lock = threading.Lock()

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with lock:
            synced.append(path)
        if Path(path).is_file() and b"doomed@" in Path(path).read_bytes():
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    async def main() -> list[str | BaseException]:
        return await asyncio.gather(*(spool.enqueue(envelope(rcpt), DATA) for rcpt in (
            "a@example.org", "doomed@example.org", "b@example.org", "c@example.org")),
            return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], SpoolError) and results[1].disk
    ok = [r for r in results if isinstance(r, str)]
    assert len(ok) == 3 and sorted(ok) == spool.list_ids()
    assert [spool.load(q)[0].recipients[0].address for q in ok] == [
        "a@example.org", "b@example.org", "c@example.org"]
    assert os.listdir(spool.incoming) == []  # nothing of the failed one is left
    assert str(spool.active) in synced  # and the directory was fsynced after the files


def test_an_id_taken_meanwhile_is_refused_when_chosen_and_replaced_otherwise(spool: Spool) -> None:
    taken = spool.new_queue_id()
    (spool.active / taken).write_bytes(b"MRQ1 {}\n")  # another writer's message
    ids = iter([taken, spool.new_queue_id()])
    chosen = envelope()
    chosen.queue_id = taken
    with pytest.raises(SpoolError, match="already in use"):
        spool.enqueue_sync(chosen, DATA)
    spool._new_id = lambda: next(ids)
    qid = spool.enqueue_sync(envelope(), DATA)
    assert qid != taken and spool.load(qid)[1] == DATA
    assert (spool.active / taken).read_bytes() == b"MRQ1 {}\n"
