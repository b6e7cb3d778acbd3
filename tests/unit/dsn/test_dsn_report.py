"""Delivery status notifications: structure (RFC 3464/6522), NOTIFY/RET/ENVID/ORCPT (RFC 3461),
loop prevention, size cap and injection safety. Every message is checked by parsing it
back with the standard library, as a receiving mail client would."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailroom.dsn import (
    BOUNCE_SIZE_LIMIT,
    Notification,
    RecipientReport,
    build_double_bounce,
    build_notification,
    diagnostic_from_reason,
    reports_from_envelope,
    wants_notice,
)
from mailroom.queue.envelope import Envelope, Recipient

NOW = 1_800_000_000.0
HOST = "mail.example.org"
ORIGINAL = (
    b"Received: from client.example.com\r\n\tby mail.example.org; Fri, 1 Jan 2027\r\n"
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: lunch\r\n"
    b"Message-ID: <1@example.com>\r\n\r\nSee you at noon.\r\nThe secret body line.\r\n"
)
REMOTE_REASON = (
    "host mx.example.net[192.0.2.1] said: 550 5.1.1 <bob@example.net>: Recipient address "
    "rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)"
)
KIND_ACTION: dict[str, Any] = {"failure": "failed", "delay": "delayed", "success": "delivered"}
KIND_STATUS = {"failure": "bounced", "delay": "deferred", "success": "delivered"}
KIND_DSN = {"failure": "5.1.1", "delay": "4.4.1", "success": "2.0.0"}


def envelope(*recipients: Recipient, sender: str = "alice@example.com", **kw: Any) -> Envelope:
    kw.setdefault("queue_id", "4F2A81C0A1")
    kw.setdefault("arrival_time", NOW - 3600)
    return Envelope(sender=sender, recipients=list(recipients), **kw)


def bounced(address: str = "bob@example.net", reason: str = REMOTE_REASON, **kw: Any) -> Recipient:
    return Recipient(address, status="bounced", dsn="5.1.1", reason=reason, **kw)


def notify(env: Envelope, kind: Any = "failure", original: bytes = ORIGINAL,
           **kw: Any) -> Notification | None:
    return build_notification(env, reports_from_envelope(env, kind), original,
                              reporting_mta=HOST, now=NOW, kind=kind, **kw)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[Message]:
    assert msg.is_multipart()
    return cast(list[Message], msg.get_payload())


def dsn_blocks(msg: EmailMessage) -> list[Message]:
    status = parts(msg)[1]
    assert status.get_content_type() == "message/delivery-status"
    return cast(list[Message], status.get_payload())


def text_of(part: Message) -> str:
    """A text part's content with the wire's CRLF turned into Python's LF."""
    return str(cast(EmailMessage, part).get_content()).replace("\r\n", "\n")


def must(n: Notification | None) -> Notification:
    assert n is not None
    return n


# --- structure -------------------------------------------------------------------------

def test_failure_is_a_multipart_report_from_the_null_sender() -> None:
    env = envelope(bounced())
    n = must(notify(env))
    assert n.sender == "" and n.recipients == ["alice@example.com"]
    assert not re.search(rb"(?<!\r)\n", n.message), "only CRLF line endings"
    msg = parse(n.message)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{HOST}"
    assert msg["To"] == "alice@example.com"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith(f"@{HOST}>") and msg["Date"]
    human, status, returned = parts(msg)
    assert human.get_content_type() == "text/plain"
    text = text_of(human)
    assert text.startswith(f"This is the mail system at host {HOST}.\n\n"
                           "I'm sorry to have to inform you that your message could not\n"
                           "be delivered to one or more recipients.")
    assert "<bob@example.net>: host mx.example.net[192.0.2.1] said: 550 5.1.1" in text
    assert status.get_content_type() == "message/delivery-status"
    assert returned.get_content_type() == "message/rfc822"
    inner = cast(list[Message], returned.get_payload())[0]
    assert inner["Subject"] == "lunch"
    assert "The secret body line." in str(inner.get_payload())


