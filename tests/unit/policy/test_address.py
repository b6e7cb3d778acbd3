"""Which RCPT addresses truly route to our domains (the reject_unauth_destination question)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom.policy.address import route

OURS = {"local.org", "example.org"}


def ours(domain: str) -> bool:
    return domain in OURS


# address, routing domain, routed, judged local
TABLE = [
    ("user@local.org", "local.org", False, True),
    ("USER@LOCAL.ORG", "local.org", False, True),
    ("user@Local.Org", "local.org", False, True),
    ("user@local.org.", "local.org", False, True),  # one trailing dot is stripped
    ("user@local.org..", "local.org..", False, False),  # but ".." is invalid
    ("<user@local.org>", "local.org", False, True),
    ("user@remote.com", "remote.com", False, False),
    ("user@sub.local.org", "sub.local.org", False, False),  # subdomains are not ours
    ("user@local.org.remote.com", "local.org.remote.com", False, False),
    # percent hack (allow_percent_hack = yes)
    ("user%remote.com@local.org", "local.org", True, False),
    ("user%local.org@local.org", "local.org", True, False),  # routed: never trusted
    ("a%b%remote.com@local.org", "local.org", True, False),
    # bang paths (swap_bangpath = yes)
    ("remote.com!user@local.org", "local.org", True, False),
    ("a!b!user@local.org", "local.org", True, False),
    # an '@' inside the local part
    ("user@remote.com@local.org", "local.org", True, False),
    ('"user@remote.com"@local.org', "local.org", True, False),  # resolve_dequoted_address
    ('"user%remote.com"@local.org', "local.org", True, False),
    ('"remote.com!user"@local.org', "local.org", True, False),
    ('"user\\@remote.com"@local.org', "local.org", True, False),
    ('"john"@local.org', "local.org", False, True),  # quoting alone changes nothing
    ('"john doe"@local.org', "local.org", False, True),
    # source routes are ignored (RFC 5321 §4.1.1.3), the final mailbox decides
    ("@relay.example:user@local.org", "local.org", False, True),
    ("@a.example,@b.example:user@local.org", "local.org", False, True),
    ("@a.example,@b.example:user@remote.com", "remote.com", False, False),
    ("@local.org:user@remote.com", "remote.com", False, False),
    ("@local.org:user%remote.com@local.org", "local.org", True, False),
    ("@nocolon.example", "", False, False),
    # address literals are never ours
    ("user@[192.0.2.1]", "[192.0.2.1]", False, False),
    ("user@[127.0.0.1]", "[127.0.0.1]", False, False),
    ("user@[IPv6:::1]", "[ipv6:::1]", False, False),
    ("user@[999.1.1.1]", "[999.1.1.1]", False, False),
    # no domain: only the bare postmaster of RFC 5321 §4.5.1
    ("postmaster", "", False, True),
    ("<postmaster>", "", False, True),
    ("Postmaster", "", False, True),
    ("user", "", False, False),
    ("postmaster%remote.com", "", True, False),
    ("user@", "", False, False),
    # malformed
    ("", "", False, False),
    ("@local.org", "", False, False),
    ('"unbalanced@local.org', "", False, False),
    ('a"b"@local.org', "", False, False),
    ("user@loc_al.org", "loc_al.org", False, False),  # valid syntax, just not ours
    ("user@-bad.org", "-bad.org", False, False),
    ("user@local..org", "local..org", False, False),
    ("user@1.2.3.4", "1.2.3.4", False, False),  # numeric "hostname"
    ("us\ner@local.org", "", False, False),  # control character
]


@pytest.mark.parametrize("address, domain, routed, local", TABLE)
def test_routing_table(address: str, domain: str, routed: bool, local: bool) -> None:
    r = route(address)
    assert r.domain == domain
    assert r.routed is routed
    assert r.is_local(ours) is local


@pytest.mark.parametrize(
    "address, final",
    [
        ("user%remote.com@local.org", "remote.com"),
        ("remote.com!user@local.org", "remote.com"),
        ("user@remote.com@local.org", "remote.com"),
        ('"user@remote.com"@local.org', "remote.com"),
        ("a!b!user@local.org", "a"),
        ("user%b%remote.com@local.org", "remote.com"),
        ("user%Remote.Com.@local.org", "remote.com"),
        ("user@local.org", "local.org"),
    ],
)
def test_final_domain_follows_postfix_rewriting(address: str, final: str) -> None:
    assert route(address).final_domain == final


def test_normalized_form_lowercases_only_the_domain() -> None:
    r = route('"John"@Example.ORG.')
    assert r.normalized == "John@example.org"
    assert r.source_route is False
    assert route("@x.example:a@b.example").source_route is True


def test_routed_local_domain_is_still_recognised_as_ours() -> None:
    # The implicit "User unknown" check needs the outer domain even when routed.
    assert route("user%remote.com@local.org").domain_is_ours(ours) is True
    assert route("user@[192.0.2.1]").domain_is_ours(ours) is False


def test_is_local_asks_the_directory_only_for_plain_addresses() -> None:
    asked: list[str] = []

    def spy(domain: str) -> bool:
        asked.append(domain)
        return True

    assert route("user%remote.com@local.org").is_local(spy) is False
    assert route("user@[192.0.2.1]").is_local(spy) is False
    assert asked == []
    assert route("user@local.org").is_local(spy) is True
    assert asked == ["local.org"]


# -- property: whatever the disguise, a remote final destination is never "local" ------------

LOCAL_DOMAINS = sorted(OURS)
REMOTE_DOMAINS = ["remote.com", "evil.example", "local.org.evil.example", "sub.local.org"]
_local_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+=", min_size=1, max_size=8)


def _case(draw: st.DrawFn, domain: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in domain)


@st.composite
def disguised(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(address, next-hop domain, plain): a mailbox at `final`, maybe wrapped in routing tricks."""
    final = draw(st.sampled_from(LOCAL_DOMAINS + REMOTE_DOMAINS))
    user = draw(_local_chars)
    outer = draw(st.sampled_from(LOCAL_DOMAINS))
    trick = draw(
        st.sampled_from(
            ["none", "percent", "bang", "at", "quoted-at", "quoted-percent", "quoted-bang"]
        )
    )
    if trick == "none":
        local, domain = user, final
    else:
        inner = {
            "percent": f"{user}%{final}",
            "bang": f"{final}!{user}",
            "at": f"{user}@{final}",
            "quoted-at": f'"{user}@{final}"',
            "quoted-percent": f'"{user}%{final}"',
            "quoted-bang": f'"{final}!{user}"',
        }[trick]
        local, domain = inner, outer
    dot = "." if draw(st.booleans()) else ""
    address = f"{local}@{_case(draw, domain)}{dot}"
    if draw(st.booleans()):
        hops = draw(
            st.lists(st.sampled_from(LOCAL_DOMAINS + REMOTE_DOMAINS), min_size=1, max_size=3)
        )
        address = ",".join("@" + h for h in hops) + ":" + address
    if draw(st.booleans()):
        address = f"<{address}>"
    return address, final, trick == "none"


@settings(max_examples=500)
@given(disguised())
def test_no_remote_final_destination_is_ever_judged_local(case: tuple[str, str, bool]) -> None:
    address, final, plain = case
    r = route(address)
    if final not in OURS:
        assert not r.is_local(ours), address
    if plain:  # and an undisguised mailbox in our domain is ours
        assert r.is_local(ours) is (final in OURS), address
    else:  # a disguised one never is, even when it points back at us
        assert not r.is_local(ours), address
    assert r.final_domain == final, address


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_arbitrary_text_never_raises_and_local_means_plain(text: str) -> None:
    r = route(text)
    if r.is_local(ours):
        assert r.domain in OURS or r.bare_postmaster
        assert not any(c in r.local_part for c in "@%!")
