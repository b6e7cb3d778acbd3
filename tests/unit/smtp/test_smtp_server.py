"""ServerConnection behaviour the dialogs do not show: API misuse, limits, timeouts, purity."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mailroom.smtp import replies
from mailroom.smtp.events import (
    NEED_DATA,
    ConnectionClosed,
    Helo,
    MailFrom,
    MessageReceived,
    RcptTo,
    ServerSettings,
    StartTLS,
)
from mailroom.smtp.server import ServerConnection
from mailroom.wire.errors import LocalProtocolError

SRC = Path(__file__).resolve().parents[3] / "src" / "mailroom"
SETTINGS = ServerSettings(hostname="mx.example.org", banner="mx.example.org ESMTP mailroom")


def started(settings: ServerSettings = SETTINGS) -> ServerConnection:
    conn = ServerConnection(settings)
    assert conn.initiate() == f"220 {settings.banner}\r\n".encode()
    return conn


def say(conn: ServerConnection, data: bytes) -> tuple[list[object], bytes]:
    """Feed data, accept every event, return the events and the output."""
    conn.receive_data(data)
    events: list[object] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
        if isinstance(event, MessageReceived):
            conn.accept(queue_id="Q1")
        elif getattr(event, "needs_reply", False):
            conn.accept()
    return events, conn.data_to_send()


# The sans-IO modules. sasl/ also holds backends that talk to the directory (I/O by
# design), so only its mechanisms module is held to the rule.
CORE_FILES = [*(SRC / "smtp").glob("*.py"), *(SRC / "wire").glob("*.py"), SRC / "sasl" / "mechanisms.py"]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_imports_no_io(path: Path) -> None:
    """architecture.md: cores import nothing from asyncio, socket, ssl or a database."""
    forbidden = {"asyncio", "socket", "ssl", "sqlalchemy", "sqlite3", "selectors", "trio", "anyio"}
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_next_event_before_initiate_and_double_answer() -> None:
    conn = ServerConnection(SETTINGS)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.initiate()
    with pytest.raises(LocalProtocolError):
        conn.initiate()
    conn.receive_data(b"EHLO a\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), Helo)
    with pytest.raises(LocalProtocolError):
        conn.next_event()  # the pending EHLO must be answered first
    conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.accept()
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(b"250 2.0.0 Ok\r\n")


def test_message_accept_needs_queue_id() -> None:
    conn = started()
    say(conn, b"HELO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    conn.receive_data(b"hi\r\n.\r\n")
    event = conn.next_event()
    assert isinstance(event, MessageReceived)
    with pytest.raises(LocalProtocolError):
        conn.accept()


def test_envelope_from_message() -> None:
    conn = started()
    conn.receive_data(
        b"HELO a\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=x BODY=8BITMIME\r\n"
        b"RCPT TO:<c@d.example> NOTIFY=FAILURE ORCPT=rfc822;c@d.example\r\nDATA\r\nhi\r\n.\r\n"
    )
    seen = []
    while not isinstance(event := conn.next_event(), MessageReceived):
        seen.append(event)
        conn.accept()
    env = event.envelope()
    assert (env.sender, env.ret, env.envid, env.body_type, env.size) == ("a@b.example", "HDRS", "x", "8BITMIME", 4)
    assert env.recipients[0].address == "c@d.example"
    assert env.recipients[0].notify == ("FAILURE",) and env.recipients[0].orcpt == "rfc822;c@d.example"
    assert [type(e) for e in seen] == [Helo, MailFrom, RcptTo]


def test_rejected_rcpt_is_not_a_recipient() -> None:
    conn = started()
    conn.receive_data(b"HELO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@d.example>\r\nDATA\r\n")
    for _ in range(2):
        conn.next_event()
        conn.accept()
    assert isinstance(conn.next_event(), RcptTo)
    conn.reply(replies.Reply(550, "5.1.1", "<x@d.example>: Recipient address rejected"))
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(b"554 5.5.1 Error: no valid recipients\r\n")


def test_timeout_closes_with_421() -> None:
    conn = started()
    assert conn.timeout() == b"421 4.4.2 mx.example.org Error: timeout exceeded\r\n"
    assert conn.closed and isinstance(conn.next_event(), ConnectionClosed)
    assert conn.timeout() == b""


def test_rejected_greeting_closes() -> None:
    conn = ServerConnection(SETTINGS)
    reject = replies.Reply(554, "5.7.1", "<unknown[192.0.2.1]>: Client host rejected: Access denied")
    assert conn.initiate(reject) == reject.encode()
    assert conn.next_event() == ConnectionClosed("rejected at connect")


def test_adapter_421_closes() -> None:
    conn = started()
    conn.receive_data(b"HELO a\r\nNOOP\r\n")
    conn.next_event()
    conn.reply(replies.Reply(421, "4.7.0", "mx.example.org Error: too many connections"))
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_overlong_command_answered_once_then_stream_resyncs() -> None:
    conn = started()
    events, out = say(conn, b"NOOP " + b"x" * 3000 + b"\r\nNOOP\r\n")
    assert out == b"500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
    conn2 = started()
    for _ in range(20):  # a line that never ends is never buffered whole
        say(conn2, b"y" * 4096)
    assert len(conn2._lines) < 12288
    _, out = say(conn2, b"\r\nNOOP\r\n")
    assert out == b"250 2.0.0 Ok\r\n"


def test_auth_initial_response_may_be_long_but_bounded() -> None:
    settings = ServerSettings(hostname="h", banner="h", auth_enabled=True, tls_active=True)
    conn = ServerConnection(settings)
    conn.initiate()
    _, out = say(conn, b"EHLO a\r\nAUTH PLAIN " + b"A" * 5000 + b"\r\n")
    assert out.endswith(b"535 5.7.8 Error: authentication failed: (reason unavailable)\r\n")
    _, out = say(conn, b"AUTH PLAIN " + b"A" * 13000 + b"\r\n")
    assert out == b"500 5.5.2 Error: line too long\r\n"


def test_soft_error_limit_flag_and_reset_after_delivery() -> None:
    conn = started(ServerSettings(hostname="h", banner="h", soft_error_limit=2))
    say(conn, b"FOO\r\nFOO\r\nFOO\r\n")
    assert conn.over_soft_error_limit
    say(conn, b"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<b@c.example>\r\nDATA\r\n.\r\n")
    assert conn.error_count == 0


def test_starttls_drops_pipelined_bytes_and_later_plaintext() -> None:
    conn = started(ServerSettings(hostname="h", banner="h", tls_available=True))
    events, out = say(conn, b"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert isinstance(events[-1], StartTLS) and out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    conn.receive_data(b"RCPT TO:<evil@x.example>\r\n")  # plaintext racing the handshake
    assert conn.next_event() is NEED_DATA
    conn.tls_started()
    assert conn.tls_active and conn.helo_name is None
    _, out = say(conn, b"NOOP\r\n")
    assert out == b"250 2.0.0 Ok\r\n"


def test_eof_mid_data_loses_the_message() -> None:
    conn = started()
    say(conn, b"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<b@c.example>\r\nDATA\r\npartial")
    events, _ = say(conn, b"")
    assert events == [ConnectionClosed("lost connection after DATA")]


def test_helo_reply_with_rejection_keeps_state() -> None:
    conn = started(ServerSettings(hostname="h", banner="h", helo_required=True))
    conn.receive_data(b"HELO bad\r\nMAIL FROM:<>\r\n")
    conn.next_event()
    conn.reply(replies.Reply(504, "5.5.2", "<bad>: Helo command rejected: need fully-qualified hostname"))
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(b"503 5.5.1 Error: send HELO/EHLO first\r\n")


def test_mail_without_helo_is_accepted_unless_helo_required() -> None:
    """Postfix's smtpd_helo_required = no: MAIL without HELO goes to the adapter."""
    conn = started()
    conn.receive_data(b"MAIL FROM:<a@b.example>\r\n")
    assert isinstance(conn.next_event(), MailFrom)


def test_ehlo_without_size_limit_and_without_vrfy() -> None:
    conn = ServerConnection(ServerSettings(message_size_limit=0, vrfy_disabled=True, smtputf8=False))
    assert conn.ehlo_keywords() == ["PIPELINING", "SIZE", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "CHUNKING"]


def test_non_utf8_command_is_refused() -> None:
    _, out = say(started(), b"HELO \xff\xfe\r\n")
    assert out == b"500 5.5.2 Error: bad UTF-8 syntax\r\n"


def test_vrfy_echo_never_carries_control_characters() -> None:
    conn = started()
    conn.receive_data(b"VRFY jo\x00hn\x1b[2J\r\n")
    conn.next_event()
    conn.accept()
    assert conn.data_to_send() == b"252 2.0.0 jo?hn?[2J\r\n"