def test_per_message_and_per_recipient_fields() -> None:
    env = envelope(bounced(), bounced("carol@example.org", 'unknown user: "carol@example.org"'),
                   envid="QQ314159")
    head, bob, carol = dsn_blocks(parse(must(notify(env)).message))
    assert head["Reporting-MTA"] == f"dns; {HOST}"
    assert head["Original-Envelope-Id"] == "QQ314159"
    assert head["X-Mailroom-Queue-ID"] == "4F2A81C0A1"
    assert head["Arrival-Date"]
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed" and bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table")
    assert bob["Original-Recipient"] is None
    assert carol["Final-Recipient"] == "rfc822; carol@example.org"
    assert carol["Remote-MTA"] is None
    assert carol["Diagnostic-Code"] == 'X-Mailroom; unknown user: "carol@example.org"'


def test_no_envid_no_original_envelope_id() -> None:
    head = dsn_blocks(parse(must(notify(envelope(bounced()))).message))[0]
    assert head["Original-Envelope-Id"] is None


@pytest.mark.parametrize("orcpt, expected", [
    ("rfc822;bobby@example.net", "rfc822; bobby@example.net"),
    ("x-local;Bob Smith", "x-local; Bob Smith"),
    ("bobby@example.net", "rfc822; bobby@example.net"),
])
def test_orcpt_is_echoed_with_its_address_type(orcpt: str, expected: str) -> None:
    n = must(notify(envelope(bounced(orcpt=orcpt))))
    msg = parse(n.message)
    block = dsn_blocks(msg)[1]
    assert block["Original-Recipient"] == expected
    expanded = "(expanded from <bobby@example.net>)" in text_of(parts(msg)[0])
    assert expanded is expected.startswith("rfc822; bobby")
    # RFC 3464 section 2.3: Original-Recipient comes before Final-Recipient.
    assert list(block.keys())[:2] == ["Original-Recipient", "Final-Recipient"]


def test_report_orcpt_and_notify_come_from_envelope_when_left_open() -> None:
    env = envelope(Recipient("bob@example.net", notify=("NEVER",)),
                   Recipient("Carol@Example.org", orcpt="rfc822;c@example.org"))
    reports = [RecipientReport("bob@example.net", "failed", "5.1.1"),
               RecipientReport("carol@example.org", "failed", "5.1.1")]
    n = must(build_notification(env, reports, ORIGINAL, reporting_mta=HOST, now=NOW,
                                kind="failure"))
    blocks = dsn_blocks(parse(n.message))
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; carol@example.org"]
    assert blocks[1]["Original-Recipient"] == "rfc822; c@example.org"


@pytest.mark.parametrize("action, given, expected", [
    ("failed", "4.4.1", "5.4.1"), ("failed", "", "5.0.0"), ("failed", "garbage", "5.0.0"),
    ("delayed", "5.1.1", "4.1.1"), ("delivered", "", "2.0.0"), ("failed", "5.7.1", "5.7.1"),
])
def test_status_class_agrees_with_action(action: Any, given: str, expected: str) -> None:
    env = envelope(Recipient("bob@example.net", notify=("SUCCESS", "FAILURE", "DELAY")))
    kind = {"failed": "failure", "delayed": "delay", "delivered": "success"}[action]
    n = must(build_notification(env, [RecipientReport("bob@example.net", action, given)],
                                ORIGINAL, reporting_mta=HOST, now=NOW, kind=cast(Any, kind)))
    assert dsn_blocks(parse(n.message))[1]["Status"] == expected


# --- NOTIFY (RFC 3461 section 4.1) ----------------------------------------------------------

NOTIFY_MATRIX = [
    # notify,                  failure, delay, success
    ((), True, True, False),
    (("NEVER",), False, False, False),
    (("SUCCESS",), False, False, True),
    (("FAILURE",), True, False, False),
    (("DELAY",), False, True, False),
    (("SUCCESS", "FAILURE"), True, False, True),
    (("FAILURE", "DELAY"), True, True, False),
    (("success", "failure", "delay"), True, True, True),
]


@pytest.mark.parametrize("kind", ["failure", "delay", "success"])
@pytest.mark.parametrize("flags, on_failure, on_delay, on_success", NOTIFY_MATRIX)
def test_notify_matrix(kind: Any, flags: tuple[str, ...], on_failure: bool, on_delay: bool,
                       on_success: bool) -> None:
    expected = {"failure": on_failure, "delay": on_delay, "success": on_success}[kind]
    rcpt = Recipient("bob@example.net", notify=flags, status=KIND_STATUS[kind],
                     dsn=KIND_DSN[kind], reason="whatever happened")
    assert wants_notice(rcpt, KIND_ACTION[kind]) is expected
    n = notify(envelope(rcpt), kind)
    assert (n is not None) is expected
    if n is not None:
        block = dsn_blocks(parse(n.message))[1]
        assert block["Action"] == KIND_ACTION[kind]
        assert block["Status"] == KIND_DSN[kind]


