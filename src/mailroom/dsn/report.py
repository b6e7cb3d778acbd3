"""Build delivery status notifications (RFC 3461, RFC 3464, RFC 6522), shaped like Postfix's.

Everything here is pure: the queue manager passes the envelope, per-recipient outcomes
and the queued message bytes, and gets back what to enqueue (null sender, recipients,
CRLF wire-form message) or None when no notice is due. Keeping it pure makes the
NOTIFY/RET rules and the injection safety testable without a queue.

Safety rules, because the texts come from remote servers and clients:
- every value written into a header or DSN field is one line with no control
  characters (no header injection through a CR/LF in a remote reply) and bounded;
- a message with the null sender never gets a notification (RFC 5321 section 4.5.5,
  RFC 3461 section 6.1), and a failed notification goes to the postmaster at most once;
- the returned original is capped at BOUNCE_SIZE_LIMIT (Postfix bounce_size_limit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import textwrap
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal, NamedTuple, Protocol

from mailroom.queue.envelope import Envelope, Recipient

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
Kind = Literal["failure", "delay", "success"]

BOUNCE_SIZE_LIMIT = 50_000
"""Postfix bounce_size_limit: the most original-message octets a notification carries."""

MAILER_DAEMON = "MAILER-DAEMON"
DIAGNOSTIC_TYPE_SMTP = "smtp"
DIAGNOSTIC_TYPE_LOCAL = "X-Mailroom"  # RFC 3464 section 2.3.6: an X- atom for non-SMTP text
DEFAULT_MAXIMAL_QUEUE_LIFETIME = 5 * 86400.0  # Postfix maximal_queue_lifetime = 5d

CRLF = "\r\n"
_FOLD_AT = 78  # RFC 5322 section 2.1.1: lines SHOULD be at most 78 characters
_FIELD_OCTETS = 900  # keeps every folded line far below the 998-octet hard limit
_WRAP = 79  # Postfix bounce_print_wrap(): LENGTH 79, INDENT 4
_INDENT = "    "

_KIND_ACTIONS: dict[str, frozenset[str]] = {
    "failure": frozenset({"failed"}),
    "delay": frozenset({"delayed"}),
    "success": frozenset({"delivered", "relayed", "expanded"}),
}
# RFC 3464 section 2.3.4: the status class must agree with the action.
_ACTION_CLASS = {"failed": "5", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")  # RFC 3463 section 2
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_HOST = re.compile(r"[^A-Za-z0-9.\-]")
_NOT_BCHAR = re.compile(r"[^A-Za-z0-9'()+_,\-./:=?]")  # RFC 2046 section 5.1.1 bchars
_REPLY = re.compile(
    r"host (?P<host>[^\s\[]+)(?:\[[^\]]*\])?(?::\d+)? (?:said|refused to talk to me): "
    r"(?P<reply>\d{3}(?:[ -].*?)?)(?: \(in reply to [^)]*\))?\Z",
    re.DOTALL,
)
_CONNECT = re.compile(r"(?:connect to|lost connection with|conversation with) (?P<host>[^\s\[]+)\[")
_POSTMASTER_NOTICE = re.compile(rb"(?im)^Subject:[ \t]*Postmaster (?:Copy|Warning):")


class _HasNotify(Protocol):
    @property
    def notify(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One per-recipient block of a DSN (RFC 3464 section 2.3) plus its human-readable line.

    `notify` and `orcpt` left as None are taken from the envelope recipient with the
    same address, so callers only need them when the report is not about an envelope
    recipient as such.
    """

    address: str
    action: Action
    status: str  # RFC 3463 enhanced status, e.g. "5.1.1"; the class is fixed up per action
    reason: str = ""  # the human line after "<address>: ", Postfix's log text
    diagnostic: str | None = None  # Diagnostic-Code text, e.g. "550 5.1.1 User unknown"
    diagnostic_type: str = DIAGNOSTIC_TYPE_SMTP
    remote_mta: str | None = None  # DNS name of the remote MTA, when one answered
    orcpt: str | None = None  # "addr-type;address" as given in ORCPT (RFC 3461 section 4.2)
    notify: tuple[str, ...] | None = None  # RFC 3461 section 4.1 NOTIFY values

    @classmethod
    def from_recipient(
        cls, rcpt: Recipient, action: Action, *, remote_mta: str | None = None
    ) -> RecipientReport:
        """A report from a queued recipient's last outcome (dsn and reason)."""
        dtype, dtext, host = diagnostic_from_reason(rcpt.reason)
        return cls(
            address=rcpt.address,
            action=action,
            status=rcpt.dsn,
            reason=rcpt.reason,
            diagnostic=dtext or None,
            diagnostic_type=dtype,
            remote_mta=remote_mta or host,
            orcpt=rcpt.orcpt,
            notify=tuple(rcpt.notify),
        )


