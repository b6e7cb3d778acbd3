"""SmtpTransport end to end: real sockets on loopback, fake SMTP servers, a local DNS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from mailroom.adapters.smtp_client import ClientTimeouts, SmtpClientSettings, SmtpTransport
from mailroom.dns.resolver import DnspythonResolver
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.transport import DeliveryResult, Outcome
from tests.fakedns import Zone, dns_server

MESSAGE = b"From: a@example.org\r\nSubject: test\r\n\r\nHello\r\n.dot line\r\n"
EXTENSIONS = ["PIPELINING", "SIZE 1000000", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]


@dataclass
class Transaction:
    mail: str
    rcpts: list[str]
    data: bytes
    tls: bool


@dataclass
class FakeSmtpd:
    """Scripted ESMTP server; STARTTLS when a context is given."""

    extensions: list[str] = field(default_factory=lambda: list(EXTENSIONS))
    tls: ssl.SSLContext | None = None
    greeting: bytes = b"220 fake.example ESMTP\r\n"
    rcpt: Callable[[str], bytes] = lambda _line: b"250 2.1.5 Ok\r\n"
    silent: bool = False
    transactions: list[Transaction] = field(default_factory=list)
    port: int = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        try:
            if self.silent:
                await reader.read()
                return
            writer.write(self.greeting)
            if not self.greeting.startswith(b"220"):
                await writer.drain()
                return
            mail, rcpts = "", list[str]()
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                verb = text.split(" ")[0].upper()
                if verb == "EHLO":
                    ext = list(self.extensions) + (["STARTTLS"] if self.tls and not tls else [])
                    lines = ["fake.example", *ext]
                    writer.write("".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}\r\n"
                                         for i, t in enumerate(lines)).encode())
                elif verb == "STARTTLS" and self.tls:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    tls = True
                elif verb == "MAIL":
                    mail, rcpts = text, []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    reply = self.rcpt(text)
                    if reply.startswith(b"2"):
                        rcpts.append(text)
                    writer.write(reply)
                elif verb == "DATA":
                    if not rcpts:
                        writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                        continue
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.transactions.append(Transaction(mail, rcpts, data[:-3], tls))
                    writer.write(b"250 2.0.0 Ok: queued as FAKE1\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def server_tls() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("fake.example").configure_cert(context)
    return context


def envelope(*rcpts: str, **kw: Any) -> Envelope:
    return Envelope("alice@example.org", [Recipient(r) for r in rcpts], queue_id="Q1", **kw)


async def deliver(
    settings: SmtpClientSettings, env: Envelope, zone: Zone | None = None,
    servfail: set[str] | None = None, data: bytes = MESSAGE,
) -> tuple[list[DeliveryResult], list[DeliveryResult]]:
    reported: list[DeliveryResult] = []

    async def report(result: DeliveryResult) -> None:
        reported.append(result)

    async with dns_server(zone or {}, servfail) as (address, _):
        transport = SmtpTransport(DnspythonResolver([address], lifetime=2.0), settings, "client.example.org")
        results = await transport.deliver(env, data, env.recipients, report)
    return results, reported


def test_transport_maps_delivery_with_starttls_and_per_recipient_replies(server_tls: ssl.SSLContext) -> None:
    def rcpt(line: str) -> bytes:
        if "unknown@" in line:
            return b"550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown\r\n"
        if "grey@" in line:
            return b"450 4.2.0 <grey@example.com>: Recipient address rejected: Greylisted\r\n"
        return b"250 2.1.5 Ok\r\n"

    async def main() -> tuple[Any, ...]:
        fake = FakeSmtpd(tls=server_tls, rcpt=rcpt)
        server = await fake.start()
        async with server:
            settings = SmtpClientSettings(transport_maps=[f"inline:{{ example.com=smtp:[127.0.0.1]:{fake.port} }}"])
            env = envelope("bob@example.com", "unknown@example.com", "grey@example.com", "carol@example.com")
            env.recipients[0].notify = ("SUCCESS",)
            results, reported = await deliver(settings, env)
        return fake, results, reported

    fake, results, reported = asyncio.run(main())
    relay = f"127.0.0.1[127.0.0.1]:{fake.port}"
    assert [(r.address, r.outcome, r.dsn) for r in results] == [
        ("bob@example.com", Outcome.SENT, "2.0.0"),
        ("unknown@example.com", Outcome.BOUNCED, "5.1.1"),
        ("grey@example.com", Outcome.DEFERRED, "4.2.0"),
        ("carol@example.com", Outcome.SENT, "2.0.0"),
    ]
    assert all(r.relay == relay for r in results)
    assert results[0].reason == "250 2.0.0 Ok: queued as FAKE1"
    assert results[1].reason == ("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <unknown@example.com>: "
                                 "Recipient address rejected: User unknown (in reply to RCPT TO command)")
    assert sorted(r.address for r in reported) == sorted(r.address for r in results)
    (tx,) = fake.transactions
    assert tx.tls
    assert tx.mail.startswith("MAIL FROM:<alice@example.org> SIZE=")
    assert tx.rcpts == ["RCPT TO:<bob@example.com> NOTIFY=SUCCESS", "RCPT TO:<carol@example.com>"]
    assert tx.data == b"From: a@example.org\r\nSubject: test\r\n\r\nHello\r\n..dot line\r\n"


def test_mx_lookup_falls_back_to_the_next_host() -> None:
    async def main() -> tuple[Any, ...]:
        fake = FakeSmtpd()
        async with await fake.start():
            zone: Zone = {
                ("example.net.", "MX"): ["10 down.example.net.", "20 up.example.net."],
                ("down.example.net.", "A"): ["127.0.0.2"],  # nothing listens there
                ("up.example.net.", "A"): ["127.0.0.1"],
            }
            settings = SmtpClientSettings(tls_level="none", relayhost=f"example.net:{fake.port}")
            results, _ = await deliver(settings, envelope("x@example.net"), zone)
        return fake, results

    fake, results = asyncio.run(main())
    (r,) = results
    assert (r.outcome, r.relay) == (Outcome.SENT, f"up.example.net[127.0.0.1]:{fake.port}")
    assert len(fake.transactions) == 1


def test_connection_refused_everywhere_defers_4_4_1() -> None:
    async def main() -> list[DeliveryResult]:
        fake = FakeSmtpd()
        server = await fake.start()
        port = fake.port
        server.close()
        await server.wait_closed()
        settings = SmtpClientSettings(transport_maps=[f"inline:{{ example.com=smtp:[127.0.0.1]:{port} }}"])
        return (await deliver(settings, envelope("a@example.com", "b@example.com")))[0]

    results = asyncio.run(main())
    assert {(r.outcome, r.dsn, r.relay) for r in results} == {(Outcome.DEFERRED, "4.4.1", "none")}
    assert results[0].reason.startswith("connect to 127.0.0.1[127.0.0.1]:")
    assert results[0].reason.endswith(": Connection refused")


def test_dns_outcomes() -> None:
    zone: Zone = {
        ("nullmx.example.", "MX"): ["0 ."],
        ("loop.example.", "MX"): ["10 mail.loop.example."],
        ("mail.loop.example.", "A"): ["127.0.0.1"],
    }

    async def main() -> list[DeliveryResult]:
        settings = SmtpClientSettings(listeners=[("0.0.0.0", 25)])
        env = envelope("a@nullmx.example", "b@nx.example", "c@broken.example", "d@loop.example")
        return (await deliver(settings, env, zone, {"broken.example."}))[0]

    nullmx, nx, broken, loop = asyncio.run(main())
    assert (nullmx.outcome, nullmx.dsn) == (Outcome.BOUNCED, "5.1.10")
    assert nullmx.reason == "Domain nullmx.example does not accept mail (nullMX)"
    assert (nx.outcome, nx.dsn) == (Outcome.BOUNCED, "5.4.4")
    assert (broken.outcome, broken.dsn) == (Outcome.DEFERRED, "4.4.3")
    assert (loop.outcome, loop.dsn, loop.reason) == (
        Outcome.BOUNCED, "5.4.6", "mail for loop.example loops back to myself")


def test_encrypt_without_starttls_defers_and_may_goes_plaintext() -> None:
    async def main(level: str) -> tuple[FakeSmtpd, DeliveryResult]:
        fake = FakeSmtpd()
        async with await fake.start():
            settings = SmtpClientSettings(tls_level=level, relayhost=f"[127.0.0.1]:{fake.port}")
            (result,), _ = await deliver(settings, envelope("a@example.com"))
        return fake, result

    fake, result = asyncio.run(main("encrypt"))
    assert (result.outcome, result.dsn) == (Outcome.DEFERRED, "4.7.4")
    assert result.reason == "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    assert fake.transactions == []
    fake, result = asyncio.run(main("may"))
    assert result.outcome == Outcome.SENT and not fake.transactions[0].tls


def test_encrypt_does_not_verify_the_certificate(server_tls: ssl.SSLContext) -> None:
    async def main() -> tuple[FakeSmtpd, DeliveryResult]:
        fake = FakeSmtpd(tls=server_tls)
        async with await fake.start():
            settings = SmtpClientSettings(tls_level="encrypt", relayhost=f"[localhost]:{fake.port}")
            zone: Zone = {("localhost.", "A"): ["127.0.0.1"]}
            (result,), _ = await deliver(settings, envelope("a@example.com"), zone)
        return fake, result

    fake, result = asyncio.run(main())
    assert result.outcome == Outcome.SENT and fake.transactions[0].tls


def test_greeting_timeout_defers_4_4_2() -> None:
    async def main() -> DeliveryResult:
        fake = FakeSmtpd(silent=True)
        async with await fake.start():
            settings = SmtpClientSettings(relayhost=f"[127.0.0.1]:{fake.port}",
                                          timeouts=ClientTimeouts(helo=0.3))
            (result,), _ = await deliver(settings, envelope("a@example.com"))
        return result

    result = asyncio.run(main())
    assert (result.outcome, result.dsn) == (Outcome.DEFERRED, "4.4.2")
    assert result.reason == ("conversation with 127.0.0.1[127.0.0.1] timed out while "
                             "receiving the initial server greeting")


def test_greeting_refused_then_next_mx_and_smtputf8_bounce() -> None:
    async def main() -> tuple[DeliveryResult, DeliveryResult]:
        bad = FakeSmtpd(greeting=b"421 4.3.2 busy\r\n")
        good = FakeSmtpd(extensions=["PIPELINING", "8BITMIME"])
        async with await bad.start(), await good.start():
            zone: Zone = {("multi.example.", "MX"): ["10 a.multi.example.", "20 b.multi.example."],
                          ("a.multi.example.", "A"): ["127.0.0.1"], ("b.multi.example.", "A"): ["127.0.0.1"]}
            maps = [f"inline:{{ multi.example=smtp:[127.0.0.1]:{bad.port}, "
                    f"utf8.example=smtp:[127.0.0.1]:{good.port} }}"]
            settings = SmtpClientSettings(transport_maps=maps)
            (refused,), _ = await deliver(settings, envelope("a@multi.example"), zone)
            env = envelope("jörg@utf8.example", smtputf8=True)
            (utf8,), _ = await deliver(settings, env, zone)
        return refused, utf8

    refused, utf8 = asyncio.run(main())
    assert (refused.outcome, refused.dsn) == (Outcome.DEFERRED, "4.3.2")
    assert refused.reason == "host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.3.2 busy"
    assert (utf8.outcome, utf8.dsn) == (Outcome.BOUNCED, "5.6.7")
    assert utf8.reason.startswith("SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]")


def test_error_transport_and_queue_file_path(tmp_path: Any) -> None:
    async def main() -> list[DeliveryResult]:
        settings = SmtpClientSettings(transport_maps=["inline:{ {gone.example=error:5.1.1 User has moved}, "
                                                      "later.example=retry:}"])
        env = envelope("a@gone.example", "b@later.example")
        path = tmp_path / "msg"
        path.write_bytes(MESSAGE)
        async with dns_server({}) as (address, _):
            transport = SmtpTransport(DnspythonResolver([address]), settings, "client.example.org")
            return await transport.deliver(env, path, env.recipients)

    gone, later = asyncio.run(main())
    assert (gone.outcome, gone.dsn, gone.reason) == (Outcome.BOUNCED, "5.1.1", "User has moved")
    assert (later.outcome, later.dsn) == (Outcome.DEFERRED, "4.0.0")


def test_transports_satisfy_the_queue_protocol() -> None:
    """Static (mypy) and runtime check that the queue manager can register them."""
    from mailroom.adapters.smtp_client import ErrorTransport
    from mailroom.queue.transport import Transport
    from mailroom.routing.transport import Router

    async def make() -> tuple[Transport, Transport]:
        async with dns_server({}) as (address, _):
            smtp: Transport = SmtpTransport(DnspythonResolver([address]), SmtpClientSettings(), "me.example")
            error: Transport = ErrorTransport(Router())
            return smtp, error

    smtp, error = asyncio.run(make())
    assert callable(smtp.deliver) and callable(error.deliver)
