"""MX, implicit MX, null MX, CNAME and mail-loop rules (RFC 5321 §5.1, RFC 7505)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from tests.fakedns import Zone, dns_server

from mailroom.dns.interface import DnsTemporaryError
from mailroom.dns.resolver import DnspythonResolver
from mailroom.routing.mx import (
    Candidate,
    RouteFailure,
    SelfCheck,
    order_mx,
    resolve_nexthop,
    resolve_nexthops,
)
from mailroom.routing.transport import Nexthop, parse_nexthop

ZONE: Zone = {
    ("example.com.", "MX"): ["10 mx1.example.com.", "20 mx2.example.com."],
    ("mx1.example.com.", "A"): ["192.0.2.1"],
    ("mx1.example.com.", "AAAA"): ["2001:db8::1"],
    ("mx2.example.com.", "A"): ["192.0.2.2"],
    ("implicit.example.", "A"): ["192.0.2.9"],
    ("nullmx.example.", "MX"): ["0 ."],
    ("alias.example.", "CNAME"): ["example.com."],
    ("cname-mx.example.", "MX"): ["5 host-alias.example."],
    ("host-alias.example.", "CNAME"): ["real-host.example."],
    ("real-host.example.", "A"): ["192.0.2.77"],
    ("dangling.example.", "MX"): ["10 nowhere.example."],
    ("halfbroken.example.", "MX"): ["10 broken-host.example.", "20 mx2.example.com."],
    ("loop.example.", "MX"): ["10 ourselves.example."],
    ("ourselves.example.", "A"): ["127.0.0.1"],
    ("backup.example.", "MX"): ["10 mx1.example.com.", "20 ourselves.example."],
    ("only-backup.example.", "MX"): ["5 nowhere.example.", "20 ourselves.example."],
}
SERVFAIL = {"broken.example.", "broken-host.example."}


def run(coro_factory: Any) -> Any:
    async def main() -> Any:
        async with dns_server(ZONE, SERVFAIL) as (address, _):
            return await coro_factory(DnspythonResolver([address], lifetime=2.0))

    return asyncio.run(main())


def resolve(text: str, **kw: Any) -> list[Candidate]:
    return run(lambda r: resolve_nexthop(r, parse_nexthop(text), rng=random.Random(1), **kw))  # type: ignore[no-any-return]


def failure(text: str, **kw: Any) -> RouteFailure:
    with pytest.raises(RouteFailure) as info:
        resolve(text, **kw)
    return info.value


def test_mx_by_preference_ipv4_first() -> None:
    got = resolve("example.com")
    assert [c.label for c in got] == [
        "mx1.example.com[192.0.2.1]:25", "mx1.example.com[2001:db8::1]:25", "mx2.example.com[192.0.2.2]:25"]
    assert resolve("example.com:2525")[0].port == 2525


def test_bracketed_host_skips_mx() -> None:
    assert [c.label for c in resolve("[mx2.example.com]:587")] == ["mx2.example.com[192.0.2.2]:587"]
    assert [c.label for c in resolve("[127.0.0.1]:2626")] == ["127.0.0.1[127.0.0.1]:2626"]
    assert failure("[nowhere.example]").dsn == "5.4.4"


def test_implicit_mx() -> None:
    assert [c.ip for c in resolve("implicit.example")] == ["192.0.2.9"]  # RFC 5321 §5.1


def test_null_mx_bounces() -> None:
    f = failure("nullmx.example")
    assert (f.dsn, f.reason, f.permanent) == ("5.1.10", "Domain nullmx.example does not accept mail (nullMX)", True)


def test_nxdomain_bounces_and_servfail_defers() -> None:
    f = failure("nx.example")
    assert f.dsn == "5.4.4" and f.reason.startswith("Host or domain name not found. Name service error for name=nx.example")
    f = failure("broken.example")
    assert (f.dsn, f.permanent) == ("4.4.3", False)
    assert f.reason == ("Host or domain name not found. Name service error for name=broken.example "
                        "type=MX: Host not found, try again")


def test_cname_at_domain_and_at_mx_host() -> None:
    assert [c.host for c in resolve("alias.example")][0] == "mx1.example.com"
    assert [c.label for c in resolve("cname-mx.example")] == ["host-alias.example[192.0.2.77]:25"]


def test_mx_without_address() -> None:
    assert failure("dangling.example").dsn == "5.4.4"
    assert [c.host for c in resolve("halfbroken.example")] == ["mx2.example.com"]  # what resolves is used


def test_mail_loop_detection() -> None:
    me = SelfCheck(["mail.ours.example"], [("0.0.0.0", 25)])
    f = failure("loop.example", self_check=me)
    assert (f.dsn, f.reason) == ("5.4.6", "mail for loop.example loops back to myself")
    # We are the backup MX: only better hosts are kept.
    assert {c.host for c in resolve("backup.example", self_check=me)} == {"mx1.example.com"}
    f = failure("only-backup.example", self_check=me)
    assert (f.dsn, f.reason) == ("4.4.4", "unable to find primary relay for only-backup.example")
    # Same address, other port: a different server (tests run many on loopback).
    assert resolve("loop.example", self_check=SelfCheck([], [("127.0.0.1", 2525)]))[0].ip == "127.0.0.1"
    by_name = SelfCheck(["ourselves.example"], [])
    assert failure("loop.example", self_check=by_name).dsn == "5.4.6"


class StubResolver:
    def __init__(self, mx: list[tuple[int, str]] | Exception, a: dict[str, list[str]]) -> None:
        self._mx, self._a = mx, a

    async def mx(self, name: str) -> list[tuple[int, str]]:
        if isinstance(self._mx, Exception):
            raise self._mx
        return self._mx

    async def a(self, name: str) -> list[str]:
        if name == "temp.example":
            raise DnsTemporaryError(name)
        return self._a.get(name, [])

    async def aaaa(self, name: str) -> list[str]:
        return []

    async def txt(self, name: str) -> list[str]:
        return []


def test_equal_preferences_are_shuffled() -> None:
    records = [(10, "a"), (10, "b"), (10, "c"), (5, "first"), (20, "last")]
    orders = {tuple(h for _, h in order_mx(records, random.Random(seed))) for seed in range(50)}
    assert len(orders) == 6  # all permutations of a/b/c seen
    assert all(o[0] == "first" and o[-1] == "last" for o in orders)


def test_temporary_failure_of_an_mx_host_defers() -> None:
    stub = StubResolver([(10, "temp.example")], {})
    with pytest.raises(RouteFailure) as info:
        asyncio.run(resolve_nexthop(stub, Nexthop("x.example", 25, True)))
    assert info.value.dsn == "4.4.3"


def test_nexthop_list_temporary_wins() -> None:
    stub = StubResolver([], {"good.example": ["192.0.2.5"]})
    hops = [Nexthop("temp.example", 25, False), Nexthop("none.example", 25, False)]
    with pytest.raises(RouteFailure) as info:
        asyncio.run(resolve_nexthops(stub, hops))
    assert info.value.dsn == "4.4.3"
    hops.append(Nexthop("good.example", 25, False))
    assert [c.ip for c in asyncio.run(resolve_nexthops(stub, hops))] == ["192.0.2.5"]
