"""The local delivery agent (Postfix's virtual(8)): queued message → Maildir of a mailbox.

It adds `Return-Path:` and `Delivered-To:` in front of the queued message (which
already carries its Received header, see headers.received_header), enforces the
user's quota the way Dovecot's quota plugin does, and writes the Maildir file under
a name fixed by the queue ID and mailbox, so that a delivery repeated after a crash
finds the first copy instead of making a second (maildir.delivery_unique).
The Maildir writes are blocking file I/O; LocalTransport runs them in one thread,
in batches that share the fsync of each new/ directory (maildir.MaildirWriter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from mailroom.directory.base import DirectoryUnavailable, User
from mailroom.mailstore.maildir import (
    MaildirJob,
    MaildirWriter,
    QuotaExceeded,
    UnsafeAddress,
    delivery_unique,
    mailbox_path,
    to_lf,
)
from mailroom.queue.batch import BatchThread
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.fsync import FsyncPool
from mailroom.queue.headers import delivery_headers, received_header
from mailroom.queue.transport import DeliveryResult, Outcome, Report

__all__ = ["LocalDelivery", "LocalTransport", "MailboxLookup", "received_header"]

RELAY = "virtual"  # the relay= name in log lines, as Postfix's virtual(8)
# Dovecot's default quota_exceeded_message, with the RFC 3463 code for a full mailbox.
QUOTA_EXCEEDED = "Quota exceeded (mailbox for user is full)"
DELIVERED = "delivered to maildir"
LOOKUP_FAILED = "temporary lookup failure"
MAX_CACHED_PATHS = 10_000  # bound on the mailbox → Maildir path cache


class MailboxLookup(Protocol):
    """The part of Directory that delivery needs (Directory satisfies it; fakes stay small)."""

    def is_local_domain(self, domain: str) -> bool: ...

    def get_user(self, address: str) -> User | None: ...

    def expand(self, address: str) -> list[str]: ...


class LocalDelivery:
    """Delivers to mailboxes under `mailbox_base`.

    prepare() does the directory look-up (cached, so it runs on the event loop
    like the SMTP policy's look-ups); the Maildir write is a MaildirJob for
    `writer`, which LocalTransport runs in batches in its own thread.
    """

    def __init__(
        self,
        directory: MailboxLookup,
        mailbox_base: Path,
        *,
        hostname: str,
        clock: Callable[[], float] = time.time,
        quota_permanent: bool = True,
    ) -> None:
        self.directory = directory
        self.mailbox_base = mailbox_base
        self.hostname = hostname
        self.clock = clock
        # Dovecot's quota_full_tempfail: when False, a full mailbox defers instead.
        self.quota_permanent = quota_permanent
        # The Maildir files of a batch are fsynced together (see queue/fsync.py).
        self.fsyncs = FsyncPool("maildir")
        self.writer = MaildirWriter(hostname=hostname, clock=clock, sync_files=self.fsyncs.sync)
        self._paths: dict[str, Path] = {}  # mailbox → Maildir (mailbox_path is not free)

    def _result(self, mailbox: str, started: float, outcome: Outcome, dsn: str,
                reason: str) -> DeliveryResult:
        return DeliveryResult(mailbox, outcome, dsn, reason, RELAY,
                              transmit_seconds=max(0.0, self.clock() - started))

    def prepare(self, envelope: Envelope, body_lf: bytes, mailbox: str, started: float,
                *, fresh: bool = False) -> MaildirJob | DeliveryResult:
        """The Maildir write for one final mailbox, or the outcome if there is none to do.

        `fresh`: no earlier attempt of this delivery can exist (the message was just
        queued by this process), so there is no need to look for one in cur/.
        """
        try:
            user = self.directory.get_user(mailbox)
        except DirectoryUnavailable:
            return self._result(mailbox, started, Outcome.DEFERRED, "4.3.0", LOOKUP_FAILED)
        if user is None:
            return self._result(mailbox, started, Outcome.BOUNCED, "5.1.1",
                                f'unknown user: "{mailbox.lower()}"')
        maildir = self._paths.get(user.email)
        if maildir is None:
            try:
                maildir = mailbox_path(self.mailbox_base, user.email)
            except UnsafeAddress:
                return self._result(mailbox, started, Outcome.BOUNCED, "5.1.3", "bad address syntax")
            if len(self._paths) >= MAX_CACHED_PATHS:
                self._paths.clear()
            self._paths[user.email] = maildir
        header = delivery_headers(envelope, user.email)
        unique = (delivery_unique(envelope.arrival_time, envelope.queue_id, user.email)
                  if envelope.queue_id else "")
        return MaildirJob(maildir, body_lf, header, quota=max(0, user.quota), unique=unique,
                          check_existing=not fresh)

    def outcome(self, mailbox: str, written: Path | BaseException, started: float) -> DeliveryResult:
        """What a MaildirJob's result means for the queue."""
        if isinstance(written, QuotaExceeded):
            if self.quota_permanent:
                return self._result(mailbox, started, Outcome.BOUNCED, "5.2.2", QUOTA_EXCEEDED)
            return self._result(mailbox, started, Outcome.DEFERRED, "4.2.2", QUOTA_EXCEEDED)
        if isinstance(written, OSError):
            return self._result(mailbox, started, Outcome.DEFERRED, "4.3.0",
                                f"maildir delivery failed: {written.strerror or written}")
        if isinstance(written, BaseException):
            raise written
        return self._result(mailbox, started, Outcome.SENT, "2.0.0", DELIVERED)

    def deliver(self, envelope: Envelope, body_lf: bytes, mailbox: str) -> DeliveryResult:
        """Blocking: deliver the message (LF line ends, see maildir.to_lf) to one final mailbox."""
        started = self.clock()
        job = self.prepare(envelope, body_lf, mailbox, started)
        if isinstance(job, DeliveryResult):
            return job
        return self.outcome(mailbox, self.writer.deliver_batch([job])[0], started)


class LocalTransport:
    """The `virtual` transport: look-ups on the event loop, Maildir writes in one batching thread."""

    def __init__(self, delivery: LocalDelivery) -> None:
        self.delivery = delivery
        self._writer: BatchThread[MaildirJob, Path] = BatchThread(
            "maildir", delivery.writer.deliver_batch)

    @property
    def write_batches(self) -> int:
        """Batches written so far (each shares one fsync per new/ directory)."""
        return self._writer.batches

    def close(self) -> None:
        self._writer.close()
        self.delivery.fsyncs.close()

    async def deliver(
        self,
        envelope: Envelope,
        data: bytes,
        recipients: Sequence[Recipient],
        report: Report | None = None,
        *,
        fresh: bool = False,
    ) -> list[DeliveryResult]:
        """Each mailbox in turn; each outcome is reported before the next mailbox is touched.

        `fresh`: the message was just queued by this process, so no earlier attempt
        can have reached a Maildir (see LocalDelivery.prepare).
        """
        body = to_lf(data)
        results: list[DeliveryResult] = []
        for rcpt in recipients:
            started = self.delivery.clock()
            job = self.delivery.prepare(envelope, body, rcpt.address, started, fresh=fresh)
            if isinstance(job, DeliveryResult):
                result = job
            else:
                written: Path | BaseException
                try:
                    written = await self._writer.submit(job)
                except (OSError, QuotaExceeded) as exc:
                    written = exc
                result = self.delivery.outcome(rcpt.address, written, started)
            results.append(result)
            if report is not None:
                await report(result)  # durably recorded before the next mailbox is touched
        return results