class Notification(NamedTuple):
    """What to enqueue: the envelope sender (always null), recipients and the wire-form message."""

    sender: str
    recipients: list[str]
    message: bytes

    @property
    def smtputf8(self) -> bool:
        """True when sending needs SMTPUTF8 (RFC 6531): UTF-8 in an address or the header."""
        header = self.message.split(b"\r\n\r\n", 1)[0]
        return not (header.isascii() and all(r.isascii() for r in self.recipients))

    @property
    def eight_bit(self) -> bool:
        """True when sending needs BODY=8BITMIME (RFC 6152)."""
        return not self.message.isascii()


def wants_notice(recipient: _HasNotify, action: str) -> bool:
    """Whether this recipient's NOTIFY asks for a notice with `action` (RFC 3461 section 4.1).

    No NOTIFY behaves as NOTIFY=FAILURE,DELAY: the RFC leaves DELAY to the MTA, and the
    queue only asks for delay notices when delay warnings are enabled (Postfix
    delay_warning_time > 0).
    """
    return _wants(recipient.notify, action)


def _wants(notify: Iterable[str], action: str) -> bool:
    flags = {n.strip().upper() for n in notify}
    if "NEVER" in flags:  # section 4.1: NEVER excludes every other value
        return False
    if not flags:
        return action in ("failed", "delayed")
    if action == "failed":
        return "FAILURE" in flags
    if action == "delayed":
        return "DELAY" in flags
    if action in ("delivered", "relayed", "expanded"):  # section 6.2.2 / RFC 3464 2.3.3
        return "SUCCESS" in flags
    return False


def diagnostic_from_reason(reason: str) -> tuple[str, str, str | None]:
    """Split Postfix-style reason text into (diagnostic-type, diagnostic text, remote MTA).

    "host mx.example.com[192.0.2.1] said: 550 5.1.1 ... (in reply to RCPT TO command)"
    gives ("smtp", "550 5.1.1 ...", "mx.example.com") (RFC 3464 section 2.3.6); text
    without an SMTP reply, such as a local delivery error, gets the X- type.
    """
    text = reason.strip()
    match = _REPLY.search(text)
    if match:
        return DIAGNOSTIC_TYPE_SMTP, match.group("reply"), match.group("host")
    if re.match(r"\d{3}(?:[ -]|\Z)", text):
        return DIAGNOSTIC_TYPE_SMTP, text, None
    connect = _CONNECT.search(text)
    return DIAGNOSTIC_TYPE_LOCAL, text, connect.group("host") if connect else None


def reports_from_envelope(
    envelope: Envelope, kind: Kind, *, relayed: Collection[str] = ()
) -> list[RecipientReport]:
    """Reports for every recipient whose state matches `kind`: bounced, deferred or delivered.

    `relayed` names delivered recipients handed to an MTA without DSN support, which
    RFC 3461 section 4.1 reports as "relayed" rather than "delivered".
    """
    reports: list[RecipientReport] = []
    for rcpt in envelope.recipients:
        if kind == "failure" and rcpt.status == "bounced":
            reports.append(RecipientReport.from_recipient(rcpt, "failed"))
        elif kind == "delay" and rcpt.status == "deferred":
            reports.append(RecipientReport.from_recipient(rcpt, "delayed"))
        elif kind == "success" and rcpt.status == "delivered":
            action: Action = "relayed" if rcpt.address in relayed else "delivered"
            reports.append(RecipientReport.from_recipient(rcpt, action))
    return reports


