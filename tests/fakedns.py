"""A tiny recursive-looking DNS server on 127.0.0.1 for tests (no network).

It answers from a dict like {("example.com.", "MX"): ["10 mx.example.com."]}. A CNAME
is chased as a recursive resolver would: the answer holds the CNAME chain, then the
records of the canonical name. Names in `servfail` answer SERVFAIL; unknown names
NXDOMAIN; known names without the type NODATA.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = dict[tuple[str, str], list[str]]
MAX_CHAIN = 8


class Responder(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone, servfail: set[str]) -> None:
        self.zone, self.servfail = zone, servfail
        self.names = {name for name, _ in zone}
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name, rtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rtype))
        for _ in range(MAX_CHAIN):
            if name in self.servfail:
                reply.answer.clear()
                reply.set_rcode(dns.rcode.SERVFAIL)
                break
            if (name, rtype) in self.zone:
                reply.answer.append(dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, rtype, self.zone[(name, rtype)]))
                break
            if (name, "CNAME") in self.zone and rtype != "CNAME":
                target = self.zone[(name, "CNAME")][0]
                reply.answer.append(dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, "CNAME", [target]))
                name = target.lower()
                continue
            if name not in self.names and not reply.answer:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            break
        self.transport.sendto(reply.to_wire(), addr)


@contextlib.asynccontextmanager
async def dns_server(zone: Zone, servfail: set[str] | None = None) -> AsyncIterator[tuple[str, Responder]]:
    """Yields ("127.0.0.1:PORT", responder) for DnspythonResolver([...])."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(zone, servfail or set()), local_addr=("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}", protocol
    finally:
        transport.close()
