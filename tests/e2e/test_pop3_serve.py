"""POP3 through `mailroom serve`: mail sent over SMTP is fetched with poplib over STLS and POP3S."""

from __future__ import annotations

import poplib
import smtplib
from collections.abc import Callable

import pytest

from tests.e2e.server import HOST, MailroomServer, free_ports


@pytest.fixture
def pop3_server(mailroom_server_factory: Callable[..., MailroomServer]) -> tuple[MailroomServer, int, int]:
    pop3, pop3s = free_ports(2)
    server = mailroom_server_factory(pop3_listen=f"{HOST}:{pop3}", pop3s_listen=f"{HOST}:{pop3s}")
    return server, pop3, pop3s


def test_smtp_in_pop3_out(pop3_server: tuple[MailroomServer, int, int]) -> None:
    server, pop3_port, pop3s_port = pop3_server
    with smtplib.SMTP(HOST, server.smtp_port) as smtp:
        smtp.sendmail("someone@example.net", ["john@example.org"], b"Subject: fetch me\r\n\r\nhello john\r\n")
    server.wait_for_maildir(1)

    client = poplib.POP3(HOST, pop3_port, timeout=10)
    assert "STLS" in client.capa()
    with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
        client.user("john@example.org")
    client.stls(context=server.ssl_context())
    client.user("john@example.org")
    assert client.pass_("summersun").startswith(b"+OK")
    count, _size = client.stat()
    assert count == 1
    lines = client.retr(1)[1]
    assert b"Subject: fetch me" in lines and b"hello john" in lines
    uidl = client.uidl()[1]
    client.quit()

    secure = poplib.POP3_SSL("localhost", pop3s_port, context=server.ssl_context(), timeout=10)
    secure.user("john@example.org")
    secure.pass_("summersun")
    assert secure.uidl()[1] == uidl  # UIDLs are stable across sessions
    secure.dele(1)
    secure.quit()

    again = poplib.POP3_SSL("localhost", pop3s_port, context=server.ssl_context(), timeout=10)
    again.user("john@example.org")
    again.pass_("summersun")
    assert again.stat()[0] == 0
    again.quit()


def test_wrong_password_is_refused(pop3_server: tuple[MailroomServer, int, int]) -> None:
    server, _pop3, pop3s_port = pop3_server
    client = poplib.POP3_SSL("localhost", pop3s_port, context=server.ssl_context(), timeout=10)
    client.user("john@example.org")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        client.pass_("summersun2")
    assert "authentication failed" in server.wait_for_log(lambda text: "authentication failed" in text)