def build_notification(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    original: bytes,
    *,
    reporting_mta: str,
    postmaster: str = "postmaster",
    now: float,
    kind: Kind,
    delay_warning_time: float | None = None,
    maximal_queue_lifetime: float = DEFAULT_MAXIMAL_QUEUE_LIFETIME,
    size_limit: int = BOUNCE_SIZE_LIMIT,
) -> Notification | None:
    """The notice of `kind` to the original sender, or None when none is due.

    None when the sender is null (never bounce a bounce: RFC 5321 section 4.5.5,
    RFC 3461 section 6.1), or when no report has an action of this kind that its
    recipient's NOTIFY asks for. `postmaster` is named in the human text (Postfix
    writes "postmaster"). `delay_warning_time` (seconds) is quoted in delay warnings;
    by default the message's age is.
    """
    if _is_null(envelope.sender):
        return None
    chosen = [
        r for r in _resolve(envelope, reports)
        if r.action in _KIND_ACTIONS[kind] and _wants(r.notify or (), r.action)
    ]
    if not chosen:
        return None
    # RFC 3461 section 4.3: RET governs failed DSNs; delay and success notices carry
    # the header only, as Postfix's do (nothing private or large goes back twice).
    headers_only = kind != "failure" or (envelope.ret or "").upper() == "HDRS"
    subject = {
        "failure": "Undelivered Mail Returned to Sender",
        "delay": "Delayed Mail (still being retried)",
        "success": "Successful Mail Delivery Report",
    }[kind]
    if kind == "delay":
        age = delay_warning_time if delay_warning_time is not None else now - envelope.arrival_time
        text = _delay_text(max(0.0, age), maximal_queue_lifetime)
    else:
        text = _FAILURE_TEXT if kind == "failure" else _SUCCESS_TEXT
    message = _compose(
        envelope, chosen, original,
        to=envelope.sender, subject=subject, text=text, kind=kind,
        headers_only=headers_only, reporting_mta=reporting_mta, postmaster=postmaster,
        now=now, maximal_queue_lifetime=maximal_queue_lifetime, size_limit=size_limit,
    )
    return Notification("", [envelope.sender], message)


def build_double_bounce(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    original: bytes,
    *,
    reporting_mta: str,
    postmaster: str,
    now: float,
    size_limit: int = BOUNCE_SIZE_LIMIT,
) -> Notification | None:
    """Tell the postmaster that a notification itself could not be delivered (Postfix 2bounce).

    Only for a message with the null sender and at least one failed report; NOTIFY is
    ignored (it is the postmaster's copy). None when the failed message was itself a
    postmaster notice or failed for the postmaster address: that ends the loop.
    """
    if not _is_null(envelope.sender):
        return None
    failed = [r for r in _resolve(envelope, reports) if r.action == "failed"]
    if not failed:
        return None
    host = _host(reporting_mta)
    address = postmaster if "@" in postmaster else f"{postmaster}@{host}"
    pm = address.casefold()
    for report in failed:
        orcpt = _split_orcpt(report.orcpt)[1] if report.orcpt else ""
        if pm in (report.address.casefold(), orcpt.casefold()):
            return None
    if _POSTMASTER_NOTICE.search(_header_section(_crlf(original))):
        return None
    message = _compose(
        envelope, failed, original,
        to=address, subject="Postmaster Copy: Undelivered Mail", text=_FAILURE_TEXT,
        kind="failure", headers_only=False, reporting_mta=reporting_mta,
        postmaster=postmaster, now=now,
        maximal_queue_lifetime=DEFAULT_MAXIMAL_QUEUE_LIFETIME, size_limit=size_limit,
    )
    return Notification("", [address], message)


# --- the human-readable part (Postfix's default bounce templates) --------------------

_FAILURE_TEXT = """\
I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to {postmaster}.

If you do so, please include this problem report. You can
delete your own text from the attached returned message."""

_SUCCESS_TEXT = """\
Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems."""


def _delay_text(age: float, lifetime: float) -> str:
    hours, days = _number(age / 3600), _number(lifetime / 86400)
    return (
        "####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
        "####################################################################\n"
        "\n"
        f"Your message could not be delivered for more than {hours} hour(s).\n"
        f"It will be retried until it is {days} day(s) old.\n"
        "\n"
        "For further assistance, please send mail to {postmaster}.\n"
        "\n"
        "If you do so, please include this problem report. You can\n"
        "delete your own text from the attached returned message."
    )


