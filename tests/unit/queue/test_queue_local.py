from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.local import QUOTA_EXCEEDED, LocalDelivery, LocalTransport
from mailroom.queue.transport import DeliveryResult, Outcome

from .conftest import FakeClock, FakeDirectory

BODY = b"Received: from x\r\nSubject: hi\r\n\r\nhello\r\n"


def new_mail(base: Path, address: str) -> list[bytes]:
    local, domain = address.split("@")
    new = base / domain / local / "Maildir" / "new"
    return [(new / n).read_bytes() for n in sorted(os.listdir(new))] if new.exists() else []


@pytest.fixture
def agent(tmp_path: Path, directory: FakeDirectory, clock: FakeClock) -> LocalDelivery:
    return LocalDelivery(directory, tmp_path / "mail", hostname="mx", clock=clock)


def test_delivers_with_return_path_and_delivered_to(agent: LocalDelivery, tmp_path: Path) -> None:
    result = agent.deliver(Envelope("fred@example.com", []), BODY.replace(b"\r\n", b"\n"),
                           "John@Example.org")
    assert (result.outcome, result.dsn, result.reason, result.relay) == (
        Outcome.SENT, "2.0.0", "delivered to maildir", "virtual")
    assert new_mail(tmp_path / "mail", "john@example.org") == [
        b"Return-Path: <fred@example.com>\nDelivered-To: john@example.org\n"
        b"Received: from x\nSubject: hi\n\nhello\n"]


def test_unknown_user_bounces_and_directory_outage_defers(
        agent: LocalDelivery, directory: FakeDirectory) -> None:
    result = agent.deliver(Envelope("", []), b"x\n", "nobody@example.org")
    assert (result.outcome, result.dsn) == (Outcome.BOUNCED, "5.1.1")
    directory.unavailable = True
    result = agent.deliver(Envelope("", []), b"x\n", "john@example.org")
    assert (result.outcome, result.dsn) == (Outcome.DEFERRED, "4.3.0")


@pytest.mark.parametrize(("permanent", "outcome", "dsn"), [
    (True, Outcome.BOUNCED, "5.2.2"), (False, Outcome.DEFERRED, "4.2.2")])
def test_quota(tmp_path: Path, directory: FakeDirectory, clock: FakeClock,
               permanent: bool, outcome: Outcome, dsn: str) -> None:
    agent = LocalDelivery(directory, tmp_path, hostname="mx", clock=clock, quota_permanent=permanent)
    directory.add_user("small@example.org", quota=200)
    message = b"x" * 100 + b"\n"  # plus 73 bytes of Return-Path/Delivered-To
    assert agent.deliver(Envelope("a@b.c", []), message, "small@example.org").outcome is Outcome.SENT
    full = agent.deliver(Envelope("a@b.c", []), message, "small@example.org")
    assert (full.outcome, full.dsn, full.reason) == (outcome, dsn, QUOTA_EXCEEDED)
    assert len(new_mail(tmp_path, "small@example.org")) == 1
    assert agent.deliver(Envelope("a@b.c", []), message, "john@example.org").outcome is Outcome.SENT


def test_transport_reports_each_mailbox_before_the_next(
        agent: LocalDelivery, tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []

    async def report(result: DeliveryResult) -> None:  # what was on disk when each was reported
        seen.append((result.address, len(new_mail(tmp_path / "mail", "lisa@example.org"))))

    async def main() -> list[DeliveryResult]:
        transport = LocalTransport(agent)
        try:
            return await transport.deliver(Envelope("", rcpts), BODY, rcpts, report)
        finally:
            transport.close()

    rcpts = [Recipient("john@example.org"), Recipient("lisa@example.org")]
    results = asyncio.run(main())
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert seen == [("john@example.org", 0), ("lisa@example.org", 1)]
    assert new_mail(tmp_path / "mail", "lisa@example.org")[0].endswith(b"Subject: hi\n\nhello\n")


def test_concurrent_deliveries_share_new_directory_fsyncs(agent: LocalDelivery, tmp_path: Path) -> None:
    count = 50

    async def main() -> list[list[DeliveryResult]]:
        transport = LocalTransport(agent)
        try:
            rcpt = [Recipient("john@example.org")]
            return await asyncio.gather(*(transport.deliver(Envelope("", rcpt), BODY, rcpt)
                                          for _ in range(count)))
        finally:
            assert transport.write_batches < count  # all submitted before the thread woke
            transport.close()

    results = asyncio.run(main())
    assert all(r[0].outcome is Outcome.SENT for r in results)
    assert len(new_mail(tmp_path / "mail", "john@example.org")) == count


def test_failed_maildir_write_defers(agent: LocalDelivery, tmp_path: Path) -> None:
    (tmp_path / "mail" / "example.org").mkdir(parents=True)
    (tmp_path / "mail" / "example.org" / "john").write_bytes(b"not a directory")
    result = agent.deliver(Envelope("", []), b"x\n", "john@example.org")
    assert (result.outcome, result.dsn) == (Outcome.DEFERRED, "4.3.0")
    assert result.reason.startswith("maildir delivery failed")
