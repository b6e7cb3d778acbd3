"""inline: and texthash: tables, Postfix transport syntax, and route selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.routing.tables import TableError, lookup_first, open_table, open_tables
from mailroom.routing.transport import (
    Nexthop,
    Route,
    Router,
    RouteSyntaxError,
    parse_nexthop,
    parse_nexthops,
    parse_route,
    search_keys,
)


def test_inline_table_forms() -> None:
    table = open_table("inline:{ example.com=smtp:[127.0.0.1]:2626, Other.COM = error:5.1.1,"
                       " { spaced.example = error:text with spaces } }")
    assert table.lookup("EXAMPLE.com") == "smtp:[127.0.0.1]:2626"
    assert table.lookup("other.com") == "error:5.1.1"
    assert table.lookup("spaced.example") == "error:text with spaces"
    assert table.lookup("nope") is None


def test_bad_tables() -> None:
    for spec in ("inline:{ a=error:5.1.1 gone }",  # white space separates entries, as in Postfix
                 "inline:example.com=smtp:", "inline:{ novalue }", "hash:/etc/postfix/transport", "nocolon"):
        with pytest.raises(TableError):
            open_table(spec)
    with pytest.raises(TableError, match="texthash:/nonexistent"):
        open_table("texthash:/nonexistent/transport")


def test_texthash(tmp_path: Path) -> None:
    path = tmp_path / "transport"
    path.write_text("# comment\n\nexample.com   smtp:[192.0.2.1]:25\n.example.net relay:\n"
                    "long.example error:5.7.1\n    continued text\nexample.com smtp:second\n")
    table = open_table(f"texthash:{path}")
    assert table.lookup("Example.COM") == "smtp:[192.0.2.1]:25"  # first entry wins
    assert table.lookup(".example.net") == "relay:"
    assert table.lookup("long.example") == "error:5.7.1 continued text"
    tables = open_tables([f"texthash:{path}", "inline:{ example.org=smtp:x }"])
    assert lookup_first(tables, "example.org") == "smtp:x"


@pytest.mark.parametrize(
    "text, hop",
    [
        ("example.com", Nexthop("example.com", 25, True)),
        ("example.com:2525", Nexthop("example.com", 2525, True)),
        ("[mail.example.com]", Nexthop("mail.example.com", 25, False)),
        ("[127.0.0.1]:2626", Nexthop("127.0.0.1", 2626, False)),
        ("[ipv6:2001:db8::1]:587", Nexthop("2001:db8::1", 587, False)),
        ("[::1]:submission", Nexthop("::1", 587, False)),
        ("192.0.2.7", Nexthop("192.0.2.7", 25, False)),
        ("Example.COM.", Nexthop("example.com", 25, True)),
    ],
)
def test_parse_nexthop(text: str, hop: Nexthop) -> None:
    assert parse_nexthop(text) == hop


@pytest.mark.parametrize("text", ["[]", "[host", "host:99999", "host:", "2001:db8::1", "[x]y", ":25"])
def test_bad_nexthop(text: str) -> None:
    with pytest.raises(RouteSyntaxError):
        parse_nexthop(text)


def test_nexthop_list_and_str() -> None:
    hops = parse_nexthops("[a.example]:2525, b.example")
    assert [str(h) for h in hops] == ["[a.example]:2525", "b.example"]


def test_parse_route() -> None:
    assert parse_route("smtp:[127.0.0.1]:2626") == Route("smtp", "[127.0.0.1]:2626")
    assert parse_route("relay:example.com") == Route("smtp", "example.com")
    assert parse_route("error:5.1.1 User unknown") == Route("error", "5.1.1 User unknown")
    assert parse_route(":[relay.example]") == Route("", "[relay.example]")
    assert parse_route("local:") == Route("virtual", "")
    assert parse_route("lmtp:unix:/x").transport == "retry"


def test_search_keys() -> None:
    assert search_keys("User@Sub.Example.com") == [
        "user@sub.example.com", "sub.example.com", ".example.com", ".com", "*"]


def test_router_precedence() -> None:
    maps = open_tables(["inline:{ {user@special.example=error:5.1.1 gone}, special.example=smtp:[10.0.0.1],"
                        " .parent.example=smtp:, only-transport.example=relay:, local.example=smtp:[10.0.0.2] }"])
    local = {"local.example", "mine.example"}
    router = Router(maps, "[relay.example]:587", lambda d: d in local)
    assert router.route("user@special.example") == Route("error", "5.1.1 gone")
    assert router.route("other@special.example") == Route("smtp", "[10.0.0.1]")
    assert router.route("x@sub.parent.example") == Route("smtp", "[relay.example]:587")
    assert router.route("x@nowhere.example") == Route("smtp", "[relay.example]:587")
    assert router.route("x@mine.example") == Route("virtual", "mine.example")
    assert router.route("x@local.example") == Route("smtp", "[10.0.0.2]")  # transport_maps wins
    assert router.transport_name("x@mine.example") == "virtual"
    no_relay = Router(maps)
    assert no_relay.route("x@nowhere.example") == Route("smtp", "nowhere.example")
    assert no_relay.route("x@only-transport.example") == Route("smtp", "only-transport.example")
    star = Router(open_tables(["inline:{ *=smtp:[smarthost.example] }"]), "", lambda d: d in local)
    assert star.route("x@anything.example") == Route("smtp", "[smarthost.example]")


def test_router_rejects_bad_relayhost() -> None:
    with pytest.raises(RouteSyntaxError):
        Router([], "[broken")