def _number(value: float) -> str:
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


# --- composition ---------------------------------------------------------------------

def _compose(
    envelope: Envelope,
    reports: Sequence[RecipientReport],
    original: bytes,
    *,
    to: str,
    subject: str,
    text: str,
    kind: Kind,
    headers_only: bool,
    reporting_mta: str,
    postmaster: str,
    now: float,
    maximal_queue_lifetime: float,
    size_limit: int,
) -> bytes:
    # RFC 6533: a report about internationalized mail uses the "global" types, which
    # may carry UTF-8; otherwise everything is masked to ASCII, as Postfix does.
    addresses = [to, envelope.sender, *(r.address for r in reports), *(r.orcpt or "" for r in reports)]
    utf8 = envelope.smtputf8 or not all(
        a.encode("utf-8", "replace").isascii() for a in addresses)
    host = _host(reporting_mta)

    returned, note = _returned(_crlf(original), headers_only, size_limit)
    human = _human(
        text.replace("{postmaster}", _clean(postmaster, utf8=utf8)), reports, host, note, utf8
    )
    status = _status_fields(envelope, reports, kind, reporting_mta, now, maximal_queue_lifetime, utf8)

    parts: list[tuple[list[str], bytes]] = [
        ([
            "Content-Description: Notification",
            f"Content-Type: text/plain; charset={'utf-8' if utf8 else 'us-ascii'}",
            *(["Content-Transfer-Encoding: 8bit"] if not human.isascii() else []),
        ], human),
        ([
            "Content-Description: Delivery report",
            f"Content-Type: message/{'global-' if utf8 else ''}delivery-status",
            *(["Content-Transfer-Encoding: 8bit"] if not status.isascii() else []),
        ], status),
    ]
    if returned is not None:
        body, is_headers = returned
        intl = envelope.smtputf8 or not _header_section(body).isascii()
        if is_headers:
            ctype = "message/global-headers" if intl else "text/rfc822-headers"
        else:
            ctype = "message/global" if intl else "message/rfc822"
        undelivered = "Undelivered " if kind != "success" else ""
        parts.append(([
            f"Content-Description: {undelivered}Message{' Headers' if is_headers else ''}",
            f"Content-Type: {ctype}",
            *(["Content-Transfer-Encoding: 8bit"] if not body.isascii() else []),
        ], body))

    boundary = _boundary(envelope.queue_id, now, host, [body for _, body in parts])
    eight_bit = any(not body.isascii() for _, body in parts)
    digest = hashlib.sha256(
        "\0".join([kind, to, *(f"{r.address}/{r.action}/{r.status}" for r in reports)])
        .encode("utf-8", "replace")
    ).hexdigest()[:8]
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")
    queue_id = _NOT_HOST.sub("", envelope.queue_id) or "NOQUEUE"
    header = [
        f"From: {MAILER_DAEMON}@{host} (Mail Delivery System)",
        _field("Subject", subject),
        _field("To", _clean(to, utf8=utf8)),
        "Auto-Submitted: auto-replied",  # RFC 3834 section 5
        f"Date: {_date(now)}",
        f"Message-ID: <{stamp}.{queue_id}.{digest}@{host}>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",  # RFC 6522
        f'\tboundary="{boundary}"',
        *(["Content-Transfer-Encoding: 8bit"] if eight_bit else []),
    ]
    out = bytearray(_crlf_text(header).encode("utf-8"))
    out += b"\r\nThis is a MIME-encapsulated message.\r\n"
    for part_header, body in parts:
        out += f"\r\n--{boundary}\r\n".encode()
        out += _crlf_text(part_header).encode("utf-8") + b"\r\n"
        out += body if body.endswith(b"\r\n") else body + b"\r\n"
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out)


