"""The sans-IO SMTP client core against a scripted server (no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailroom.smtp.client import (
    ClientSession,
    ClientSettings,
    Done,
    NeedReply,
    OutboundMessage,
    OutboundRecipient,
    Send,
    SessionResult,
    StartTls,
    encode_data,
    needs_smtputf8,
)

EHLO_FULL = ["PIPELINING", "SIZE 10240000", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]
PEER = "mx.example.com[192.0.2.1]"
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n.leading dot\r\n"


class FakeServer:
    """A tiny SMTP server script: `rcpt` decides each RCPT's reply; records commands."""

    def __init__(
        self,
        extensions: list[str] | None = None,
        *,
        greeting: bytes = b"220 mx.example.com ESMTP\r\n",
        ehlo: bytes | None = None,
        rcpt: Callable[[str], bytes] = lambda _l: b"250 2.1.5 Ok\r\n",
        mail: bytes = b"250 2.1.0 Ok\r\n",
        data: bytes = b"354 End data with <CR><LF>.<CR><LF>\r\n",
        final: bytes = b"250 2.0.0 Ok: queued as ABC123\r\n",
        starttls: bytes = b"220 2.0.0 Ready to start TLS\r\n",
    ) -> None:
        self.extensions = EHLO_FULL if extensions is None else extensions
        self.greeting, self.ehlo, self.rcpt, self.mail = greeting, ehlo, rcpt, mail
        self.data, self.final, self.starttls = data, final, starttls
        self.commands: list[str] = []
        self.writes: list[bytes] = []
        self.bodies: list[bytes] = []
        self._buf = b""
        self._in_data = False

    def hello(self, verb: str) -> bytes:
        if verb == "EHLO" and self.ehlo is not None:
            return self.ehlo
        if verb == "HELO":
            return b"250 mx.example.com\r\n"
        lines = ["mx.example.com", *self.extensions]
        return "".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}\r\n" for i, t in enumerate(lines)).encode()

    def feed(self, data: bytes) -> bytes:
        self.writes.append(data)
        self._buf += data
        out = b""
        while True:
            if self._in_data:
                end = self._buf.find(b"\r\n.\r\n")
                if end < 0 and self._buf == b".\r\n":
                    end = -2
                if end == -1:
                    return out
                self.bodies.append(self._buf[: end + 2] if end >= 0 else b"")
                self._buf = self._buf[end + 5 :] if end >= 0 else b""
                self._in_data = False
                out += self.final
                continue
            line, sep, rest = self._buf.partition(b"\r\n")
            if not sep:
                return out
            self._buf = rest
            text = line.decode()
            self.commands.append(text)
            verb = text.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                out += self.hello(verb)
            elif verb == "STARTTLS":
                out += self.starttls
            elif verb == "MAIL":
                out += self.mail
            elif verb == "RCPT":
                out += self.rcpt(text)
            elif verb == "DATA":
                out += self.data
                self._in_data = self.data.startswith(b"354")
            elif verb == "RSET":
                out += b"250 2.0.0 Ok\r\n"
            elif verb == "QUIT":
                out += b"221 2.0.0 Bye\r\n"
            else:
                out += b"502 5.5.2 Error: command not recognized\r\n"


def message(*rcpts: str, data: bytes = MESSAGE, **kw: object) -> OutboundMessage:
    recipients = [OutboundRecipient(r) if isinstance(r, str) else r for r in rcpts]
    return OutboundMessage("alice@example.org", recipients or [OutboundRecipient("bob@example.com")], data, **kw)  # type: ignore[arg-type]


def drive(session: ClientSession, server: FakeServer, *, tls_ok: bool = True) -> SessionResult:
    """The adapter loop, with the server answering synchronously."""
    session.receive_data(server.greeting)
    for _ in range(1000):
        action = session.next_action()
        if isinstance(action, Done):
            return action.result
        if isinstance(action, Send):
            reply = server.feed(action.data)
            if reply:
                session.receive_data(reply)
        elif isinstance(action, NeedReply):
            session.receive_data(b"")  # the script has nothing more: EOF
        elif isinstance(action, StartTls):
            session.tls_done(tls_ok)
    raise AssertionError("session did not finish")


def settings(tls: str = "may") -> ClientSettings:
    return ClientSettings("out.example.org", tls)


