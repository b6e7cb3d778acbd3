"""What policy approves is what is delivered, and who logs in is who the directory says.

Regression tests for: accepted-then-bounced recipients (quoted local parts, bare
<postmaster>) that made the server mail arbitrary senders, login names that differed
from the stored address, and POP3 sessions without a per-client limit.
"""

from __future__ import annotations

import base64
import poplib
import socket
from collections.abc import Callable

import pytest

from tests.e2e.server import HOST, MailroomServer, RawSMTP, free_ports


def send(server: MailroomServer, rcpt: str, sender: str = "someone@example.net") -> str:
    client = RawSMTP(server.smtp_port)
    client.greeting()
    client.ehlo()
    assert client.cmd_line(f"MAIL FROM:<{sender}>").startswith("250")
    answer = client.cmd_line(f"RCPT TO:<{rcpt}>") if not rcpt.startswith("<") else client.cmd_line(f"RCPT TO:{rcpt}")
    if answer.startswith("250"):
        assert client.cmd_line("DATA").startswith("354")
        client.send(b"Subject: canonical\r\n\r\nbody\r\n.\r\n")
        assert client.reply_line().startswith("250 2.0.0 Ok: queued as")
    client.send(b"QUIT\r\n")
    return answer


@pytest.mark.parametrize("rcpt", ['"john"@example.org', "<postmaster>", "<Postmaster>", "@relay.example:john@example.org"])
def test_accepted_local_forms_are_delivered_not_bounced(
    mailroom_server_factory: Callable[..., MailroomServer], rcpt: str
) -> None:
    server = mailroom_server_factory(mynetworks="")
    assert send(server, rcpt).startswith("250")
    server.wait_for_maildir(1)
    server.settle()
    (message,) = server.messages()
    assert message["Subject"] == "canonical"  # the message itself, not a bounce
    assert message["Delivered-To"] == "john@example.org"


def test_bare_postmaster_without_a_local_postmaster_is_refused(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    server = mailroom_server_factory(mynetworks="", mydomain="nowhere.example")
    answer = send(server, "<postmaster>", sender="victim@remote.example")
    assert answer.startswith("554 5.7.1 <postmaster@nowhere.example>: Relay access denied")
    server.settle()
    assert server.queue_files() == [] and server.maildir_files() == []


def _auth_plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.mark.parametrize("user", [" john@example.org", "john@example.org\r\n", "john@example.org\t"])
def test_login_names_with_white_space_are_refused(mailroom_server: MailroomServer, user: str) -> None:
    client = RawSMTP(mailroom_server.smtp_port)
    client.greeting()
    client.ehlo()
    client.starttls(mailroom_server.ssl_context())
    client.ehlo()
    assert client.cmd_line(f"AUTH PLAIN {_auth_plain(user, 'summersun')}").startswith("535 5.7.8")


def test_the_session_carries_the_stored_address_not_what_was_typed(mailroom_server: MailroomServer) -> None:
    client = RawSMTP(mailroom_server.smtp_port)
    client.greeting()
    client.ehlo()
    client.starttls(mailroom_server.ssl_context())
    client.ehlo()
    assert client.cmd_line(f"AUTH PLAIN {_auth_plain('JOHN@Example.ORG', 'summersun')}").startswith("235")
    assert client.cmd_line("MAIL FROM:<john@example.org>").startswith("250")
    assert client.cmd_line("RCPT TO:<john@example.org>").startswith("250")
    assert client.cmd_line("DATA").startswith("354")
    client.send(b"Subject: who\r\n\r\nx\r\n.\r\n")
    assert client.reply_line().startswith("250")
    mailroom_server.wait_for_maildir(1)
    log = mailroom_server.wait_for_log(lambda text: "sasl_username=" in text)
    assert "sasl_username=john@example.org" in log
    (message,) = mailroom_server.messages()
    assert "(Authenticated sender: john@example.org)" in message["Received"]


def test_pop3_connections_per_client_are_limited(mailroom_server_factory: Callable[..., MailroomServer]) -> None:
    (pop3,) = free_ports(1)
    mailroom_server_factory(pop3_listen=f"{HOST}:{pop3}", mynetworks="", login_client_connection_count_limit="2")
    held = [poplib.POP3(HOST, pop3, timeout=10) for _ in range(2)]
    with socket.create_connection((HOST, pop3), timeout=10) as third:
        greeting = third.recv(200)
    assert greeting.startswith(b"-ERR [SYS/TEMP] Too many connections")
    for client in held:
        client.quit()
    fresh = poplib.POP3(HOST, pop3, timeout=10)  # a slot is free again
    assert fresh.getwelcome().startswith(b"+OK")
    fresh.quit()


def test_pop3_login_name_with_white_space_is_refused(mailroom_server_factory: Callable[..., MailroomServer]) -> None:
    (pop3s,) = free_ports(1)
    server = mailroom_server_factory(pop3s_listen=f"{HOST}:{pop3s}")
    client = poplib.POP3_SSL("localhost", pop3s, context=server.ssl_context(), timeout=10)
    client.user(" JOHN@example.org")
    with pytest.raises(poplib.error_proto):
        client.pass_("summersun")
    assert not (server.config_dir / "vmail" / "example.org" / " john").exists()