def _human(text: str, reports: Sequence[RecipientReport], host: str, note: str,
           utf8: bool) -> bytes:
    """The text/plain part: Postfix's template, then one wrapped line per recipient."""
    lines = [f"This is the mail system at host {host}.", "", *text.split("\n")]
    if note:
        lines += ["", *textwrap.wrap(note, _WRAP)]
    lines += ["", "                   The mail system"]
    for report in reports:
        who = f"<{_clean(report.address, utf8=utf8)}>"
        atype, orig = _split_orcpt(report.orcpt) if report.orcpt else ("", "")
        if atype.lower() in ("rfc822", "utf-8") and orig.casefold() != report.address.casefold():
            who += f" (expanded from <{_clean(orig, utf8=utf8)}>)"
        why = report.reason or report.diagnostic or report.action
        entry = f"{who}: {_clean(why, utf8=utf8, limit=4 * _FIELD_OCTETS)}"
        lines += ["", *textwrap.wrap(entry, _WRAP, subsequent_indent=_INDENT,
                                     break_on_hyphens=False)]
    return (CRLF.join(lines) + CRLF).encode("utf-8")


def _status_fields(envelope: Envelope, reports: Sequence[RecipientReport], kind: Kind,
                   reporting_mta: str, now: float, lifetime: float, utf8: bool) -> bytes:
    """The message/delivery-status body (RFC 3464 section 2.1), fields in the RFC's order."""
    block: list[str] = []
    if envelope.envid:  # section 2.2.1
        block.append(_field("Original-Envelope-Id", _clean(envelope.envid, utf8=utf8)))
    block.append(_field("Reporting-MTA", f"dns; {_clean(reporting_mta, utf8=utf8)}"))  # 2.2.2
    if envelope.arrival_time > 0:  # 2.2.5
        block.append(f"Arrival-Date: {_date(envelope.arrival_time)}")
    if envelope.queue_id:  # extension fields, like Postfix's X-Postfix-Queue-ID
        block.append(_field("X-Mailroom-Queue-ID", _clean(envelope.queue_id, utf8=utf8)))
    block.append(_field("X-Mailroom-Sender", _typed("rfc822", envelope.sender, utf8)))
    blocks = [block]
    for report in reports:
        block = []
        if report.orcpt:  # 2.3.1: keep the addr-type the client gave
            atype, addr = _split_orcpt(report.orcpt)
            block.append(_field("Original-Recipient", _typed(atype, addr, utf8)))
        block.append(_field("Final-Recipient", _typed("rfc822", report.address, utf8)))  # 2.3.2
        block.append(f"Action: {report.action}")  # 2.3.3
        block.append(f"Status: {_fix_status(report.status, report.action)}")  # 2.3.4
        if report.remote_mta:  # 2.3.5
            block.append(_field("Remote-MTA", f"dns; {_clean(report.remote_mta, utf8=utf8)}"))
        if report.diagnostic:  # 2.3.6
            dtype = _NOT_HOST.sub("-", report.diagnostic_type) or DIAGNOSTIC_TYPE_LOCAL
            block.append(_field("Diagnostic-Code", f"{dtype}; {_clean(report.diagnostic, utf8=utf8)}"))
        if kind == "delay" and envelope.arrival_time > 0:  # 2.3.9
            block.append(f"Will-Retry-Until: {_date(envelope.arrival_time + lifetime)}")
        blocks.append(block)
    return (CRLF + CRLF).join(_crlf_text(b).rstrip(CRLF) for b in blocks).encode("utf-8") + b"\r\n"


def _returned(original: bytes, headers_only: bool, limit: int) -> tuple[tuple[bytes, bool] | None, str]:
    """The part that returns the original: (bytes, is-header-only), and a note if cut.

    Too large a message comes back as its header only (a cut-off message/rfc822 would
    be broken MIME); too large a header is cut at a field boundary.
    """
    if not original:
        return None, ""
    if not headers_only and len(original) <= limit:
        return (original, False), ""
    header = _header_section(original)
    note = ""
    if not headers_only:
        note = (f"The returned message was larger than {limit} bytes, so only its "
                "header is attached." if header else
                f"The returned message was larger than {limit} bytes and is not attached.")
    if len(header) > limit:
        cut = header.rfind(b"\r\n", 0, limit)
        while cut > 0 and header[cut + 2:cut + 3] in (b" ", b"\t"):  # not inside a folded field
            cut = header.rfind(b"\r\n", 0, cut)
        header = header[:cut + 2] if cut > 0 else b""
        note = f"The returned message header was larger than {limit} bytes and was truncated."
    return ((header, True) if header else None), note


