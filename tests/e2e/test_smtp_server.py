"""Issue 3 acceptance: the SMTP listeners of a real `mailroom serve`, over loopback sockets.

Written against /work/shared/spec/interface.md, peers.md and the ISPmail guide dialog.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest

from tests.e2e.server import (
    GUIDE_AUTH_PLAIN,
    HOST,
    JOHN,
    PASSWORD,
    MailroomServer,
    RawSMTP,
    assert_one_error_line,
    auth_plain,
    free_ports,
    port_accepts,
)

Factory = Callable[..., MailroomServer]

BANNER = "220 mail.example.org ESMTP mailroom"
PLAIN_EHLO = [
    "PIPELINING",
    "SIZE 10240000",
    "VRFY",
    "ETRN",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
]
TLS_EHLO = [
    "PIPELINING",
    "SIZE 10240000",
    "VRFY",
    "ETRN",
    "AUTH PLAIN LOGIN",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
]
OPTIONAL_TAIL = ["SMTPUTF8", "CHUNKING"]
RELAY_DENIED = "554 5.7.1 <lisa@example.com>: Relay access denied"
USER_UNKNOWN = "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table"


def untrusted(factory: Factory, **edits: str) -> MailroomServer:
    """A server that trusts nobody (the guide's `postconf -e mynetworks=`), with outbound
    mail pointed at a closed loopback port so nothing ever leaves the machine."""
    (dead_port,) = free_ports(1)
    edits = {"mynetworks": "", "relayhost": f"[127.0.0.1]:{dead_port}", **edits}
    return factory(**edits)


def assert_keywords(keywords: list[str], expected: list[str], transcript: str) -> None:
    head, tail = keywords[: len(expected)], keywords[len(expected) :]
    assert head == expected, f"EHLO keywords {keywords} do not start with {expected}\n{transcript}"
    assert all(k in OPTIONAL_TAIL for k in tail), f"unexpected EHLO keywords {tail}\n{transcript}"
    assert tail == [k for k in OPTIONAL_TAIL if k in tail], (
        f"SMTPUTF8 must precede CHUNKING: {tail}"
    )


def message(
    subject: str, sender: str = "someone@example.net", to: str = JOHN, body: str = "hello"
) -> str:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.net>\r\n\r\n{body}\r\n"
    )


def send_data(c: RawSMTP, text: str) -> str:
    line = c.cmd_line("DATA")
    assert line.startswith("354 "), f"{line}\n{c.dump()}"
    c.send(text + ".\r\n")
    return c.reply_line()


def tls_login(c: RawSMTP, server: MailroomServer) -> None:
    c.ehlo()
    c.starttls(server.ssl_context())
    c.ehlo()
    line = c.cmd_line(f"AUTH PLAIN {GUIDE_AUTH_PLAIN}")
    assert line == "235 2.7.0 Authentication successful", c.dump()


def first_received(msg) -> str:  # type: ignore[no-untyped-def]
    values = msg.get_all("Received") or []
    assert values, f"no Received header in:\n{msg}"
    return re.sub(r"\s+", " ", values[0])


# -- the guide dialog ------------------------------------------------------------------


def test_greeting_and_plaintext_ehlo(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        assert c.greeting() == BANNER
        lines = c.ehlo("example.com")
        assert lines[0] == "mail.example.org", c.dump()
        assert not any(k.upper().startswith("AUTH") for k in lines[1:]), c.dump()
        assert_keywords(lines[1:], PLAIN_EHLO, c.dump())
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye"


def test_plaintext_auth_refused(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo("example.com")
        code, lines = c.cmd(f"AUTH PLAIN {GUIDE_AUTH_PLAIN}")
        assert 500 <= code < 600, c.dump()
        # and the session is still not authenticated: relaying stays refused
        assert c.cmd_line("MAIL FROM:<john@example.org>").startswith("250"), c.dump()
        assert c.cmd_line("RCPT TO:<lisa@example.com>") == RELAY_DENIED, c.dump()


def test_starttls_auth_quit_guide_dialog(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        assert c.greeting() == BANNER
        c.ehlo("example.com")
        line = c.cmd_line("STARTTLS")
        assert line == "220 2.0.0 Ready to start TLS", c.dump()
        c.sock = mailroom_server.ssl_context().wrap_socket(
            c.sock, server_hostname="mail.example.org"
        )
        lines = c.ehlo("example.com")
        assert "AUTH PLAIN LOGIN" in lines[1:], c.dump()
        assert "STARTTLS" not in lines[1:], c.dump()
        assert_keywords(lines[1:], TLS_EHLO, c.dump())
        assert (
            c.cmd_line(f"AUTH PLAIN {GUIDE_AUTH_PLAIN}") == "235 2.7.0 Authentication successful"
        ), c.dump()
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye", c.dump()


def test_wrong_password(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.starttls(mailroom_server.ssl_context())
        c.ehlo()
        line = c.cmd_line(f"AUTH PLAIN {auth_plain(password='wintersun')}")
        assert line.startswith("535 5.7.8 Error: authentication failed: "), c.dump()
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye", c.dump()


def test_auth_login_with_smtplib(mailroom_server: MailroomServer) -> None:
    with smtplib.SMTP(HOST, mailroom_server.smtp_port, timeout=10) as s:
        s.starttls(context=mailroom_server.ssl_context())
        s.ehlo()
        s.user, s.password = JOHN, PASSWORD
        code, text = s.auth("LOGIN", s.auth_login)
        assert code == 235, text


# -- delivery and relay ------------------------------------------------------------------


def test_inbound_delivery_headers(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo("client.example.net")
        assert c.cmd_line("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok", c.dump()
        assert c.cmd_line("RCPT TO:<john@example.org>") == "250 2.1.5 Ok", c.dump()
        line = send_data(c, message("inbound-1"))
        assert re.fullmatch(r"250 2\.0\.0 Ok: queued as \S+", line), c.dump()
        c.cmd_line("QUIT")
    (path,) = server.wait_for_maildir(1)
    assert path.parent.name == "new", path
    (msg,) = server.messages()
    assert msg["Return-Path"] == "<someone@example.net>", msg
    assert msg["Delivered-To"] == JOHN, msg
    received = first_received(msg)
    assert "[127.0.0.1]" in received, received
    assert "by mail.example.org" in received, received
    assert re.search(r"\bwith ESMTP\b", received), received
    assert msg["Subject"] == "inbound-1"


def test_inbound_over_starttls_says_esmtps(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.starttls(server.ssl_context())
        c.ehlo()
        c.cmd_line("MAIL FROM:<someone@example.net>")
        assert c.cmd_line("RCPT TO:<john@example.org>").startswith("250"), c.dump()
        assert send_data(c, message("inbound-tls")).startswith("250 2.0.0 Ok: queued as "), c.dump()
    server.wait_for_maildir(1)
    (msg,) = server.messages()
    assert re.search(r"\bwith ESMTPS", first_received(msg)), first_received(msg)


def test_relay_denied_without_auth(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd_line("MAIL FROM:<someone@example.net>").startswith("250"), c.dump()
        assert c.cmd_line("RCPT TO:<lisa@example.com>") == RELAY_DENIED, c.dump()
    assert server.queue_files() == [] or not any(
        b"lisa@example.com" in p.read_bytes() for p in server.queue_files()
    )


def test_relay_with_auth_is_queued(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        tls_login(c, server)
        assert c.cmd_line("MAIL FROM:<john@example.org>") == "250 2.1.0 Ok", c.dump()
        assert c.cmd_line("RCPT TO:<lisa@example.com>") == "250 2.1.5 Ok", c.dump()
        line = send_data(c, message("outbound-1", sender=JOHN, to="lisa@example.com"))
        m = re.fullmatch(r"250 2\.0\.0 Ok: queued as (\S+)", line)
        assert m, c.dump()
        assert c.cmd_line("QUIT") == "221 2.0.0 Bye"
    files = server.queue_files()
    assert any(b"lisa@example.com" in p.read_bytes() for p in files), (files, server.log()[-2000:])


def test_unknown_local_recipient(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.cmd_line("MAIL FROM:<someone@example.net>")
        assert c.cmd_line("RCPT TO:<nobody@example.org>") == USER_UNKNOWN, c.dump()


def test_postmaster_alias_reaches_john(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.cmd_line("MAIL FROM:<someone@example.net>")
        assert c.cmd_line("RCPT TO:<postmaster@example.org>").startswith("250 "), c.dump()
        assert send_data(c, message("to-postmaster", to="postmaster@example.org")).startswith(
            "250 "
        ), c.dump()
    server.wait_for_maildir(1)
    (msg,) = server.messages()
    assert msg["Subject"] == "to-postmaster"


RELAY_TRICKS = [
    "lisa%example.com@example.org",
    "example.com!lisa@example.org",
    '"lisa@example.com"@example.org',
    "@example.org:lisa@example.com",
    "lisa@example.com.",
    "LISA@EXAMPLE.COM",
    "lisa@[192.0.2.1]",
]


@pytest.mark.parametrize("address", RELAY_TRICKS)
def test_relay_tricks_refused(mailroom_server_factory: Factory, address: str) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd_line("MAIL FROM:<someone@example.net>").startswith("250"), c.dump()
        code, _ = c.cmd(f"RCPT TO:<{address}>")
        assert code >= 400, f"relay trick accepted:\n{c.dump()}"
        # even if the RCPT were wrongly accepted, nothing may be queued without a recipient
        code, _ = c.cmd("DATA")
        if code == 354:
            c.send(message("trick") + ".\r\n")
            code, _ = c.reply()
            assert code >= 400, f"relay trick queued:\n{c.dump()}"
        else:
            assert code >= 400, c.dump()
    server.settle(0.3)
    assert server.queue_files() == [], server.queue_files()
    assert server.maildir_files() == []


# -- hostile clients ----------------------------------------------------------------------

SMUGGLE_SEPARATORS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.mark.parametrize("sep", list(SMUGGLE_SEPARATORS), ids=list(SMUGGLE_SEPARATORS))
def test_smtp_smuggling(mailroom_server_factory: Factory, sep: str) -> None:
    server = untrusted(mailroom_server_factory)
    tag = uuid.uuid4().hex[:8]
    payload = (
        f"From: <someone@example.net>\r\nTo: <john@example.org>\r\nSubject: outer-{tag}\r\n\r\nhello\r\n".encode()
        + b"x"
        + SMUGGLE_SEPARATORS[sep]
        + b"MAIL FROM:<smuggled@example.net>\r\nRCPT TO:<postmaster@example.org>\r\nDATA\r\n"
        + f"From: <smuggled@example.net>\r\nSubject: smuggled-{tag}\r\n\r\nevil\r\n.\r\nQUIT\r\n".encode()
    )
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.cmd_line("MAIL FROM:<someone@example.net>")
        assert c.cmd_line("RCPT TO:<john@example.org>").startswith("250"), c.dump()
        assert c.cmd_line("DATA").startswith("354"), c.dump()
        with contextlib.suppress(OSError):  # the server may hang up on a bare CR/LF
            c.send(payload)
        lines = c.read_all()
    queued = [ln for ln in lines if re.match(r"250 2\.0\.0 Ok: queued as ", ln)]
    assert len(queued) <= 1, f"smuggled a second message:\n{c.dump()}"
    if queued:
        server.wait_for_maildir(len(queued))
    server.settle(0.5)
    msgs = server.messages()
    assert len(msgs) == len(queued), (lines, [m["Subject"] for m in msgs])
    for msg in msgs:
        assert "smuggled" not in (msg["Return-Path"] or ""), msg
        assert not (msg["Subject"] or "").startswith("smuggled-"), msg


def test_starttls_command_injection(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.send("STARTTLS\r\nRSET\r\n")
        assert c.reply_line() == "220 2.0.0 Ready to start TLS", c.dump()
        extra = c.pending(0.3)
        assert extra == b"", f"server answered the injected command in plaintext: {extra!r}"
        c.sock = mailroom_server.ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        c.send("EHLO client.example.net\r\n")
        code, lines = c.reply()
        assert code == 250 and lines[0] == "mail.example.org" and len(lines) > 1, (
            f"first reply inside TLS is not the EHLO reply:\n{c.dump()}"
        )
        assert c.pending(0.3) == b"", c.dump()


def test_pipelining_replies_in_order(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.send(
            "MAIL FROM:<someone@example.net>\r\nRCPT TO:<john@example.org>\r\n"
            "RCPT TO:<nobody@example.org>\r\nDATA\r\n"
        )
        replies = [c.reply_line() for _ in range(4)]
        assert replies[0] == "250 2.1.0 Ok", c.dump()
        assert replies[1] == "250 2.1.5 Ok", c.dump()
        assert replies[2] == USER_UNKNOWN, c.dump()
        assert replies[3].startswith("354 "), c.dump()
        c.send(message("pipelined") + ".\r\nQUIT\r\n")
        assert c.reply_line().startswith("250 2.0.0 Ok: queued as "), c.dump()
        assert c.reply_line() == "221 2.0.0 Bye", c.dump()
    server.wait_for_maildir(1)


def test_size_declared_too_big(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        line = c.cmd_line("MAIL FROM:<a@example.net> SIZE=99999999")
        assert line.startswith("552 5.3.4"), c.dump()


def test_size_actual_message_too_big(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory, message_size_limit="10000")
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        assert "SIZE 10000" in c.ehlo()
        assert c.cmd_line("MAIL FROM:<a@example.net> SIZE=20000").startswith("552 5.3.4"), c.dump()
        assert c.cmd_line("MAIL FROM:<a@example.net>").startswith("250"), c.dump()
        assert c.cmd_line("RCPT TO:<john@example.org>").startswith("250"), c.dump()
        body = ("y" * 76 + "\r\n") * 300  # ~23 kB
        line = send_data(c, message("too-big", body=body))
        assert line.startswith("552 5.3.4"), c.dump()
        # the session stays usable after the refusal
        assert c.cmd_line("RSET").startswith("250"), c.dump()
    server.settle(0.5)
    assert server.maildir_files() == []
    assert server.queue_files() == [], server.queue_files()


# -- submission and submissions ------------------------------------------------------------


def test_submission_requires_tls_and_auth(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.submission_port) as c:
        assert c.greeting().startswith("220 "), c.dump()
        c.ehlo()
        line = c.cmd_line("MAIL FROM:<john@example.org>")
        assert line.startswith("530 5.7.0"), c.dump()
        c.starttls(server.ssl_context())
        lines = c.ehlo()
        assert "AUTH PLAIN LOGIN" in lines[1:], c.dump()
        line = c.cmd_line("MAIL FROM:<john@example.org>")
        assert line.startswith("530 5.7.0"), c.dump()


def test_submission_after_auth_sends_local_and_remote(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with smtplib.SMTP(HOST, server.submission_port, timeout=10) as s:
        s.starttls(context=server.ssl_context())
        s.login(JOHN, PASSWORD)
        refused = s.sendmail(JOHN, [JOHN, "lisa@example.com"], message("submitted", sender=JOHN))
        assert refused == {}
    server.wait_for_maildir(1)
    files = server.queue_files()
    assert any(b"lisa@example.com" in p.read_bytes() for p in files), (files, server.log()[-2000:])


def test_submissions_implicit_tls(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    ctx = server.ssl_context()
    # The certificate must verify for `localhost` (mbsync/fetchmail check DNS names only).
    with smtplib.SMTP_SSL("localhost", server.submissions_port, context=ctx, timeout=10) as s:
        code, _ = s.ehlo()
        assert code == 250
        code, text = s.mail(JOHN)
        assert code == 530 and text.startswith(b"5.7.0"), (code, text)
        s.rset()
        s.login(JOHN, PASSWORD)
        assert s.sendmail(JOHN, [JOHN], message("via-465", sender=JOHN)) == {}
    server.wait_for_maildir(1)
    # and by IP address too (SAN 127.0.0.1)
    with smtplib.SMTP_SSL(HOST, server.submissions_port, context=ctx, timeout=10) as s:
        s.login(JOHN, PASSWORD)


def test_submissions_rejects_untrusting_client(mailroom_server: MailroomServer) -> None:
    """A client that does not know our CA must fail the handshake (sanity of the fixture)."""
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL("localhost", mailroom_server.submissions_port, context=ctx, timeout=10)


# -- VRFY ---------------------------------------------------------------------------------


def test_vrfy_does_not_disclose(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        known = c.cmd_line("VRFY john@example.org")
        unknown = c.cmd_line("VRFY nobody@example.org")
    norm = [re.sub(r"(john|nobody)@example\.org", "X", r) for r in (known, unknown)]
    assert norm[0] == norm[1], c.dump()
    assert not known.startswith("550"), c.dump()


def test_vrfy_disabled(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory, disable_vrfy_command="yes")
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd_line("VRFY john@example.org").startswith("502 5.5.1"), c.dump()


# -- logs -----------------------------------------------------------------------------------


def test_log_shapes(mailroom_server_factory: Factory) -> None:
    server = untrusted(mailroom_server_factory)
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo("client.example.net")
        c.cmd_line("MAIL FROM:<someone@example.net>")
        assert c.cmd_line("RCPT TO:<lisa@example.com>") == RELAY_DENIED
        c.cmd_line("RSET")
        c.cmd_line("MAIL FROM:<someone@example.net>")
        c.cmd_line("RCPT TO:<john@example.org>")
        assert send_data(c, message("logged")).startswith("250 ")
        c.cmd_line("QUIT")
    server.wait_for_maildir(1)
    patterns = [
        r"mailroom/smtpd\[\d+\]: connect from (localhost|unknown)\[127\.0\.0\.1\]",
        r"NOQUEUE: reject: RCPT from (localhost|unknown)\[127\.0\.0\.1\]: 554 5\.7\.1 <lisa@example\.com>: "
        r"Relay access denied; from=<someone@example\.net> to=<lisa@example\.com> proto=ESMTP "
        r"helo=<client\.example\.net>",
        r"\b[0-9A-Za-z]+: to=<john@example\.org>, .*relay=.*, delay=.*, dsn=2\.0\.0, status=sent \(",
    ]
    text = server.wait_for_log(lambda t: all(re.search(p, t) for p in patterns))
    missing = [p for p in patterns if not re.search(p, text)]
    assert not missing, f"log lines missing: {missing}\n--- maillog:\n{text[-4000:]}"


# -- process control ------------------------------------------------------------------------


def ehlo_size(port: int) -> str:
    with RawSMTP(port) as c:
        c.greeting()
        lines = c.ehlo()
    return next(k for k in lines if k.startswith("SIZE"))


def test_reload_and_stop(mailroom_server: MailroomServer) -> None:
    server = mailroom_server
    assert ehlo_size(server.smtp_port) == "SIZE 10240000"
    server.postconf(message_size_limit="20000")
    result = server.cli("reload")
    assert result.code == 0, result
    deadline = time.monotonic() + 5
    while (size := ehlo_size(server.smtp_port)) != "SIZE 20000" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert size == "SIZE 20000", server.log()[-2000:]
    assert server.running, "reload must not restart or stop the server"
    # `stop` polls the pid with kill(pid, 0); our child stays a zombie until we reap it,
    # so run `stop` in the background and reap serve meanwhile (as a shell would).
    stopper = subprocess.Popen(
        [sys.executable, "-m", "mailroom", "-c", str(server.config_dir), "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.wait_exit() == 0, server.stderr()[-2000:]
    out, err = stopper.communicate(timeout=40)
    assert stopper.returncode == 0, (out, err)
    assert not port_accepts(server.smtp_port)


def test_second_serve_refused(mailroom_server: MailroomServer) -> None:
    result = mailroom_server.cli("serve", timeout=20)
    assert_one_error_line(result, "already running")
    assert mailroom_server.running
    assert port_accepts(mailroom_server.smtp_port)


def test_port_in_use(mailroom_server_factory: Factory) -> None:
    server = mailroom_server_factory(_start=False)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind((HOST, server.smtp_port))
        blocker.listen(1)
        result = server.cli("serve", timeout=20)
    finally:
        blocker.close()
    assert result.code == 1, result
    assert_one_error_line(result)
    assert str(server.smtp_port) in result.err, result.err


def test_auth_failure_logged(mailroom_server: MailroomServer) -> None:
    with RawSMTP(mailroom_server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.starttls(mailroom_server.ssl_context())
        c.ehlo()
        assert c.cmd_line(f"AUTH PLAIN {auth_plain(password='wintersun')}").startswith(
            "535 5.7.8"
        ), c.dump()
    pattern = (
        r"mailroom/smtpd\[\d+\]: warning: (localhost|unknown)\[127\.0\.0\.1\]: "
        r"SASL PLAIN authentication failed: "
    )
    text = mailroom_server.wait_for_log(lambda t: re.search(pattern, t) is not None)
    assert re.search(pattern, text), text[-3000:]
    assert "wintersun" not in text, "the password must never be logged"


def test_junk_commands_past_the_soft_limit_are_slowed_then_cut_off(mailroom_server_factory: Factory) -> None:
    """smtpd_junk_command_limit with the soft and hard error limits, as a private Postfix 3.7
    answered the same nine NOOPs (junk 2, soft 1, hard 6, 1 s): replies 5-9 each came a
    second late, then 421 and the close. Replies the core gives itself are slowed too."""
    server = mailroom_server_factory(smtpd_junk_command_limit="2", smtpd_soft_error_limit="1",
                                     smtpd_hard_error_limit="6", smtpd_error_sleep_time="1s")
    smtp = RawSMTP(server.smtp_port)
    assert smtp.reply()[0] == 220
    waits = []
    for _ in range(9):
        start = time.monotonic()
        smtp.send("NOOP\r\n")
        assert smtp.reply()[0] == 250
        waits.append(time.monotonic() - start)
    assert all(wait >= 0.9 for wait in waits[4:]), waits
    assert all(wait < 0.9 for wait in waits[:4]), waits  # a second is far beyond a NOOP's time
    code, lines = smtp.reply()
    assert (code, lines) == (421, ["4.7.0 mail.example.org Error: too many errors"])
    with pytest.raises(ConnectionError):
        smtp.reply()
