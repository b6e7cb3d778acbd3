"""The local delivery agent (Postfix's virtual(8)): queued message → Maildir of a mailbox.

It adds `Return-Path:` and `Delivered-To:` in front of the queued message (which
already carries its Received header, see headers.received_header), enforces the
user's quota the way Dovecot's quota plugin does, and writes the Maildir file.
The work is blocking file I/O; LocalTransport runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from mailroom.directory.base import DirectoryUnavailable, User
from mailroom.mailstore.maildir import (
    UnsafeAddress,
    deliver_to_maildir,
    mailbox_path,
    mailbox_size,
    to_lf,
)
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.headers import delivery_headers, received_header
from mailroom.queue.transport import DeliveryResult, Outcome, Report

__all__ = ["LocalDelivery", "LocalTransport", "MailboxLookup", "received_header"]

RELAY = "virtual"  # the relay= name in log lines, as Postfix's virtual(8)
# Dovecot's default quota_exceeded_message, with the RFC 3463 code for a full mailbox.
QUOTA_EXCEEDED = "Quota exceeded (mailbox for user is full)"
DELIVERED = "delivered to maildir"
LOOKUP_FAILED = "temporary lookup failure"


class MailboxLookup(Protocol):
    """The part of Directory that delivery needs (Directory satisfies it; fakes stay small)."""

    def is_local_domain(self, domain: str) -> bool: ...

    def get_user(self, address: str) -> User | None: ...

    def expand(self, address: str) -> list[str]: ...


class LocalDelivery:
    """Delivers to mailboxes under `mailbox_base`; safe to call from several threads."""

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

    def deliver(self, envelope: Envelope, body_lf: bytes, mailbox: str) -> DeliveryResult:
        """Deliver the message (LF line ends, see maildir.to_lf) to one final mailbox."""
        started = self.clock()

        def result(outcome: Outcome, dsn: str, reason: str) -> DeliveryResult:
            return DeliveryResult(mailbox, outcome, dsn, reason, RELAY,
                                  transmit_seconds=max(0.0, self.clock() - started))

        try:
            user = self.directory.get_user(mailbox)
        except DirectoryUnavailable:
            return result(Outcome.DEFERRED, "4.3.0", LOOKUP_FAILED)
        if user is None:
            return result(Outcome.BOUNCED, "5.1.1", f'unknown user: "{mailbox.lower()}"')
        try:
            maildir = mailbox_path(self.mailbox_base, user.email)
        except UnsafeAddress:
            return result(Outcome.BOUNCED, "5.1.3", "bad address syntax")
        header = delivery_headers(envelope, user.email)
        try:
            if user.quota > 0:
                size = len(header) + len(body_lf)
                if mailbox_size(maildir) + size > user.quota:
                    if self.quota_permanent:
                        return result(Outcome.BOUNCED, "5.2.2", QUOTA_EXCEEDED)
                    return result(Outcome.DEFERRED, "4.2.2", QUOTA_EXCEEDED)
            deliver_to_maildir(maildir, body_lf, header=header, clock=self.clock,
                               hostname=self.hostname)
        except OSError as exc:
            return result(Outcome.DEFERRED, "4.3.0",
                          f"maildir delivery failed: {exc.strerror or exc}")
        return result(Outcome.SENT, "2.0.0", DELIVERED)

    def deliver_all(
        self,
        envelope: Envelope,
        data_path: Path,
        mailboxes: Sequence[str],
        report: Report | None = None,
    ) -> list[DeliveryResult]:
        """Read the queued message once and deliver it to each mailbox in turn."""
        try:
            body = to_lf(data_path.read_bytes())
        except OSError as exc:
            reason = f"cannot read queue file: {exc.strerror or exc}"
            results = [DeliveryResult(m, Outcome.DEFERRED, "4.3.0", reason, RELAY) for m in mailboxes]
        else:
            results = []
            for mailbox in mailboxes:
                one = self.deliver(envelope, body, mailbox)
                results.append(one)
                if report is not None:
                    report(one)  # durably recorded before the next mailbox is touched
            return results
        if report is not None:
            for one in results:
                report(one)
        return results


class LocalTransport:
    """The `virtual` transport: LocalDelivery run in a worker thread."""

    def __init__(self, delivery: LocalDelivery, executor: Executor | None = None) -> None:
        self.delivery = delivery
        self.executor = executor

    async def deliver(
        self,
        envelope: Envelope,
        data_path: Path,
        recipients: Sequence[Recipient],
        report: Report | None = None,
    ) -> list[DeliveryResult]:
        loop = asyncio.get_running_loop()
        mailboxes = [r.address for r in recipients]
        return await loop.run_in_executor(
            self.executor, self.delivery.deliver_all, envelope, data_path, mailboxes, report
        )