def _resolve(envelope: Envelope, reports: Iterable[RecipientReport]) -> list[RecipientReport]:
    """Fill NOTIFY and ORCPT that a report leaves open from the envelope recipient."""
    resolved: list[RecipientReport] = []
    for report in reports:
        if report.notify is not None and report.orcpt is not None:
            resolved.append(report)
            continue
        rcpt = _envelope_recipient(envelope, report.address)
        resolved.append(dataclasses.replace(
            report,
            notify=report.notify if report.notify is not None else (rcpt.notify if rcpt else ()),
            orcpt=report.orcpt if report.orcpt is not None else (rcpt.orcpt if rcpt else None),
        ))
    return resolved


def _envelope_recipient(envelope: Envelope, address: str) -> Recipient | None:
    for rcpt in envelope.recipients:
        if rcpt.address == address:
            return rcpt
    folded = address.casefold()
    return next((r for r in envelope.recipients if r.address.casefold() == folded), None)


# --- small helpers -------------------------------------------------------------------

def _is_null(sender: str) -> bool:
    return sender.strip() in ("", "<>")


def _clean(value: str, *, utf8: bool, limit: int = _FIELD_OCTETS) -> str:
    """One safe line: controls (CR, LF, ...) become spaces, runs of white space one space,
    non-ASCII becomes "?" unless UTF-8 is allowed, and at most `limit` octets."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    # Lone surrogates (surrogateescape'd 8-bit input) cannot be encoded: make them "?".
    text = text.encode("utf-8", "replace").decode("utf-8")
    if not utf8:
        text = text.encode("ascii", "replace").decode("ascii")
    raw = text.encode("utf-8")
    if len(raw) > limit:
        text = raw[:limit].decode("utf-8", "ignore").rstrip() + "..."
    return text


def _field(name: str, value: str) -> str:
    """`Name: value`, folded before white space (RFC 5322 section 2.2.3), no line ending."""
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if not word:
            continue
        if len(line) + 1 + len(word) > _FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return CRLF.join(lines)


def _typed(atype: str, address: str, utf8: bool) -> str:
    """`addr-type; address` (RFC 3464 section 2.3.2); "utf-8" for UTF-8 (RFC 6533 section 3)."""
    atype = _NOT_HOST.sub("", atype.strip()) or "rfc822"
    addr = _clean(address, utf8=utf8)
    if not addr.isascii() and atype.lower() == "rfc822":
        atype = "utf-8"
    return f"{atype}; {addr}"


def _split_orcpt(orcpt: str) -> tuple[str, str]:
    atype, sep, addr = orcpt.partition(";")
    return (atype.strip(), addr.strip()) if sep else ("rfc822", orcpt.strip())


def _fix_status(status: str, action: str) -> str:
    cls = _ACTION_CLASS.get(action, "5")
    status = status.strip()
    return cls + status[1:] if _STATUS.match(status) else f"{cls}.0.0"


def _host(name: str) -> str:
    return _NOT_HOST.sub("", name)[:200] or "localhost"


def _date(when: float) -> str:
    """RFC 5322 section 3.3 date, as Postfix writes it."""
    return format_datetime(datetime.fromtimestamp(when, UTC)) + " (UTC)"


def _crlf(data: bytes) -> bytes:
    """The queue stores wire form, but accept LF-only input too."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def _crlf_text(lines: list[str]) -> str:
    return "".join(line + CRLF for line in lines)


def _header_section(message: bytes) -> bytes:
    """The header fields of a CRLF message, each line CRLF-terminated, without the blank line."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return message if message.endswith(b"\r\n") else message + b"\r\n"
    return message[:end + 2]


def _boundary(queue_id: str, now: float, host: str, bodies: list[bytes]) -> str:
    """A Postfix-like boundary that occurs in none of the parts (RFC 2046 section 5.1.1)."""
    base = _NOT_BCHAR.sub("", f"{queue_id or 'NOQUEUE'}.{int(now)}/{host}")[:60]
    boundary, n = base, 0
    while any(b"--" + boundary.encode() in body for body in bodies):
        n += 1
        boundary = f"{base}.{n}"
    return boundary