def test_happy_path_pipelined_with_dsn_and_size() -> None:
    rcpt = OutboundRecipient("bob@example.com", ("SUCCESS", "FAILURE"), "rfc822;bob@example.com")
    msg = OutboundMessage("alice@example.org", [rcpt], MESSAGE, ret="HDRS", envid="id 1")
    server = FakeServer()
    result = drive(ClientSession(msg, settings("none"), PEER), server)
    assert result.failure is None
    assert result.outcomes[0] is not None
    assert (result.outcomes[0].status, result.outcomes[0].dsn) == ("sent", "2.0.0")
    assert result.outcomes[0].reason == "250 2.0.0 Ok: queued as ABC123"
    assert server.commands[1] == f"MAIL FROM:<alice@example.org> SIZE={len(MESSAGE)} RET=HDRS ENVID=id+201"
    assert server.commands[2] == "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com"
    # RFC 2920: MAIL, RCPT and DATA went in one write.
    assert any(w.startswith(b"MAIL FROM") and w.endswith(b"DATA\r\n") for w in server.writes)
    assert server.bodies == [b"Subject: hi\r\n\r\nhello\r\n..leading dot\r\n"]
    assert server.commands[-1] == "QUIT"


def test_no_pipelining_no_dsn_sends_one_command_at_a_time() -> None:
    rcpt = OutboundRecipient("bob@example.com", ("NEVER",), "rfc822;bob@example.com")
    msg = OutboundMessage("alice@example.org", [rcpt], MESSAGE, ret="FULL")
    server = FakeServer(["ENHANCEDSTATUSCODES"])
    result = drive(ClientSession(msg, settings("none"), PEER), server)
    assert result.outcomes[0] is not None and result.outcomes[0].status == "sent"
    assert server.commands[1:4] == ["MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.com>", "DATA"]
    assert all(w.count(b"\r\n") == 1 for w in server.writes[:4])


def test_per_recipient_4xx_and_5xx() -> None:
    def rcpt(line: str) -> bytes:
        if "unknown" in line:
            return b"550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown\r\n"
        if "later" in line:
            return b"450 4.2.0 <later@example.com>: Recipient address rejected: Greylisted\r\n"
        return b"250 2.1.5 Ok\r\n"

    for extensions in (EHLO_FULL, ["8BITMIME"]):
        server = FakeServer(extensions, rcpt=rcpt)
        result = drive(ClientSession(message("a@example.com", "unknown@example.com", "later@example.com"),
                                     settings("none"), PEER), server)
        ok, bad, later = result.outcomes
        assert ok is not None and ok.status == "sent"
        assert bad is not None and (bad.status, bad.dsn) == ("bounced", "5.1.1")
        assert bad.reason == ("host mx.example.com[192.0.2.1] said: 550 5.1.1 <unknown@example.com>: "
                              "Recipient address rejected: User unknown (in reply to RCPT TO command)")
        assert later is not None and (later.status, later.dsn) == ("deferred", "4.2.0")
        assert server.commands.count("DATA") == 1


def test_all_recipients_rejected_with_pipelining_ends_empty_data() -> None:
    server = FakeServer(rcpt=lambda _l: b"550 5.1.1 no\r\n", data=b"354 go ahead\r\n")
    result = drive(ClientSession(message("x@example.com"), settings("none"), PEER), server)
    assert result.outcomes[0] is not None and result.outcomes[0].status == "bounced"
    assert server.bodies == [b""]  # RFC 2920 §3.1: a lone "." after an unexpected 354


def test_mail_from_rejected_decides_everyone() -> None:
    server = FakeServer(mail=b"553 5.7.1 <alice@example.org>: Sender address rejected\r\n",
                        rcpt=lambda _l: b"503 5.5.1 Error: need MAIL command\r\n",
                        data=b"503 5.5.1 Error: need RCPT command\r\n")
    result = drive(ClientSession(message("a@example.com", "b@example.com"), settings("none"), PEER), server)
    assert [o.status for o in result.outcomes if o] == ["bounced", "bounced"]
    assert all(o and "(in reply to MAIL FROM command)" in o.reason for o in result.outcomes)


def test_data_final_reply_without_enhanced_code() -> None:
    server = FakeServer(final=b"451 try later\r\n")
    result = drive(ClientSession(message(), settings("none"), PEER), server)
    out = result.outcomes[0]
    assert out is not None and (out.status, out.dsn) == ("deferred", "4.0.0")
    assert out.reason.endswith("said: 451 try later (in reply to end of DATA command)")