def test_relayed_and_expanded_count_as_success() -> None:
    assert wants_notice(Recipient("a@b", notify=("SUCCESS",)), "relayed")
    assert wants_notice(Recipient("a@b", notify=("SUCCESS",)), "expanded")
    assert not wants_notice(Recipient("a@b"), "relayed")
    rcpt = Recipient("bob@example.net", notify=("SUCCESS",), status="delivered", dsn="2.0.0",
                     reason="250 2.0.0 Ok")
    env = envelope(rcpt)
    n = must(build_notification(env, reports_from_envelope(env, "success", relayed={rcpt.address}),
                                ORIGINAL, reporting_mta=HOST, now=NOW, kind="success"))
    msg = parse(n.message)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    assert dsn_blocks(msg)[1]["Action"] == "relayed"
    assert "successfully delivered" in text_of(parts(msg)[0])


def test_only_recipients_that_asked_are_reported() -> None:
    env = envelope(bounced("a@example.net", notify=("NEVER",)), bounced("b@example.net"),
                   bounced("c@example.net", notify=("SUCCESS",)),
                   Recipient("d@example.net", status="delivered", dsn="2.0.0"))
    msg = parse(must(notify(env)).message)
    assert [b["Final-Recipient"] for b in dsn_blocks(msg)[1:]] == ["rfc822; b@example.net"]
    assert "a@example.net" not in text_of(parts(msg)[0])


def test_kind_filters_actions() -> None:
    env = envelope(Recipient("a@example.net", notify=("SUCCESS", "FAILURE", "DELAY")))
    reports = [RecipientReport("a@example.net", "delivered", "2.0.0")]
    assert build_notification(env, reports, ORIGINAL, reporting_mta=HOST, now=NOW,
                              kind="failure") is None


# --- RET (RFC 3461 section 4.3) ---------------------------------------------------------------

