"""The individual restrictions, each with Postfix's exact reply text."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.policy.conftest import FakeDirectory, FakeResolver
from tests.unit.policy.test_evaluator import JOHN, LAN, OUTSIDER, policy, rcpt

from mailroom.policy.checks import rbl_query

# -- reject_sender_login_mismatch -------------------------------------------------------------

NOT_OWNED = "553 5.7.1 <{}>: Sender address rejected: not owned by user john@example.org"
NOT_LOGGED_IN = "553 5.7.1 <{}>: Sender address rejected: not logged in"

LOGIN_CASES = [
    ("own address", JOHN, "john@example.org", None),
    ("own address, other case", JOHN, "John@Example.Org", None),
    ("alias that expands to the login", JOHN, "postmaster@example.org", None),
    ("alias shared with another user", JOHN, "team@example.org", None),
    ("another user's address", JOHN, "jane@example.org", NOT_OWNED.format("jane@example.org")),
    ("unknown local address", JOHN, "nobody@example.org", NOT_OWNED.format("nobody@example.org")),
    ("remote address", JOHN, "lisa@example.com", NOT_OWNED.format("lisa@example.com")),
    (
        "percent trick",
        JOHN,
        "jane%example.org@example.org",
        NOT_OWNED.format("jane%example.org@example.org"),
    ),
    ("null sender", JOHN, "", None),
    (
        "unauthenticated, local domain",
        OUTSIDER,
        "john@example.org",
        NOT_LOGGED_IN.format("john@example.org"),
    ),
    (
        "unauthenticated, unknown local",
        OUTSIDER,
        "nobody@example.org",
        NOT_LOGGED_IN.format("nobody@example.org"),
    ),
    ("unauthenticated, remote", OUTSIDER, "lisa@example.com", None),
    ("unauthenticated, null sender", OUTSIDER, "", None),
]


@pytest.mark.parametrize(
    "who, sender, expected", [c[1:] for c in LOGIN_CASES], ids=[c[0] for c in LOGIN_CASES]
)
def test_sender_login_mismatch(
    directory: FakeDirectory,
    resolver: FakeResolver,
    who: dict[str, Any],
    sender: str,
    expected: str | None,
) -> None:
    r = policy(directory, resolver, smtpd_sender_restrictions="reject_sender_login_mismatch")
    assert rcpt(r, {**who, "sender": sender}, "john@example.org") == expected


def test_the_two_halves_of_login_mismatch(directory: FakeDirectory, resolver: FakeResolver) -> None:
    auth = policy(
        directory, resolver, smtpd_sender_restrictions="reject_authenticated_sender_login_mismatch"
    )
    assert rcpt(auth, {**OUTSIDER, "sender": "john@example.org"}, "john@example.org") is None
    assert rcpt(
        auth, {**JOHN, "sender": "jane@example.org"}, "john@example.org"
    ) == NOT_OWNED.format("jane@example.org")
    unauth = policy(
        directory,
        resolver,
        smtpd_sender_restrictions="reject_unauthenticated_sender_login_mismatch",
    )
    assert rcpt(unauth, {**JOHN, "sender": "jane@example.org"}, "john@example.org") is None
    assert rcpt(
        unauth, {**OUTSIDER, "sender": "jane@example.org"}, "john@example.org"
    ) == NOT_LOGGED_IN.format("jane@example.org")


# -- address and name syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, expected",
    [
        ("lisa@example.com", None),
        ("lisa@example.com.", None),
        ("lisa@[192.0.2.1]", None),
        ("", None),
        ("lisa", "504 5.5.2 <lisa>: Sender address rejected: need fully-qualified address"),
        (
            "lisa@localhost",
            "504 5.5.2 <lisa@localhost>: Sender address rejected: need fully-qualified address",
        ),
        (
            "lisa@bad..example",
            "504 5.5.2 <lisa@bad..example>: Sender address rejected: need fully-qualified address",
        ),
    ],
)
def test_reject_non_fqdn_sender(
    directory: FakeDirectory, resolver: FakeResolver, sender: str, expected: str | None
) -> None:
    r = policy(directory, resolver, smtpd_sender_restrictions="reject_non_fqdn_sender")
    assert rcpt(r, {**LAN, "sender": sender}, "john@example.org") == expected


@pytest.mark.parametrize(
    "restriction, helo, expected",
    [
        ("reject_non_fqdn_helo_hostname", "mail.example.com", None),
        ("reject_non_fqdn_helo_hostname", "mail.example.com.", None),
        ("reject_non_fqdn_helo_hostname", "[192.0.2.1]", None),
        (
            "reject_non_fqdn_helo_hostname",
            "localhost",
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        ),
        (
            "reject_non_fqdn_helo_hostname",
            "[192.0.2]",
            "501 5.5.2 <[192.0.2]>: Helo command rejected: invalid ip address",
        ),
        ("reject_invalid_helo_hostname", "localhost", None),
        ("reject_invalid_helo_hostname", "192.0.2.1", None),
        (
            "reject_invalid_helo_hostname",
            "bad_host!",
            "501 5.5.2 <bad_host!>: Helo command rejected: Invalid name",
        ),
        (
            "reject_invalid_helo_hostname",
            "a..b",
            "501 5.5.2 <a..b>: Helo command rejected: Invalid name",
        ),
        ("reject_unknown_helo_hostname", "mail.example.com", None),
        (
            "reject_unknown_helo_hostname",
            "nx.example.com",
            "450 4.7.1 <nx.example.com>: Helo command rejected: Host not found",
        ),
        ("reject_unknown_helo_hostname", "", None),  # no HELO: no HELO restrictions
    ],
)
def test_helo_restrictions(
    directory: FakeDirectory,
    resolver: FakeResolver,
    restriction: str,
    helo: str,
    expected: str | None,
) -> None:
    resolver.add("A", "mail.example.com", "192.0.2.25")
    r = policy(directory, resolver, smtpd_helo_restrictions=restriction)
    assert rcpt(r, {**LAN, "helo": helo}, "john@example.org") == expected


# -- reject_unknown_sender_domain ---------------------------------------------------------------


@pytest.fixture
def dns(resolver: FakeResolver) -> FakeResolver:
    resolver.add("MX", "mx.example", (10, "mail.mx.example"))
    resolver.add("A", "a-only.example", "192.0.2.1")
    resolver.add("AAAA", "aaaa-only.example", "2001:db8::1")
    resolver.add("MX", "nullmx.example", (0, ""))
    resolver.failing.add("flaky.example")
    return resolver


@pytest.mark.parametrize(
    "sender, expected",
    [
        ("a@mx.example", None),
        ("a@a-only.example", None),
        ("a@aaaa-only.example", None),
        ("", None),
        ("a@[192.0.2.1]", None),
        ("a@nx.example", "450 4.1.8 <a@nx.example>: Sender address rejected: Domain not found"),
        ("a@bad..example", "450 4.1.8 <a@bad..example>: Sender address rejected: Domain not found"),
        (
            "a@nullmx.example",
            "550 5.7.27 <a@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)",
        ),
        (
            "a@flaky.example",
            "450 4.1.8 <a@flaky.example>: Sender address rejected: Domain not found",
        ),
    ],
)
def test_reject_unknown_sender_domain(
    directory: FakeDirectory, dns: FakeResolver, sender: str, expected: str | None
) -> None:
    r = policy(directory, dns, smtpd_sender_restrictions="reject_unknown_sender_domain")
    assert rcpt(r, {**OUTSIDER, "sender": sender}, "john@example.org") == expected


def test_unknown_sender_domain_skips_our_domains(
    directory: FakeDirectory, dns: FakeResolver
) -> None:
    r = policy(directory, dns, smtpd_sender_restrictions="reject_unknown_sender_domain")
    assert rcpt(r, {**JOHN, "sender": "john@example.org"}, "lisa@example.com") is None
    assert dns.queries == []


def test_dns_tempfail_defers_only_if_nothing_rejects(
    directory: FakeDirectory, dns: FakeResolver
) -> None:
    # Postfix unknown_address_tempfail_action = defer_if_permit.
    r = policy(directory, dns, smtpd_sender_restrictions="reject_unknown_sender_domain permit")
    flaky = {**OUTSIDER, "sender": "a@flaky.example"}
    assert (
        rcpt(r, flaky, "john@example.org")
        == "450 4.1.8 <a@flaky.example>: Sender address rejected: Domain not found"
    )
    assert rcpt(r, flaky, "lisa@example.com") == "554 5.7.1 <lisa@example.com>: Relay access denied"


# -- reject_unlisted_sender, reject_unknown_client_hostname -----------------------------------


def test_reject_unlisted_sender(directory: FakeDirectory, resolver: FakeResolver) -> None:
    r = policy(directory, resolver, smtpd_sender_restrictions="reject_unlisted_sender")
    assert rcpt(r, {**LAN, "sender": "nobody@example.org"}, "john@example.org") == (
        "550 5.1.0 <nobody@example.org>: Sender address rejected: User unknown in virtual mailbox table"
    )
    assert rcpt(r, {**LAN, "sender": "anyone@example.net"}, "john@example.org") is None  # catch-all
    assert rcpt(r, {**LAN, "sender": "lisa@example.com"}, "john@example.org") is None
    implicit = policy(directory, resolver, reject_unlisted_sender=True)
    assert rcpt(implicit, {**LAN, "sender": "nobody@example.org"}, "john@example.org") == (
        "550 5.1.0 <nobody@example.org>: Sender address rejected: User unknown in virtual mailbox table"
    )


def test_reject_unknown_client_hostname(directory: FakeDirectory, resolver: FakeResolver) -> None:
    r = policy(directory, resolver, smtpd_client_restrictions="reject_unknown_client_hostname")
    assert rcpt(r, {**OUTSIDER, "client_name": "unknown"}, "john@example.org") == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [203.0.113.5]"
    )
    assert rcpt(r, OUTSIDER, "john@example.org") is None


# -- reject_rbl_client -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, query",
    [
        ("192.0.2.99", "99.2.0.192.zen.example"),
        ("::ffff:192.0.2.99", "99.2.0.192.zen.example"),
        (
            "2001:db8::1",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example",
        ),
        ("bogus", None),
    ],
)
def test_rbl_query_names(ip: str, query: str | None) -> None:
    assert rbl_query(ip, "zen.example") == query


RBL_CLIENT = {**OUTSIDER, "client_address": "192.0.2.99"}


@pytest.mark.parametrize(
    "argument, answers, txt, expected",
    [
        (
            "zen.example",
            ["127.0.0.2"],
            ["Listed, see https://zen.example/q?192.0.2.99"],
            "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example; "
            "Listed, see https://zen.example/q?192.0.2.99",
        ),
        (
            "zen.example",
            ["127.0.0.4"],
            [],
            "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example",
        ),
        (
            "zen.example",
            ["127.0.0.2"],
            ["one", "two"],
            "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example; one / two",
        ),
        ("zen.example", [], [], None),
        ("zen.example", ["127.255.255.254"], [], None),  # "query refused", not a listing
        ("zen.example=127.0.0.4", ["127.0.0.2"], [], None),
        (
            "zen.example=127.0.0.4",
            ["127.0.0.2", "127.0.0.4"],
            [],
            "554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.example",
        ),
    ],
)
def test_reject_rbl_client(
    directory: FakeDirectory,
    resolver: FakeResolver,
    argument: str,
    answers: list[str],
    txt: list[str],
    expected: str | None,
) -> None:
    resolver.add("A", "99.2.0.192.zen.example", *answers)
    resolver.add("TXT", "99.2.0.192.zen.example", *txt)
    r = policy(
        directory,
        resolver,
        smtpd_client_restrictions=f"permit_mynetworks reject_rbl_client {argument}",
    )
    assert rcpt(r, RBL_CLIENT, "john@example.org") == expected
    assert rcpt(r, {**RBL_CLIENT, "client_address": "127.0.0.1"}, "john@example.org") is None


def test_rbl_outage_gives_the_benefit_of_the_doubt(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    resolver.failing.add("99.2.0.192.zen.example")
    r = policy(directory, resolver, smtpd_client_restrictions="reject_rbl_client zen.example")
    assert rcpt(r, RBL_CLIENT, "john@example.org") is None