def test_ehlo_rejected_falls_back_to_helo() -> None:
    server = FakeServer(ehlo=b"502 5.5.2 Error: command not recognized\r\n")
    result = drive(ClientSession(message(), settings("may"), PEER), server)
    assert result.outcomes[0] is not None and result.outcomes[0].status == "sent"
    assert server.commands[:2] == ["EHLO out.example.org", "HELO out.example.org"]
    assert "SIZE=" not in server.commands[2]  # nothing is known after HELO


def test_greeting_refused_is_a_session_failure() -> None:
    server = FakeServer(greeting=b"554 5.7.1 go away\r\n")
    result = drive(ClientSession(message(), settings(), PEER), server)
    assert result.outcomes == [None]
    assert result.failure is not None and result.failure.try_next and result.failure.dsn == "5.7.1"
    assert result.failure.reason == "host mx.example.com[192.0.2.1] refused to talk to me: 554 5.7.1 go away"


def test_starttls_may_and_encrypt() -> None:
    server = FakeServer()
    session = ClientSession(message(), settings("may"), PEER)
    result = drive(session, server)
    assert result.tls and result.outcomes[0] is not None and result.outcomes[0].status == "sent"
    assert [c.split(" ")[0] for c in server.commands[:3]] == ["EHLO", "STARTTLS", "EHLO"]  # RFC 3207 §4.2

    no_tls = [e for e in EHLO_FULL if e != "STARTTLS"]
    result = drive(ClientSession(message(), settings("may"), PEER), FakeServer(no_tls))
    assert not result.tls and result.outcomes[0] is not None and result.outcomes[0].status == "sent"

    result = drive(ClientSession(message(), settings("encrypt"), PEER), FakeServer(no_tls))
    assert result.outcomes == [None] and result.failure is not None
    assert (result.failure.dsn, result.failure.reason) == (
        "4.7.4", "TLS is required, but was not offered by host mx.example.com[192.0.2.1]")

    server = FakeServer()
    result = drive(ClientSession(message(), settings("none"), PEER), server)
    assert "STARTTLS" not in server.commands


def test_starttls_refused_or_failing_does_not_fall_back_to_plaintext() -> None:
    server = FakeServer(starttls=b"454 4.7.0 TLS not available due to local problem\r\n")
    result = drive(ClientSession(message(), settings("may"), PEER), server)
    assert result.outcomes == [None] and result.failure is not None and result.failure.try_next
    assert result.failure.reason.endswith("(in reply to STARTTLS command)")
    assert not any(c.startswith("MAIL") for c in server.commands)

    result = drive(ClientSession(message(), settings("may"), PEER), FakeServer(), tls_ok=False)
    assert result.failure is not None and result.failure.dsn == "4.7.5"


def test_data_injected_before_tls_handshake_is_refused() -> None:
    """CVE-2011-0411 style: plaintext sent with the 220 must not be read after TLS."""
    server = FakeServer(starttls=b"220 2.0.0 Ready\r\n250 2.1.0 forged\r\n")
    result = drive(ClientSession(message(), settings("may"), PEER), server)
    assert result.failure is not None and "after its STARTTLS reply" in result.failure.reason


def test_size_precheck_bounces_without_sending() -> None:
    big = b"x" * 2000 + b"\r\n"
    server = FakeServer(["SIZE 1000", "8BITMIME"])
    result = drive(ClientSession(message(data=big), settings("none"), PEER), server)
    assert result.failure is not None and not result.failure.try_next
    assert (result.failure.dsn, result.failure.reason) == (
        "5.3.4", "message size 2002 exceeds size limit 1000 of server mx.example.com[192.0.2.1]")
    assert not any(c.startswith("MAIL") for c in server.commands)


def test_smtputf8_required_but_not_offered_bounces_5_6_7() -> None:
    msg = OutboundMessage("alice@example.org", [OutboundRecipient("jörg@example.com")], MESSAGE, smtputf8=True)
    assert needs_smtputf8(msg)
    server = FakeServer(["8BITMIME", "PIPELINING"])
    result = drive(ClientSession(msg, settings("none"), PEER), server)
    assert result.failure is not None
    assert (result.failure.dsn, result.failure.try_next) == ("5.6.7", False)
    assert result.failure.reason == "SMTPUTF8 is required, but was not offered by host mx.example.com[192.0.2.1]"


