from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mailroom.mailstore import maildir as maildir_module
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.manager import REMOTE_PENDING, QueueManager, format_delay, next_backoff
from mailroom.queue.spool import Spool
from mailroom.queue.transport import DeliveryResult, Outcome, Report

from .conftest import FakeClock, FakeDirectory

DATA = b"Received: from x\r\nSubject: hi\r\n\r\nhello\r\n"


def mail(base: Path, address: str) -> list[bytes]:
    local, domain = address.split("@")
    new = base / domain / local / "Maildir" / "new"
    return [(new / n).read_bytes() for n in sorted(os.listdir(new))] if new.exists() else []


def queue(spool: Spool, *rcpts: str, sender: str = "fred@example.com") -> str:
    return spool.enqueue_sync(Envelope(sender, [Recipient(r) for r in rcpts]), DATA)


def run(spool: Spool, directory: FakeDirectory, base: Path, clock: FakeClock,
        *steps: float, transports: dict[str, object] | None = None,
        **options: Any) -> QueueManager:
    """Run the queue now, then again after each clock advance in `steps`."""
    async def main() -> QueueManager:
        qm = QueueManager(spool, directory, base, "mx.example.org", clock, **options)
        for name, transport in (transports or {}).items():
            qm.register_transport(name, transport)  # type: ignore[arg-type]
        for qid in spool.recover():
            qm.notify(qid)
        await qm.run_queue()
        for step in steps:
            clock.advance(step)
            await qm.run_queue()
        await qm.stop()
        return qm
    return asyncio.run(main())


def test_next_backoff_doubles_from_minimum_to_maximum() -> None:
    assert [next_backoff(n, 300, 4000) for n in range(0, 7)] == [300, 300, 600, 1200, 2400, 4000, 4000]
    assert next_backoff(10_000, 300, 4000) == 4000
    assert next_backoff(1, 300, 100) == 100


def test_format_delay_like_postfix() -> None:
    assert [format_delay(s) for s in (0.001, 0.12, 1.5, 12.4, 4000)] == ["0", "0.12", "1.5", "12", "4000"]


def test_notify_delivers_at_once_and_logs_like_postfix(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom")

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock)
        await qm.start()
        qid = await spool.enqueue(Envelope("fred@example.com", [Recipient("john@example.org")]), DATA)
        qm.notify(qid)
        for _ in range(2000):  # until delivered; no fixed sleep
            if not spool.list_ids():
                break
            await asyncio.sleep(0.005)
        await qm.stop()

    asyncio.run(main())
    assert spool.list_ids() == []
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1
    messages = [(r.name, r.getMessage().split(": ", 1)[1]) for r in caplog.records]
    assert messages == [
        ("mailroom.qmgr", f"from=<fred@example.com>, size={len(DATA)}, nrcpt=1 (queue active)"),
        ("mailroom.virtual", "to=<john@example.org>, relay=virtual, delay=0, delays=0/0/0/0, "
                             "dsn=2.0.0, status=sent (delivered to maildir)"),
        ("mailroom.qmgr", "removed"),
    ]


