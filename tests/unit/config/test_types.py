"""Parameter value types: Postfix's text forms in, Python values out, clear errors otherwise."""

from __future__ import annotations

import ipaddress

import pytest

from mailroom.config import types as t


def test_split_list_commas_spaces_and_braces() -> None:
    assert t.split_list(" a, b  c,,d ") == ["a", "b", "c", "d"]
    assert t.split_list("inline:{ a=b, c=d }, texthash:/x") == ["inline:{ a=b, c=d }", "texthash:/x"]


@pytest.mark.parametrize("text, seconds", [("300s", 300), ("5m", 300), ("2h", 7200), ("5d", 432000), ("1w", 604800), ("30", 30)])
def test_time_units(text: str, seconds: int) -> None:
    assert t.Time("s").parse(text) == seconds


def test_time_default_unit() -> None:
    assert t.Time("d").parse("5") == 5 * 86400


@pytest.mark.parametrize("text", ["", "5x", "m", "-1s", "1.5h"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError):
        t.Time().parse(text)


def test_bool() -> None:
    assert t.Bool().parse("YES") is True
    assert t.Bool().parse("no") is False
    with pytest.raises(ValueError, match="yes or no"):
        t.Bool().parse("maybe")


def test_int_rejects_garbage_and_negatives() -> None:
    assert t.Int().parse("10240000") == 10240000
    for bad in ("10M", "", "1e6", "-5"):
        with pytest.raises(ValueError):
            t.Int().parse(bad)


def test_cidr_list_accepts_postfix_ipv6_brackets() -> None:
    nets = t.CidrList().parse("127.0.0.0/8 [::ffff:127.0.0.0]/104, [::1]/128 192.0.2.1")
    assert nets[0] == ipaddress.ip_network("127.0.0.0/8")
    assert nets[2] == ipaddress.ip_network("::1/128")
    assert nets[3] == ipaddress.ip_network("192.0.2.1/32")
    assert t.CidrList().parse("") == []
    with pytest.raises(ValueError, match="bad network address 'example.com'"):
        t.CidrList().parse("example.com")


def test_listen_list() -> None:
    parsed = t.ListenList().parse("127.0.0.1:2525, [::1]:2525 *:25")
    assert [(a.host, a.port) for a in parsed] == [("127.0.0.1", 2525), ("::1", 2525), ("", 25)]
    assert str(parsed[1]) == "[::1]:2525"
    for bad in ("127.0.0.1", "[::1]", "host:99999", "[nothex]:25"):
        with pytest.raises(ValueError):
            t.ListenList().parse(bad)


def test_lookup_tables() -> None:
    assert t.LookupTable().parse("inline:{ example.com=smtp:[127.0.0.1]:2626 }") == ["inline:{ example.com=smtp:[127.0.0.1]:2626 }"]
    with pytest.raises(ValueError, match="type:name"):
        t.LookupTable().parse("/etc/postfix/transport")


def test_choice() -> None:
    kind = t.Choice(("", "none", "may", "encrypt"))
    assert kind.parse("MAY") == "may"
    assert kind.parse("") == ""
    with pytest.raises(ValueError):
        kind.parse("always")
