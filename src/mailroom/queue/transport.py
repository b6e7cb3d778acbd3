"""What the queue manager needs from a delivery agent, local or remote.

A transport gets one message (its bytes as queued: CRLF, Received header first) and
the (already expanded) recipients routed to it, and answers per recipient: sent,
deferred (try again later) or bounced (give up). It awaits `report` as soon as each
recipient's outcome is known, before touching the next one, so the queue manager
can record it durably: that is what keeps delivery exactly-once per recipient
across a crash. `report` must be awaited on the event loop's thread. The outbound
(SMTP) issue plugs in here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mailroom.queue.envelope import Envelope, Recipient


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"  # temporary failure
    BOUNCED = "bounced"  # permanent failure


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    address: str  # the recipient as given to the transport
    outcome: Outcome
    dsn: str  # RFC 3463 enhanced status, e.g. "2.0.0", "4.3.0", "5.2.2"
    reason: str  # Postfix's parenthesised text: "delivered to maildir"
    relay: str = "none"  # "virtual", "mx.example.com[192.0.2.1]:25", ...
    connect_seconds: float = 0.0  # Postfix's delays "c": connection set-up
    transmit_seconds: float = 0.0  # Postfix's delays "d": message transmission
    # Handed to an MTA that does not offer DSN: RFC 3461 §4.1 makes us report "relayed"
    # to a sender who asked for NOTIFY=SUCCESS, since nobody further on will.
    relayed_without_dsn: bool = False


Report = Callable[[DeliveryResult], Awaitable[None]]


class Transport(Protocol):
    """A delivery agent (Postfix master.cf service): virtual, smtp, ..."""

    async def deliver(
        self,
        envelope: Envelope,
        data: bytes,
        recipients: Sequence[Recipient],
        report: Report | None = None,
    ) -> list[DeliveryResult]:
        """Try each recipient once, awaiting `report(result)` after each."""
        ...