def test_a_simple_delivery_writes_no_envelope_update(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One recipient, delivered: the removal is the record; a second fsync would be waste."""
    updates: list[str] = []
    monkeypatch.setattr(spool, "update_envelope", lambda qid, env: updates.append(qid))
    queue(spool, "john@example.org")
    run(spool, directory, tmp_path / "mail", clock)
    assert updates == [] and spool.list_ids() == []
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1


def test_just_queued_message_is_delivered_from_memory(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(qid: str) -> None:
        raise AssertionError("read back from disk")

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock)
        await qm.start()
        monkeypatch.setattr(spool, "load", no_disk)
        qid = await spool.enqueue(Envelope("fred@example.com", [Recipient("john@example.org")]), DATA)
        qm.notify(qid)
        await qm.run_queue()
        await qm.stop()

    asyncio.run(main())
    assert spool.list_ids() == []
    assert mail(tmp_path / "mail", "john@example.org")[0].endswith(b"Subject: hi\n\nhello\n")


def test_aliases_catch_all_and_duplicates_deliver_once_per_mailbox(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom")
    directory.add_alias("team@example.org", "john@example.org", "lisa@example.org")
    directory.add_alias("postmaster@example.org", "john@example.org")
    directory.add_alias("@example.net", "lisa@example.org")
    qid = queue(spool, "team@example.org", "Postmaster@example.org", "anything@example.net")
    run(spool, directory, tmp_path / "mail", clock)
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1
    assert len(mail(tmp_path / "mail", "lisa@example.org")) == 1
    assert mail(tmp_path / "mail", "lisa@example.org")[0].startswith(
        b"Return-Path: <fred@example.com>\nDelivered-To: lisa@example.org\n")
    assert spool.list_ids() == []
    sent = [r.getMessage() for r in caplog.records if "status=sent" in r.getMessage()]
    assert len(sent) == 2
    assert sent[0].startswith(f"{qid}: to=<john@example.org>, orig_to=<team@example.org>, relay=virtual")


def test_alias_loop_and_unknown_user_bounce(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom")
    directory.add_alias("a@example.org", "b@example.org")
    directory.add_alias("b@example.org", "a@example.org")
    queue(spool, "a@example.org", "nobody@example.org", "john@example.org")
    run(spool, directory, tmp_path / "mail", clock)
    text = caplog.text
    assert "to=<a@example.org>, relay=none" in text and "dsn=5.4.6, status=bounced (mail forwarding loop)" in text
    assert 'dsn=5.1.1, status=bounced (unknown user: "nobody@example.org")' in text
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1
    assert spool.list_ids() == []  # every recipient final


def test_directory_outage_defers_with_backoff_then_delivers(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    directory.unavailable = True
    qid = queue(spool, "john@example.org")
    qm = run(spool, directory, tmp_path / "mail", clock, 299)  # first try, then 1 s too early
    env, _ = spool.load(qid)
    rcpt = env.recipients[0]
    assert (rcpt.status, rcpt.dsn, rcpt.attempts) == ("pending", "4.3.0", 1)
    assert rcpt.next_attempt == clock.now + 1
    assert qm.scheduled() == {qid: clock.now + 1}
    directory.unavailable = False
    run(spool, directory, tmp_path / "mail", clock, 1)
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1
    assert spool.list_ids() == []


def test_deferred_too_long_expires(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom")
    directory.unavailable = True
    queue(spool, "john@example.org")
    run(spool, directory, tmp_path / "mail", clock, *[4000] * 108)  # 5 days
    assert spool.list_ids() == []
    assert "dsn=5.3.0, status=expired (message expired: temporary lookup failure)" in caplog.text


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def deliver(self, envelope: Envelope, data: bytes, recipients: Sequence[Recipient],
                      report: Report | None = None) -> list[DeliveryResult]:
        assert data == DATA
        self.calls.append([r.address for r in recipients])
        return [DeliveryResult(r.address, Outcome.SENT, "2.0.0", "250 ok", "mx.remote.test[192.0.2.9]:25")
                for r in recipients]


def test_remote_recipients_wait_for_the_outbound_transport(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    qid = queue(spool, "john@example.org", "someone@remote.test")
    run(spool, directory, tmp_path / "mail", clock)
    env, _ = spool.load(qid)
    assert [(r.address, r.status) for r in env.recipients] == [
        ("john@example.org", "delivered"), ("someone@remote.test", "deferred")]
    assert env.recipients[1].reason == REMOTE_PENDING
    outbound = RecordingTransport()
    run(spool, directory, tmp_path / "mail", clock, 300, transports={"smtp": outbound})
    assert outbound.calls == [["someone@remote.test"]]
    assert spool.list_ids() == []
    assert len(mail(tmp_path / "mail", "john@example.org")) == 1


def test_restart_after_crash_resumes_exactly_once(
        tmp_path: Path, directory: FakeDirectory, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeze the disk as a crash would leave it just before the second mailbox, restart."""
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    real = maildir_module.MaildirWriter.deliver_batch
    calls = 0

    def deliver(self: maildir_module.MaildirWriter,
                jobs: list[maildir_module.MaildirJob]) -> list[Path | BaseException]:
        nonlocal calls
        calls += len(jobs)
        if calls == 2:
            shutil.copytree(live, crashed)  # the state a kill -9 here leaves behind
        return real(self, jobs)

    monkeypatch.setattr(maildir_module.MaildirWriter, "deliver_batch", deliver)
    spool = Spool(live / "queue", clock=clock)
    queue(spool, "john@example.org", "lisa@example.org")
    run(spool, directory, live / "mail", clock)
    spool.close()
    assert calls == 2 and (crashed / "queue").exists()
    assert len(mail(crashed / "mail", "john@example.org")) == 1
    assert mail(crashed / "mail", "lisa@example.org") == []

    async def restart() -> None:
        restarted = Spool(crashed / "queue", clock=clock)
        qm = QueueManager(restarted, directory, crashed / "mail", "mx.example.org", clock)
        await qm.start()  # recover() + schedule everything queued
        for _ in range(2000):
            if not restarted.list_ids():
                break
            await asyncio.sleep(0.005)
        await qm.stop()
        restarted.close()

    asyncio.run(restart())
    assert calls == 3  # only lisa's delivery was repeated work
    assert len(mail(crashed / "mail", "john@example.org")) == 1
    assert len(mail(crashed / "mail", "lisa@example.org")) == 1
    assert os.listdir(crashed / "queue" / "active") == []


@pytest.mark.parametrize("read_meanwhile", [False, True])
def test_crash_between_maildir_link_and_removal_delivers_once(
        tmp_path: Path, directory: FakeDirectory, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch, read_meanwhile: bool) -> None:
    """kill -9 after the Maildir link, before the queue file went: the repeat finds the copy."""
    spool = Spool(tmp_path / "queue", clock=clock)

    async def crash_instead(qid: str) -> None:
        pass  # the process dies here: the queue file stays as it was

    with monkeypatch.context() as patch:
        patch.setattr(spool, "remove_async", crash_instead)
        qid = queue(spool, "john@example.org")
        run(spool, directory, tmp_path / "mail", clock)
    assert spool.list_ids() == [qid]
    spool.close()
    john = tmp_path / "mail" / "example.org" / "john" / "Maildir"
    assert len(os.listdir(john / "new")) == 1
    if read_meanwhile:  # an IMAP client saw it: new/ → cur/ with flags
        name = os.listdir(john / "new")[0]
        os.rename(john / "new" / name, john / "cur" / f"{name}:2,S")

    restarted = Spool(tmp_path / "queue", clock=clock)
    run(restarted, directory, tmp_path / "mail", clock)
    assert restarted.list_ids() == []
    assert len(os.listdir(john / "new")) + len(os.listdir(john / "cur")) == 1
    restarted.close()


def test_bounces_expire_after_bounce_queue_lifetime(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    """A message from the null sender gives up after bounce_queue_lifetime, others do not."""
    caplog.set_level(logging.INFO, logger="mailroom")
    directory.unavailable = True
    bounce = queue(spool, "john@example.org", sender="")
    normal = queue(spool, "lisa@example.org")
    lifetimes: dict[str, Any] = {"maximal_queue_lifetime": 5 * 86400, "bounce_queue_lifetime": 3600}
    run(spool, directory, tmp_path / "mail", clock, 300, 600, 1200, **lifetimes)  # tries at 0..2100 s
    assert sorted(spool.list_ids()) == sorted([bounce, normal])
    assert "status=expired" not in caplog.text
    run(spool, directory, tmp_path / "mail", clock, 2400, **lifetimes)  # the try at 4500 s
    assert spool.list_ids() == [normal]
    expired = [r.getMessage() for r in caplog.records if "status=expired" in r.getMessage()]
    assert len(expired) == 1 and expired[0].startswith(f"{bounce}: to=<john@example.org>")


def test_bounce_queue_lifetime_defaults_to_maximal_queue_lifetime(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock,
                      maximal_queue_lifetime=7200)
    assert qm.bounce_queue_lifetime == 7200
    directory.unavailable = True
    queue(spool, "john@example.org", sender="")
    run(spool, directory, tmp_path / "mail", clock, 3600, 3600, maximal_queue_lifetime=7200)
    assert spool.list_ids() == []


def _deferred_remote(spool: Spool, directory: FakeDirectory, base: Path,
                     clock: FakeClock) -> tuple[str, str, str]:
    """Three messages waiting (no smtp transport yet) with their backoff ahead of them."""
    a = queue(spool, "a@remote.test")
    b = queue(spool, "b@other.test")
    c = queue(spool, "c@Remote.Test", "d@other.test")
    return a, b, c


def test_etrn_flushes_only_the_named_domain_without_reading_other_messages(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = _deferred_remote(spool, directory, tmp_path / "mail", clock)
    outbound = RecordingTransport()
    loaded: list[str] = []

    async def main() -> QueueManager:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock)
        await qm.start()
        await qm.run_queue()  # all deferred: no smtp transport
        assert set(qm.scheduled().values()) == {clock.now + 300}
        qm.register_transport("smtp", outbound)
        real_load = spool.load

        def load(qid: str) -> tuple[Envelope, bytes]:
            loaded.append(qid)
            return real_load(qid)

        monkeypatch.setattr(spool, "load", load)
        qm.flush("REMOTE.test.")
        assert qm.scheduled() == {a: 0.0, b: clock.now + 300, c: 0.0}
        await qm.run_queue()
        await qm.stop()
        return qm

    qm = asyncio.run(main())
    assert sorted(loaded) == sorted([a, c])  # b's queue file was not read
    assert sorted(outbound.calls) == [["a@remote.test"], ["c@remote.test"]]
    assert sorted(spool.list_ids()) == sorted([b, c])
    env, _ = spool.load(c)
    assert [(r.address, r.status) for r in env.recipients] == [
        ("c@remote.test", "delivered"), ("d@other.test", "deferred")]
    assert env.recipients[1].attempts == 1  # its backoff was not cut short
    assert qm.scheduled() == {b: clock.now + 300, c: clock.now + 300}


def test_flush_without_domain_still_flushes_everything(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    _deferred_remote(spool, directory, tmp_path / "mail", clock)
    outbound = RecordingTransport()

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock)
        await qm.start()
        await qm.run_queue()
        qm.register_transport("smtp", outbound)
        qm.flush()
        await qm.run_queue()
        await qm.stop()

    asyncio.run(main())
    assert sorted(outbound.calls) == [["a@remote.test"], ["b@other.test"],
                                      ["c@remote.test"], ["d@other.test"]]
    assert spool.list_ids() == []


def test_etrn_for_messages_not_seen_yet_reads_them_and_cuts_only_that_domain(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    """After a restart the manager knows no domains: every message is a candidate."""
    a, b, c = _deferred_remote(spool, directory, tmp_path / "mail", clock)
    run(spool, directory, tmp_path / "mail", clock)  # all deferred, +300 s
    outbound = RecordingTransport()

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock)
        qm.register_transport("smtp", outbound)
        for qid in spool.recover():
            qm._schedule[qid] = clock.now + 300  # as if scheduled, but never handled here
        qm.flush("other.test")
        assert qm.scheduled() == {a: 0.0, b: 0.0, c: 0.0}
        await qm.run_queue()
        await qm.stop()

    asyncio.run(main())
    assert sorted(outbound.calls) == [["b@other.test"], ["d@other.test"]]
    assert sorted(spool.list_ids()) == sorted([a, c])