def test_smtputf8_passed_on_and_ascii_smtputf8_message_downgrades() -> None:
    msg = OutboundMessage("alice@example.org", [OutboundRecipient("jörg@example.com")], MESSAGE, smtputf8=True)
    server = FakeServer()
    drive(ClientSession(msg, settings("none"), PEER), server)
    assert server.commands[1].endswith(" SMTPUTF8")
    ascii_msg = OutboundMessage("a@example.org", [OutboundRecipient("b@example.com")], MESSAGE, smtputf8=True)
    assert not needs_smtputf8(ascii_msg)
    server = FakeServer(["PIPELINING"])
    result = drive(ClientSession(ascii_msg, settings("none"), PEER), server)
    assert result.outcomes[0] is not None and result.outcomes[0].status == "sent"
    assert "SMTPUTF8" not in server.commands[1]


def test_8bit_body_declared_when_offered() -> None:
    data = "Subject: x\r\n\r\nGrüße\r\n".encode()
    server = FakeServer()
    drive(ClientSession(message(data=data), settings("none"), PEER), server)
    assert "BODY=8BITMIME" in server.commands[1]
    server = FakeServer(["PIPELINING"])
    drive(ClientSession(message(data=data), settings("none"), PEER), server)
    assert "BODY=" not in server.commands[1]


def test_too_many_recipients_452_goes_in_a_new_transaction() -> None:
    seen: list[str] = []

    def rcpt(line: str) -> bytes:
        seen.append(line)
        return b"452 4.5.3 Error: too many recipients\r\n" if len(seen) == 2 else b"250 2.1.5 Ok\r\n"

    server = FakeServer(rcpt=rcpt)
    result = drive(ClientSession(message("a@example.com", "b@example.com"), settings("none"), PEER), server)
    assert [o.status for o in result.outcomes if o] == ["sent", "sent"]
    assert server.commands.count("DATA") == 2 and "RSET" in server.commands


def test_recipients_split_into_transactions_of_the_limit() -> None:
    server = FakeServer()
    rcpts = [f"u{i}@example.com" for i in range(5)]
    session = ClientSession(message(*rcpts), ClientSettings("out.example.org", "none", 2), PEER)
    result = drive(session, server)
    assert all(o is not None and o.status == "sent" for o in result.outcomes)
    assert server.commands.count("DATA") == 3


def test_lost_connection_and_timeout_texts() -> None:
    session = ClientSession(message(), settings(), PEER)
    result = drive(session, FakeServer(greeting=b""))
    assert result.failure is not None and result.failure.try_next
    assert result.failure.reason == ("lost connection with mx.example.com[192.0.2.1] while "
                                     "receiving the initial server greeting")

    session = ClientSession(message(), settings("none"), PEER)
    session.receive_data(b"220 hi\r\n")
    action = session.next_action()
    assert isinstance(action, Send) and action.data.startswith(b"EHLO")
    session.timed_out()
    done = session.next_action()
    assert isinstance(done, Done) and done.result.failure is not None
    assert done.result.failure.reason == ("conversation with mx.example.com[192.0.2.1] timed out while "
                                          "performing the EHLO handshake")


def test_timeout_after_body_is_not_retried_elsewhere() -> None:
    session = ClientSession(message(), settings("none"), PEER)
    server = FakeServer(final=b"")
    session.receive_data(server.greeting)
    while True:
        action = session.next_action()
        if isinstance(action, NeedReply) and action.stage == "dot":
            session.timed_out()
            continue
        if isinstance(action, Done):
            break
        assert isinstance(action, Send)
        session.receive_data(server.feed(action.data))
    failure = action.result.failure
    assert failure is not None and not failure.try_next
    assert failure.reason.endswith("sending end of data -- message may be sent more than once")


def test_quit_trouble_does_not_change_outcomes() -> None:
    server = FakeServer()
    session = ClientSession(message(), settings("none"), PEER)
    session.receive_data(server.greeting)
    while True:
        action = session.next_action()
        if isinstance(action, Send) and action.data == b"QUIT\r\n":
            session.receive_data(b"")
            continue
        if isinstance(action, Done):
            break
        assert isinstance(action, Send)
        session.receive_data(server.feed(action.data))
    assert action.result.failure is None and action.result.outcomes[0] is not None


def test_malformed_reply_raises_remote_protocol_error() -> None:
    from mailroom.wire.errors import RemoteProtocolError

    session = ClientSession(message(), settings(), PEER)
    with pytest.raises(RemoteProtocolError):
        session.receive_data(b"hello there\r\n")
    with pytest.raises(RemoteProtocolError):
        ClientSession(message(), settings(), PEER).receive_data(b"2" * 5000)


@pytest.mark.parametrize(
    "raw, wire",
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b".\r\n..x\r\n", b"..\r\n...x\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
    ],
)
def test_encode_data(raw: bytes, wire: bytes) -> None:
    assert encode_data(raw) == wire
