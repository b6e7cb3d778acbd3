"""The envelope that travels with a queued message: who sent it, to whom, and how it came in.

It is written next to the message data in the queue, so everything the delivery
agents and the outbound issue (DSN, Received header) need must be in it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Recipient:
    """One RCPT TO with its RFC 3461 parameters and its delivery state."""

    address: str
    notify: tuple[str, ...] = ()  # () = not given; else subset of NEVER/SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # "rfc822;addr" as given (xtext-decoded)
    status: str = "pending"  # pending | delivered | deferred | bounced
    dsn: str = ""  # last enhanced status, e.g. "4.2.2"
    reason: str = ""  # last diagnostic text
    attempts: int = 0
    next_attempt: float = 0.0  # unix time
    relay: str = ""  # who took it last: "virtual" (our Maildir) or "mx.example.com[1.2.3.4]:25"
    relayed_without_dsn: bool = False  # delivered to an MTA without DSN: we owe "relayed"


@dataclass(slots=True)
class ClientInfo:
    """How the message arrived, for the Received header and the logs."""

    helo: str = ""
    hostname: str = "unknown"  # reverse-resolved name or "unknown"
    address: str = ""  # client IP
    protocol: str = "SMTP"  # SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA
    tls: str = ""  # e.g. "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"
    sasl_username: str = ""
    sasl_method: str = ""


@dataclass(slots=True)
class Envelope:
    sender: str  # "" = null sender
    recipients: list[Recipient]
    queue_id: str = ""
    arrival_time: float = 0.0  # unix time the 250 was given
    size: int = 0
    body_type: str = ""  # "" | 7BIT | 8BITMIME | BINARYMIME
    smtputf8: bool = False
    ret: str | None = None  # FULL | HDRS | None (RFC 3461)
    envid: str | None = None
    client: ClientInfo = field(default_factory=ClientInfo)
    delay_warned: bool = False  # a delay notice went out (delay_warning_time): only one

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Envelope:
        data = dict(data)
        recipients = [Recipient(**{**r, "notify": tuple(r.get("notify", ()))}) for r in data.pop("recipients")]
        client = ClientInfo(**data.pop("client", {}))
        return cls(recipients=recipients, client=client, **data)