@pytest.mark.parametrize("ret", [None, "FULL", "full"])
def test_ret_full_returns_the_whole_message(ret: str | None) -> None:
    returned = parts(parse(must(notify(envelope(bounced(), ret=ret))).message))[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned["Content-Description"] == "Undelivered Message"
    assert b"The secret body line." in returned.as_bytes()


def test_ret_hdrs_returns_only_the_header() -> None:
    msg = parse(must(notify(envelope(bounced(), ret="HDRS"))).message)
    returned = parts(msg)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    content = text_of(returned)
    assert "Subject: lunch" in content and "Received: from client.example.com" in content
    assert "secret body" not in content


@pytest.mark.parametrize("kind", ["delay", "success"])
def test_delay_and_success_return_headers_only(kind: Any) -> None:
    rcpt = Recipient("bob@example.net", notify=("SUCCESS", "DELAY"), status=KIND_STATUS[kind],
                     dsn=KIND_DSN[kind], reason="x")
    msg = parse(must(notify(envelope(rcpt, ret="FULL"), kind)).message)
    assert parts(msg)[2].get_content_type() == "text/rfc822-headers"
    assert b"secret body" not in msg.as_bytes()


def test_delay_warning_wording_and_will_retry_until() -> None:
    rcpt = Recipient("bob@example.net", status="deferred", dsn="4.4.1",
                     reason="connect to mx.example.net[192.0.2.1]:25: Connection refused")
    n = must(notify(envelope(rcpt), "delay", delay_warning_time=4 * 3600))
    msg = parse(n.message)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text = text_of(parts(msg)[0])
    assert "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #" in text
    assert "for more than 4 hour(s)" in text and "until it is 5 day(s) old" in text
    block = dsn_blocks(msg)[1]
    assert block["Action"] == "delayed" and block["Status"] == "4.4.1"
    assert block["Remote-MTA"] == "dns; mx.example.net"
    assert block["Will-Retry-Until"]


def test_empty_original_omits_the_third_part() -> None:
    msg = parse(must(notify(envelope(bounced()), original=b"")).message)
    assert len(parts(msg)) == 2


def test_lf_only_original_is_returned_in_crlf() -> None:
    n = must(notify(envelope(bounced()), original=ORIGINAL.replace(b"\r\n", b"\n")))
    assert not re.search(rb"(?<!\r)\n", n.message)
    assert b"See you at noon.\r\n" in n.message


# --- size cap (Postfix bounce_size_limit) -------------------------------------------------

def test_big_original_comes_back_as_header_with_a_note() -> None:
    big = ORIGINAL + b"x" * 70 + b"\r\n"
    big += b"y" * 76 * 4000
    n = must(notify(envelope(bounced()), original=big))
    assert len(n.message) < BOUNCE_SIZE_LIMIT
    msg = parse(n.message)
    returned = parts(msg)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "Subject: lunch" in text_of(returned)
    assert f"larger than {BOUNCE_SIZE_LIMIT} bytes" in text_of(parts(msg)[0])


def test_huge_header_is_cut_at_a_field_boundary() -> None:
    header = b"".join(b"X-Filler-%d: %s\r\n\tcontinued\r\n" % (i, b"z" * 60) for i in range(3000))
    n = must(notify(envelope(bounced(), ret="HDRS"), original=header + b"\r\nbody\r\n",
                    size_limit=10_000))
    msg = parse(n.message)
    content = text_of(parts(msg)[2])
    assert len(content) <= 10_000
    assert content.endswith("\tcontinued\n")
    assert "truncated" in text_of(parts(msg)[0])


def test_message_under_the_limit_is_not_cut() -> None:
    body = ORIGINAL + b"z" * 70 * 100 + b"\r\n"
    returned = parts(parse(must(notify(envelope(bounced()), original=body)).message))[2]
    assert returned.get_content_type() == "message/rfc822"


# --- loops: null sender and double bounces ------------------------------------------------

@pytest.mark.parametrize("sender", ["", "<>", " "])
@pytest.mark.parametrize("kind", ["failure", "delay", "success"])
def test_null_sender_never_gets_a_notice(sender: str, kind: Any) -> None:
    rcpt = Recipient("bob@example.net", notify=("SUCCESS", "FAILURE", "DELAY"),
                     status=KIND_STATUS[kind], dsn=KIND_DSN[kind], reason="x")
    assert notify(envelope(rcpt, sender=sender), kind) is None


def test_failed_bounce_goes_to_the_postmaster() -> None:
    bounce = must(notify(envelope(bounced())))
    env = envelope(bounced("alice@example.com", notify=("NEVER",)), sender="")
    n = must(build_double_bounce(env, reports_from_envelope(env, "failure"), bounce.message,
                                 reporting_mta=HOST, postmaster="postmaster@example.org", now=NOW))
    assert n.sender == "" and n.recipients == ["postmaster@example.org"]
    msg = parse(n.message)
    assert msg["To"] == "postmaster@example.org"
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert dsn_blocks(msg)[1]["Final-Recipient"] == "rfc822; alice@example.com"
    returned = parts(msg)[2]
    assert returned.get_content_type() == "message/rfc822"
    assert cast(list[Message], returned.get_payload())[0]["Subject"] == (
        "Undelivered Mail Returned to Sender")
    # ... and a failing postmaster copy is not reported again (the loop ends here).
    env2 = envelope(bounced("postmaster@example.org"), sender="")
    assert build_double_bounce(env2, reports_from_envelope(env2, "failure"), n.message,
                               reporting_mta=HOST, postmaster="postmaster@example.org",
                               now=NOW) is None
    env3 = envelope(bounced("john@example.org", orcpt="rfc822;postmaster@example.org"), sender="")
    assert build_double_bounce(env3, reports_from_envelope(env3, "failure"), ORIGINAL,
                               reporting_mta=HOST, postmaster="postmaster@example.org",
                               now=NOW) is None
    env4 = envelope(bounced("john@example.org"), sender="")
    assert build_double_bounce(env4, reports_from_envelope(env4, "failure"), n.message,
                               reporting_mta=HOST, postmaster="postmaster@example.org",
                               now=NOW) is None


def test_double_bounce_only_for_null_sender_failures() -> None:
    env = envelope(bounced())
    assert build_double_bounce(env, reports_from_envelope(env, "failure"), ORIGINAL,
                               reporting_mta=HOST, postmaster="postmaster", now=NOW) is None
    env = envelope(Recipient("a@example.net", status="deferred", dsn="4.0.0"), sender="")
    assert build_double_bounce(env, reports_from_envelope(env, "delay"), ORIGINAL,
                               reporting_mta=HOST, postmaster="postmaster", now=NOW) is None


def test_bare_postmaster_gets_the_reporting_host() -> None:
    env = envelope(bounced("alice@example.com"), sender="")
    n = must(build_double_bounce(env, reports_from_envelope(env, "failure"), ORIGINAL,
                                 reporting_mta=HOST, postmaster="postmaster", now=NOW))
    assert n.recipients == [f"postmaster@{HOST}"]


# --- hostile input ------------------------------------------------------------------------

def test_crlf_in_values_cannot_create_headers_or_fields() -> None:
    evil = "550 no\r\nBcc: victim@example.com\r\n\r\nAction: delivered\nX-Evil: 1\rX-Evil2: 2"
    env = envelope(bounced("bob@example.net\r\nX-Evil: 3", reason=evil,
                           orcpt="rfc822;x\r\nX-Evil: 4"),
                   sender="alice@example.com\r\nBcc: victim@example.com",
                   envid="ID\r\nX-Evil: 5", queue_id="Q\r\nX-Evil: 6")
    n = must(build_notification(
        env, reports_from_envelope(env, "failure"), ORIGINAL, reporting_mta="h\r\nX-Evil: 7",
        postmaster="pm\r\nX-Evil: 8", now=NOW, kind="failure"))
    msg = parse(n.message)
    assert msg["Bcc"] is None and msg["X-Evil"] is None and not msg.defects
    assert set(msg.keys()) == {"From", "Subject", "To", "Auto-Submitted", "Date", "Message-ID",
                               "MIME-Version", "Content-Type"}
    head, block = dsn_blocks(msg)
    assert block["Action"] == "failed"
    assert all(b["X-Evil"] is None and b["Bcc"] is None for b in (head, block))
    assert "X-Evil" not in block["Final-Recipient"].split(";")[0]
    assert len(parts(msg)) == 3


def test_undecodable_input_is_masked_not_fatal() -> None:
    env = envelope(bounced("b\udcffb@example.net", reason="550 bad \udce9"),
                   sender="a\udcffa@example.com", envid="\udcff")
    msg = parse(must(notify(env)).message)
    block = dsn_blocks(msg)[1]
    assert block["Final-Recipient"] == "rfc822; b?b@example.net"
    assert block["Diagnostic-Code"] == "smtp; 550 bad ?"


def test_long_diagnostics_are_folded_below_the_line_limit() -> None:
    reason = "550 " + " ".join(["word"] * 2000) + " " + "x" * 3000
    n = must(notify(envelope(bounced(reason=reason))))
    assert max(len(line) for line in n.message.split(b"\r\n")) <= 998
    assert dsn_blocks(parse(n.message))[1]["Diagnostic-Code"].startswith("smtp; 550 word word")


def test_boundary_never_occurs_in_the_original() -> None:
    first = must(notify(envelope(bounced())))
    boundary = parse(first.message).get_boundary()
    assert boundary
    hostile = ORIGINAL + f"--{boundary}\r\n--{boundary}.1--\r\n".encode()
    msg = parse(must(notify(envelope(bounced()), original=hostile)).message)
    assert msg.get_boundary() not in (boundary, f"{boundary}.1")
    assert len(parts(msg)) == 3


# --- SMTPUTF8 (RFC 6531/6533) ---------------------------------------------------------------

def test_utf8_addresses_use_global_types() -> None:
    original = "From: jörg@exämple.com\r\nSubject: grüße\r\n\r\nhallo\r\n".encode()
    env = envelope(bounced("δοκιμή@παράδειγμα.δοκιμή", reason="550 5.1.1 nö"),
                   sender="jörg@exämple.com", smtputf8=True)
    n = must(notify(env, original=original))
    assert n.smtputf8 and n.eight_bit
    msg = parse(n.message)
    status = parts(msg)[1]
    assert status.get_content_type() == "message/global-delivery-status"
    # The standard library has no parser for the global type: read the raw part.
    start = n.message.index(b"Content-Type: message/global-delivery-status")
    text = n.message[start:n.message.index(f"--{msg.get_boundary()}".encode(), start)].decode()
    assert "\r\nFinal-Recipient: utf-8; δοκιμή@παράδειγμα.δοκιμή\r\n" in text
    assert "\r\nX-Mailroom-Sender: utf-8; jörg@exämple.com\r\n" in text
    assert parts(msg)[2].get_content_type() == "message/global"


def test_ascii_report_masks_non_ascii_text() -> None:
    n = must(notify(envelope(bounced(reason="550 5.1.1 Benutzer unbekannt: Jörg"))))
    assert not n.smtputf8 and not n.eight_bit
    block = dsn_blocks(parse(n.message))[1]
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 Benutzer unbekannt: J?rg"


def test_8bit_original_is_declared() -> None:
    original = b"From: a@example.com\r\nSubject: x\r\n\r\ncaf\xc3\xa9\r\n"
    n = must(notify(envelope(bounced(), body_type="8BITMIME"), original=original))
    assert n.eight_bit and not n.smtputf8
    msg = parse(n.message)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert parts(msg)[2]["Content-Transfer-Encoding"] == "8bit"


# --- reason parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("reason, expected", [
    (REMOTE_REASON, ("smtp", "550 5.1.1 <bob@example.net>: Recipient address rejected: User "
                     "unknown in virtual mailbox table", "mx.example.net")),
    ("host mx.example.net[192.0.2.1] refused to talk to me: 554 go away",
     ("smtp", "554 go away", "mx.example.net")),
    ("552 5.2.2 mailbox full", ("smtp", "552 5.2.2 mailbox full", None)),
    ("connect to mx.example.net[192.0.2.1]:25: Connection refused",
     ("X-Mailroom", "connect to mx.example.net[192.0.2.1]:25: Connection refused",
      "mx.example.net")),
    ('unknown user: "x@example.org"', ("X-Mailroom", 'unknown user: "x@example.org"', None)),
])
def test_diagnostic_from_reason(reason: str, expected: tuple[str, str, str | None]) -> None:
    assert diagnostic_from_reason(reason) == expected


