"""The trace headers mailroom adds, shaped like Postfix writes them (RFC 5321 section 4.4).

The Received header is added once, when the message is queued (as Postfix's cleanup
does); Return-Path and Delivered-To are added per mailbox at final delivery (as
Postfix's virtual(8) does). Values that came from a client are stripped of control
characters so nobody can inject a header through a HELO name or an address.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import format_datetime

from mailroom.queue.envelope import Envelope

SOFTWARE = "mailroom"  # the "(Postfix)" comment of the by-clause
CRLF = "\r\n"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str) -> str:
    return _CONTROL.sub("", value)


_last_date: tuple[int, str] = (-1, "")  # every message of one second has the same date


def rfc5322_date(now: float) -> str:
    """`Fri, 27 Nov 2026 10:00:00 +0000 (UTC)`."""
    global _last_date
    second = math.floor(now)
    if _last_date[0] != second:
        _last_date = (second, format_datetime(datetime.fromtimestamp(second, UTC)) + " (UTC)")
    return _last_date[1]


def _tls_clause(tls: str) -> str:
    tls = _clean(tls).strip()
    if not tls.startswith("("):
        tls = f"({tls})"
    # Postfix folds the key-exchange details onto their own continuation line.
    return tls.replace(" key-exchange ", f"{CRLF}\t key-exchange ", 1)


def received_header(
    envelope: Envelope,
    hostname: str,
    queue_id: str,
    recipient_if_single: str | None,
    now: float,
    *,
    show_sasl_username: bool = True,
) -> str:
    """The `Received:` header for a message entering the queue, CRLF-terminated.

    `recipient_if_single` gives the `for <...>` clause; Postfix writes it only when
    the message has exactly one recipient, to avoid disclosing the others.
    """
    client = envelope.client
    lines: list[str] = []
    if client.address:
        helo = _clean(client.helo) or _clean(client.hostname)
        lines.append(f"Received: from {helo} ({_clean(client.hostname)} [{_clean(client.address)}])")
        if client.tls:
            lines.append(f"\t{_tls_clause(client.tls)}")
        if client.sasl_username and show_sasl_username:  # smtpd_sasl_authenticated_header
            lines.append(f"\t(Authenticated sender: {_clean(client.sasl_username)})")
        by = f"\tby {hostname} ({SOFTWARE}) with {_clean(client.protocol) or 'SMTP'} id {queue_id}"
    else:  # submitted locally, not over the network
        lines.append(f"Received: by {hostname} ({SOFTWARE})")
        by = f"\tid {queue_id}"
    date = rfc5322_date(now)
    if recipient_if_single:
        lines.append(by)
        lines.append(f"\tfor <{_clean(recipient_if_single)}>; {date}")
    else:
        lines.append(f"{by}; {date}")
    return CRLF.join(lines) + CRLF


def delivery_headers(envelope: Envelope, mailbox: str) -> bytes:
    """`Return-Path:` and `Delivered-To:` for one final mailbox, LF-terminated (Maildir form)."""
    text = f"Return-Path: <{_clean(envelope.sender)}>\nDelivered-To: {_clean(mailbox)}\n"
    return text.encode("utf-8")
