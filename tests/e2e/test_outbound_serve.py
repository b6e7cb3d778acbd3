"""Outbound through `mailroom serve`: relay for an authenticated user, retries, bounces."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.fakemx import FakeMX
from tests.e2e.server import HOST, MailroomServer, RawSMTP

GUIDE_MESSAGE = b"From: john@example.org\r\nTo: lisa@example.com\r\nSubject: hi lisa\r\n\r\nHello Lisa.\r\n"


@pytest.fixture
def fake_mx() -> Iterator[FakeMX]:
    mx = FakeMX().start()
    yield mx
    mx.stop()


def route_to(mx: FakeMX, **edits: str) -> dict[str, str]:
    return {
        "transport_maps": f"inline:{{ example.com=smtp:[127.0.0.1]:{mx.port} }}",
        "mynetworks": "",
        **edits,
    }


def submit_as_john(server: MailroomServer, rcpt: str = "lisa@example.com") -> None:
    with smtplib.SMTP(HOST, server.submission_port, timeout=20) as smtp:
        smtp.starttls(context=server.ssl_context())
        smtp.login("john@example.org", "summersun")
        smtp.sendmail("john@example.org", [rcpt], GUIDE_MESSAGE)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_authenticated_user_relays_to_the_remote_mx(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    server = mailroom_server_factory(**route_to(fake_mx))
    submit_as_john(server)
    wait_until(lambda: len(fake_mx.messages) == 1)
    received = fake_mx.messages[0]
    assert received.mail_from == "john@example.org" and received.rcpts == ["lisa@example.com"]
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert "by mail.example.org (mailroom) with ESMTPSA" in message["Received"]
    assert message["Subject"] == "hi lisa"
    log = server.wait_for_log(lambda text: "status=sent" in text and "lisa@example.com" in text)
    line = next(x for x in log.splitlines() if "to=<lisa@example.com>" in x and "status=sent" in x)
    assert f"relay=127.0.0.1[127.0.0.1]:{fake_mx.port}" in line
    assert "delay=" in line and "dsn=2.0.0" in line
    wait_until(lambda: not server.queue_files())


def test_permanent_rcpt_refusal_bounces_to_the_sender(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    fake_mx.rcpt_reply = lambda address, _n: f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    server = mailroom_server_factory(**route_to(fake_mx))
    submit_as_john(server)
    server.wait_for_maildir(1)
    (bounce,) = server.messages()
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    status = bounce.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    text = status.as_string()
    assert "Status: 5.1.1" in text
    assert "Action: failed" in text
    assert "Final-Recipient: rfc822; lisa@example.com" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1" in text
    assert bounce["Return-Path"] == "<>"
    assert len(fake_mx.messages) == 0


def test_temporary_refusal_is_retried_and_delivered_once(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    fake_mx.rcpt_reply = lambda _address, n: "450 4.2.0 Try again later" if n == 1 else "250 2.1.5 Ok"
    server = mailroom_server_factory(**route_to(fake_mx, minimal_backoff_time="1s", maximal_backoff_time="2s", queue_run_delay="1s"))
    submit_as_john(server)
    wait_until(lambda: len(fake_mx.messages) == 1)
    log = server.wait_for_log(lambda text: "status=sent" in text and "lisa@example.com" in text)
    assert "status=deferred" in log
    time.sleep(1.5)
    assert len(fake_mx.messages) == 1
    assert server.maildir_files() == []  # no bounce


def test_temporary_refusal_bounces_after_maximal_queue_lifetime(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    fake_mx.rcpt_reply = lambda _address, _n: "450 4.2.0 Mailbox busy"
    server = mailroom_server_factory(
        **route_to(fake_mx, minimal_backoff_time="1s", maximal_backoff_time="1s", queue_run_delay="1s", maximal_queue_lifetime="3s")
    )
    submit_as_john(server)
    server.wait_for_maildir(1, timeout=20)
    (bounce,) = server.messages()
    assert bounce.get_content_type() == "multipart/report"
    text = bounce.get_payload()[1].as_string()
    assert "Status: 5.2.0" in text or "Status: 5." in text
    assert fake_mx.attempts["lisa@example.com"] >= 2


def test_queue_list_show_flush_and_delete_while_serving(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    attempts_allowed = {"ok": False}
    fake_mx.rcpt_reply = lambda _a, _n: "250 2.1.5 Ok" if attempts_allowed["ok"] else "451 4.3.0 Not now"
    server = mailroom_server_factory(**route_to(fake_mx, minimal_backoff_time="1h", maximal_backoff_time="2h"))
    assert server.cli("queue", "list").out == "Mail queue is empty\n"
    submit_as_john(server)
    submit_as_john(server, rcpt="other@example.com")
    wait_until(lambda: fake_mx.attempts.get("other@example.com", 0) >= 1)
    listing = server.cli("queue", "list").out
    assert "john@example.org" in listing and "lisa@example.com" in listing
    assert "451 4.3.0 Not now" in listing
    assert listing.rstrip().endswith("in 2 Requests.")
    first = listing.splitlines()[1].split()[0]
    shown = server.cli("queue", "show", first)
    assert shown.code == 0 and "sender: john@example.org" in shown.out and "Subject: hi lisa" in shown.out
    deleted = server.cli("queue", "delete", first)
    assert deleted.code == 0 and f"{first}: removed" in deleted.err
    attempts_allowed["ok"] = True
    assert server.cli("queue", "flush").code == 0
    wait_until(lambda: len(fake_mx.messages) == 1)
    wait_until(lambda: server.cli("queue", "list").out == "Mail queue is empty\n")
    bad = server.cli("queue", "show", "NOSUCHID")
    assert bad.code != 0 and bad.err.startswith("mailroom: error: ")


def test_restart_during_a_retry_interval_delivers_exactly_once(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    fake_mx.rcpt_reply = lambda _address, n: "450 4.2.0 Try again later" if n == 1 else "250 2.1.5 Ok"
    server = mailroom_server_factory(**route_to(fake_mx, minimal_backoff_time="2s", maximal_backoff_time="2s", queue_run_delay="1s"))
    submit_as_john(server)
    wait_until(lambda: fake_mx.attempts.get("lisa@example.com", 0) == 1)
    assert server.terminate() == 0
    assert len(server.queue_files()) == 1  # still queued across the restart
    server.start()
    wait_until(lambda: len(fake_mx.messages) == 1)
    time.sleep(2.5)  # another retry interval: nothing is sent twice
    assert len(fake_mx.messages) == 1
    wait_until(lambda: not server.queue_files())


def test_notify_success_relayed_to_an_mta_without_dsn_gets_a_relayed_notice(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    server = mailroom_server_factory(**route_to(fake_mx))
    with smtplib.SMTP(HOST, server.submission_port, timeout=20) as smtp:
        smtp.starttls(context=server.ssl_context())
        smtp.login("john@example.org", "summersun")
        smtp.sendmail("john@example.org", ["lisa@example.com"], GUIDE_MESSAGE, rcpt_options=["NOTIFY=SUCCESS"])
    wait_until(lambda: len(fake_mx.messages) == 1)  # the fake MX offers no DSN
    server.wait_for_maildir(1)
    (notice,) = server.messages()
    assert notice.get_content_type() == "multipart/report"
    report = notice.get_payload()[1].as_string()
    assert "Action: relayed" in report and "Final-Recipient: rfc822; lisa@example.com" in report


def test_etrn_flushes_fast_flush_domains_only(
    mailroom_server_factory: Callable[..., MailroomServer], fake_mx: FakeMX
) -> None:
    allowed = {"ok": False}
    fake_mx.rcpt_reply = lambda _a, _n: "250 2.1.5 Ok" if allowed["ok"] else "451 4.3.0 Not now"
    server = mailroom_server_factory(
        **route_to(fake_mx, minimal_backoff_time="1h", maximal_backoff_time="2h", fast_flush_domains="example.com")
    )
    submit_as_john(server)
    wait_until(lambda: fake_mx.attempts.get("lisa@example.com", 0) == 1)
    allowed["ok"] = True
    client = RawSMTP(server.smtp_port)
    client.greeting()
    client.ehlo()
    assert client.cmd_line("ETRN example.net") == "459 <example.net>: service unavailable"
    assert client.cmd_line("ETRN example.com") == "250 Queuing started"
    client.send(b"QUIT\r\n")
    wait_until(lambda: len(fake_mx.messages) == 1)