# --- property: anything in, a parseable report out -------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=300)
_address = st.builds(lambda local, dom: f"{local}@{dom}", _text.filter(bool), _text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender=st.one_of(_address, st.just("")), rcpts=st.lists(st.tuples(_address, _text, st.sampled_from(
        ["5.1.1", "4.4.1", "", "9.9.9", "5.0.0 junk"]), st.one_of(st.none(), _text)),
        min_size=1, max_size=4),
    envid=st.one_of(st.none(), _text), ret=st.sampled_from([None, "FULL", "HDRS", "bogus"]),
    original=st.binary(max_size=2000), smtputf8=st.booleans(), host=_text,
    kind=st.sampled_from(["failure", "delay", "success"]),
)
def test_random_input_never_raises_and_always_parses(
    sender: str, rcpts: list[tuple[str, str, str, str | None]], envid: str | None,
    ret: str | None, original: bytes, smtputf8: bool, host: str, kind: Any,
) -> None:
    env = envelope(*(Recipient(a, status=KIND_STATUS[kind], dsn=d, reason=r, orcpt=o,
                               notify=("SUCCESS", "FAILURE", "DELAY"))
                     for a, r, d, o in rcpts),
                   sender=sender, envid=envid, ret=ret, smtputf8=smtputf8)
    reports = reports_from_envelope(env, kind)
    n = build_notification(env, reports, original, reporting_mta=host, now=NOW, kind=kind)
    if sender.strip() in ("", "<>"):
        assert n is None
        if kind == "failure":  # the failed bounce: at most one postmaster copy, parseable
            double = build_double_bounce(env, reports, original, reporting_mta=host,
                                         postmaster="postmaster", now=NOW)
            if double is not None:
                assert parse(double.message).get_content_type() == "multipart/report"
        return
    n = must(n)
    assert n.sender == ""
    msg = parse(n.message)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert set(msg.keys()) == {"From", "Subject", "To", "Auto-Submitted", "Date", "Message-ID",
                               "MIME-Version", "Content-Type"} | (
        {"Content-Transfer-Encoding"} if n.eight_bit else set())
    body_parts = parts(msg)
    assert len(body_parts) in (2, 3)
    status = body_parts[1]
    if status.get_content_type() == "message/delivery-status":
        blocks = cast(list[Message], status.get_payload())
        assert len(blocks) == 1 + len(rcpts)
        for block in blocks[1:]:
            assert block["Action"] == KIND_ACTION[kind]
            assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", block["Status"])
            assert block["Status"][0] == KIND_DSN[kind][0]
    else:
        assert status.get_content_type() == "message/global-delivery-status"
    head = n.message[: n.message.index(b"\r\n--", n.message.index(b"Delivery report"))]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
