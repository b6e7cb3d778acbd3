"""Telling senders what became of their mail: bounces, delay warnings, success notices.

The queue manager calls `final()` when every recipient of a message has a final
state and `deferred()` after each attempt that leaves some waiting. Notices are
built by mailroom.dsn (RFC 3464) and queued like any other message, from the null
sender, so they are retried and never bounce back in a loop; a notice that itself
fails goes to the postmaster once (2bounce_notice_recipient).
"""

from __future__ import annotations

from collections.abc import Callable

from mailroom.dsn import (
    Notification,
    build_double_bounce,
    build_notification,
    reports_from_envelope,
)
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.spool import Spool, SpoolError
from mailroom.runtime.log import get_logger

log = get_logger("bounce")

LOCAL_RELAY = "virtual"  # recipients we delivered ourselves: "delivered" in a success notice


class Notifier:
    def __init__(
        self,
        spool: Spool,
        wake: Callable[[str], None],
        *,
        reporting_mta: str,
        postmaster: str,
        delay_warning_time: float,
        maximal_queue_lifetime: float,
        clock: Callable[[], float],
    ) -> None:
        self.spool = spool
        self.wake = wake
        self.reporting_mta = reporting_mta
        self.postmaster = postmaster
        self.delay_warning_time = delay_warning_time
        self.maximal_queue_lifetime = maximal_queue_lifetime
        self.clock = clock

    async def final(self, envelope: Envelope, original: bytes) -> None:
        """Every recipient is delivered or bounced: failure and success notices."""
        if not any(r.status == "bounced" or r.notify for r in envelope.recipients):
            # Nothing failed and nobody gave NOTIFY (which without SUCCESS never asks
            # for a success notice): the common case needs no report built at all.
            return
        now = self.clock()
        failed = reports_from_envelope(envelope, "failure")
        if failed:
            if envelope.sender:
                notice = build_notification(
                    envelope, failed, original, reporting_mta=self.reporting_mta,
                    postmaster=self.postmaster, now=now, kind="failure",
                    maximal_queue_lifetime=self.maximal_queue_lifetime,
                )
                await self._send(envelope, notice, "sender non-delivery notification")
            else:
                notice = build_double_bounce(
                    envelope, failed, original, reporting_mta=self.reporting_mta,
                    postmaster=self.postmaster, now=now,
                )
                await self._send(envelope, notice, "postmaster non-delivery notification")
        # Success notices are ours to send for what we delivered ourselves, and for what
        # we relayed to an MTA without DSN (RFC 3461 §4.1 "relayed"); an MTA that offers
        # DSN got NOTIFY with the message and reports on its own.
        relayed = [r.address for r in envelope.recipients if r.relayed_without_dsn]
        delivered = [
            r for r in reports_from_envelope(envelope, "success", relayed=relayed)
            if _relay_of(envelope, r.address) == LOCAL_RELAY or r.address in relayed
        ]
        if delivered:
            notice = build_notification(
                envelope, delivered, original, reporting_mta=self.reporting_mta,
                postmaster=self.postmaster, now=now, kind="success",
            )
            await self._send(envelope, notice, "sender delivery status notification")

    async def deferred(self, envelope: Envelope, original: bytes) -> bool:
        """Some recipients wait: one delay warning once delay_warning_time has passed."""
        if self.delay_warning_time <= 0 or envelope.delay_warned or not envelope.sender:
            return False
        now = self.clock()
        if now - envelope.arrival_time < self.delay_warning_time:
            return False
        envelope.delay_warned = True  # whether or not anyone asked for it: decided once
        notice = build_notification(
            envelope, reports_from_envelope(envelope, "delay"), original,
            reporting_mta=self.reporting_mta, postmaster=self.postmaster, now=now, kind="delay",
            delay_warning_time=self.delay_warning_time,
            maximal_queue_lifetime=self.maximal_queue_lifetime,
        )
        await self._send(envelope, notice, "sender delay notification")
        return True

    async def _send(self, about: Envelope, notice: Notification | None, what: str) -> None:
        if notice is None:
            return
        envelope = Envelope(
            sender=notice.sender,
            recipients=[Recipient(address) for address in notice.recipients],
            body_type="8BITMIME" if notice.eight_bit else "",
            smtputf8=notice.smtputf8,
        )
        try:
            queue_id = await self.spool.enqueue(envelope, notice.message)
        except SpoolError as exc:
            log.error("%s: cannot queue %s: %s", about.queue_id, what, exc)
            return
        log.info("%s: %s: %s", about.queue_id, what, queue_id)
        self.wake(queue_id)


def _relay_of(envelope: Envelope, address: str) -> str:
    for rcpt in envelope.recipients:
        if rcpt.address == address:
            return rcpt.relay
    return ""
