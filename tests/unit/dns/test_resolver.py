"""DnspythonResolver against a tiny authoritative responder on 127.0.0.1 (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from mailroom.dns.resolver import DnspythonResolver, DnsTemporaryError, parse_nameserver

ZONE: dict[tuple[str, str], list[str]] = {
    ("mx.example.", "MX"): ["10 mail.mx.example.", "0 ."],
    ("mail.mx.example.", "A"): ["192.0.2.25"],
    ("mail.mx.example.", "AAAA"): ["2001:db8::25"],
    ("2.0.0.127.zen.example.", "A"): ["127.0.0.2"],
    ("2.0.0.127.zen.example.", "TXT"): ['"Listed" " here"'],
}
EXISTING = {name for name, _ in ZONE}
SERVFAIL = "broken.example."


class Responder(asyncio.DatagramProtocol):
    """Answers from ZONE; NXDOMAIN for unknown names, NODATA for missing types."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name, rtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        if name == SERVFAIL:
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rtype) in ZONE:
            reply.answer.append(
                dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, rtype, ZONE[(name, rtype)])
            )
        elif name not in EXISTING:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_with_server(
    loop: asyncio.AbstractEventLoop, coro_factory: Callable[[DnspythonResolver], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            return await coro_factory(DnspythonResolver([f"127.0.0.1:{port}"], lifetime=2.0))
        finally:
            transport.close()

    return loop.run_until_complete(main())


def test_records_of_each_type(loop: asyncio.AbstractEventLoop) -> None:
    async def queries(r: DnspythonResolver) -> tuple[object, ...]:
        return (
            await r.mx("mx.example"),
            await r.a("mail.mx.example"),
            await r.aaaa("mail.mx.example."),
            await r.a("2.0.0.127.zen.example"),
            await r.txt("2.0.0.127.zen.example"),
        )

    mx, a, aaaa, rbl, txt = run_with_server(loop, queries)
    assert mx == [(0, ""), (10, "mail.mx.example")]  # null MX comes back as (0, "")
    assert a == ["192.0.2.25"]
    assert aaaa == ["2001:db8::25"]
    assert rbl == ["127.0.0.2"]
    assert txt == ["Listed here"]


def test_nxdomain_and_nodata_are_empty(loop: asyncio.AbstractEventLoop) -> None:
    async def queries(r: DnspythonResolver) -> tuple[object, ...]:
        return await r.a("nx.example"), await r.mx("mail.mx.example"), await r.txt("mx.example")

    assert run_with_server(loop, queries) == ([], [], [])


def test_servfail_is_temporary(loop: asyncio.AbstractEventLoop) -> None:
    async def query(r: DnspythonResolver) -> object:
        with pytest.raises(DnsTemporaryError, match="broken.example/A"):
            await r.a("broken.example")
        return True

    assert run_with_server(loop, query) is True


@pytest.mark.parametrize(
    "entry, parsed",
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_nameserver(entry: str, parsed: tuple[str, int]) -> None:
    assert parse_nameserver(entry) == parsed


@pytest.mark.parametrize(
    "entry", ["", "host:", "host:99999", "host:port", "[::1]:x", "[::1]x", "[::1]:"]
)
def test_bad_nameserver(entry: str) -> None:
    with pytest.raises(ValueError, match="bad nameserver"):
        parse_nameserver(entry)
