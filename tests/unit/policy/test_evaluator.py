"""Restriction lists end to end: stages, list semantics, relay control and Postfix's texts."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from tests.unit.policy.conftest import FakeDirectory, FakeResolver

from mailroom.policy.context import PolicyContext
from mailroom.policy.evaluator import PolicySettings, Restrictions
from mailroom.policy.restrictions import parse_restrictions

GUIDE = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

OUTSIDER: dict[str, Any] = {
    "client_address": "203.0.113.5",
    "client_name": "mail.outside.example",
    "helo": "mail.outside.example",
    "sender": "lisa@example.com",
}
JOHN: dict[str, Any] = {
    **OUTSIDER,
    "sasl_username": "john@example.org",
    "sender": "john@example.org",
}
LAN: dict[str, Any] = {**OUTSIDER, "client_address": "127.0.0.1", "client_name": "localhost"}


def policy(
    directory: FakeDirectory,
    resolver: FakeResolver,
    *,
    relay: str = "",
    recipient: str = GUIDE,
    mynetworks: tuple[Any, ...] = LOOPBACK,
    **kw: Any,
) -> Restrictions:
    lists: dict[str, Any] = {
        k.removeprefix("smtpd_"): parse_restrictions(v, k)
        for k, v in kw.items()
        if k.endswith("_restrictions")
    }
    flags = {k: v for k, v in kw.items() if not k.endswith("_restrictions")}
    settings = PolicySettings(
        relay_restrictions=parse_restrictions(relay),
        recipient_restrictions=parse_restrictions(recipient),
        mynetworks=mynetworks,
        **lists,
        **flags,
    )
    return Restrictions(settings, directory, resolver)


def judge(r: Restrictions, stage: str, **ctx: Any) -> str | None:
    reply = asyncio.run(r.evaluate(stage, PolicyContext(**ctx)))
    return None if reply is None else str(reply)


def rcpt(r: Restrictions, who: dict[str, Any], recipient: str, **extra: Any) -> str | None:
    return judge(r, "rcpt", **{**who, **extra, "recipient": recipient})


# -- the guide's list: permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination --

RELAY_DENIED = "554 5.7.1 <{}>: Relay access denied"
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"

GUIDE_CASES = [
    ("outsider to local user", OUTSIDER, "john@example.org", None),
    ("outsider to local user, odd case", OUTSIDER, "JOHN@Example.ORG", None),
    ("outsider to alias", OUTSIDER, "postmaster@example.org", None),
    ("outsider to catch-all domain", OUTSIDER, "anything@example.net", None),
    ("outsider to bare postmaster", OUTSIDER, "postmaster", None),
    ("outsider to remote", OUTSIDER, "lisa@example.com", RELAY_DENIED.format("lisa@example.com")),
    ("authenticated to remote", JOHN, "lisa@example.com", None),
    ("mynetworks to remote", LAN, "lisa@example.com", None),
    (
        "outsider to unknown local user",
        OUTSIDER,
        "nobody@example.org",
        UNKNOWN.format("nobody@example.org"),
    ),
    (
        "authenticated to unknown local user",
        JOHN,
        "nobody@example.org",
        UNKNOWN.format("nobody@example.org"),
    ),
    (
        "mynetworks to unknown local user",
        LAN,
        "nobody@example.org",
        UNKNOWN.format("nobody@example.org"),
    ),
    # every relay trick is refused to an outsider, with the address as the client wrote it
    (
        "percent hack",
        OUTSIDER,
        "lisa%example.com@example.org",
        RELAY_DENIED.format("lisa%example.com@example.org"),
    ),
    (
        "bang path",
        OUTSIDER,
        "example.com!lisa@example.org",
        RELAY_DENIED.format("example.com!lisa@example.org"),
    ),
    (
        "double at",
        OUTSIDER,
        "lisa@example.com@example.org",
        RELAY_DENIED.format("lisa@example.com@example.org"),
    ),
    (
        "quoted at",
        OUTSIDER,
        '"lisa@example.com"@example.org',
        RELAY_DENIED.format('"lisa@example.com"@example.org'),
    ),
    (
        "quoted percent",
        OUTSIDER,
        '"lisa%example.com"@example.org',
        RELAY_DENIED.format('"lisa%example.com"@example.org'),
    ),
    (
        "percent to own domain",
        OUTSIDER,
        "john%example.org@example.org",
        RELAY_DENIED.format("john%example.org@example.org"),
    ),
    ("address literal", OUTSIDER, "lisa@[192.0.2.1]", RELAY_DENIED.format("lisa@[192.0.2.1]")),
    ("trailing dot", OUTSIDER, "john@example.org.", None),
    (
        "double trailing dot",
        OUTSIDER,
        "john@example.org..",
        RELAY_DENIED.format("john@example.org.."),
    ),
    ("source route to local", OUTSIDER, "@relay.example:john@example.org", None),
    (
        "source route to remote",
        OUTSIDER,
        "@example.org:lisa@example.com",
        RELAY_DENIED.format("@example.org:lisa@example.com"),
    ),
    ("domainless user", OUTSIDER, "john", RELAY_DENIED.format("john")),
    # authenticated clients may relay, but a trick aimed at our domain names no mailbox
    (
        "authenticated percent hack",
        JOHN,
        "lisa%example.com@example.org",
        UNKNOWN.format("lisa%example.com@example.org"),
    ),
]


@pytest.mark.parametrize(
    "who, recipient, expected", [c[1:] for c in GUIDE_CASES], ids=[c[0] for c in GUIDE_CASES]
)
def test_guide_restrictions(
    directory: FakeDirectory,
    resolver: FakeResolver,
    who: dict[str, Any],
    recipient: str,
    expected: str | None,
) -> None:
    assert rcpt(policy(directory, resolver), who, recipient) == expected


def test_empty_mynetworks_trusts_nobody(directory: FakeDirectory, resolver: FakeResolver) -> None:
    r = policy(directory, resolver, mynetworks=())
    assert rcpt(r, LAN, "lisa@example.com") == RELAY_DENIED.format("lisa@example.com")
    assert rcpt(r, {**LAN, "sasl_username": "john@example.org"}, "lisa@example.com") is None


def test_postfix_default_relay_restrictions_defer_relaying(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = Restrictions(PolicySettings(mynetworks=LOOPBACK), directory, resolver)
    assert (
        rcpt(r, OUTSIDER, "lisa@example.com") == "454 4.7.1 <lisa@example.com>: Relay access denied"
    )
    assert rcpt(r, OUTSIDER, "john@example.org") is None
    assert rcpt(r, JOHN, "lisa@example.com") is None
    assert rcpt(r, LAN, "lisa@example.com") is None


def test_relay_list_then_recipient_list(directory: FakeDirectory, resolver: FakeResolver) -> None:
    # A permit in the relay list ends that list only; the recipient list still runs.
    r = policy(directory, resolver, relay=GUIDE, recipient="reject_non_fqdn_recipient")
    assert (
        rcpt(r, LAN, "lisa@localhost")
        == "504 5.5.2 <lisa@localhost>: Recipient address rejected: need fully-qualified address"
    )
    assert rcpt(r, LAN, "lisa@example.com") is None
    assert rcpt(r, OUTSIDER, "lisa@example.com") == RELAY_DENIED.format("lisa@example.com")


@pytest.mark.parametrize(
    "recipient_list, expected",
    [
        (
            "permit_mynetworks reject",
            "554 5.7.1 <john@example.org>: Recipient address rejected: Access denied",
        ),
        (
            "permit_mynetworks defer",
            "450 4.3.2 <john@example.org>: Recipient address rejected: Try again later",
        ),
        ("permit_auth_destination reject", None),
        (
            "defer_if_permit",
            "450 4.7.0 <john@example.org>: Recipient address rejected: defer_if_permit requested",
        ),
        (
            "reject_plaintext_session reject_unauth_destination",
            "450 4.7.1 Session encryption is required",
        ),
    ],
)
def test_generic_restrictions(
    directory: FakeDirectory, resolver: FakeResolver, recipient_list: str, expected: str | None
) -> None:
    assert (
        rcpt(policy(directory, resolver, recipient=recipient_list), OUTSIDER, "john@example.org")
        == expected
    )


def test_defer_if_reject_softens_a_later_reject(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(directory, resolver, recipient="defer_if_reject reject_unauth_destination")
    assert rcpt(r, OUTSIDER, "lisa@example.com") == (
        "450 4.7.0 <lisa@example.com>: Recipient address rejected: defer_if_reject requested"
    )
    assert rcpt(r, OUTSIDER, "john@example.org") is None


def test_permit_auth_destination_refuses_tricks(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(directory, resolver, recipient="permit_auth_destination reject")
    assert rcpt(r, OUTSIDER, "lisa%example.com@example.org") == (
        "554 5.7.1 <lisa%example.com@example.org>: Recipient address rejected: Access denied"
    )


# -- smtpd_delay_reject -------------------------------------------------------------------

SUBMISSION = "permit_sasl_authenticated, reject"
CLIENT_DENIED = "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"


def test_delay_reject_yes_waits_for_rcpt(directory: FakeDirectory, resolver: FakeResolver) -> None:
    r = policy(directory, resolver, mynetworks=(), smtpd_client_restrictions=SUBMISSION)
    ctx = {**LAN, "sender": "john@example.org"}
    for stage in ("connect", "helo", "mail"):
        assert judge(r, stage, **ctx) is None
    assert rcpt(r, ctx, "john@example.org") == CLIENT_DENIED
    assert rcpt(r, {**ctx, "sasl_username": "john@example.org"}, "lisa@example.com") is None


def test_delay_reject_no_answers_at_each_stage(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(
        directory,
        resolver,
        mynetworks=(),
        smtpd_client_restrictions=SUBMISSION,
        smtpd_helo_restrictions="reject_non_fqdn_helo_hostname",
        smtpd_sender_restrictions="reject_non_fqdn_sender",
        delay_reject=False,
    )
    assert judge(r, "connect", **LAN) == CLIENT_DENIED
    authed = {**LAN, "sasl_username": "john@example.org"}
    assert judge(r, "connect", **authed) is None
    assert judge(r, "helo", **{**authed, "helo": "localhost"}) == (
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    )
    assert judge(r, "mail", **{**authed, "sender": "john"}) == (
        "504 5.5.2 <john>: Sender address rejected: need fully-qualified address"
    )
    # At RCPT only the relay and recipient lists run: the bad HELO/sender are not judged again.
    assert rcpt(r, {**authed, "helo": "localhost", "sender": "john"}, "lisa@example.com") is None


def test_delayed_lists_run_in_order_and_a_reject_ends_everything(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(
        directory,
        resolver,
        smtpd_client_restrictions="reject",
        smtpd_helo_restrictions="reject",
        smtpd_sender_restrictions="reject",
    )
    assert rcpt(r, LAN, "lisa@example.com") == CLIENT_DENIED
    r = policy(
        directory, resolver, smtpd_helo_restrictions="reject", smtpd_sender_restrictions="reject"
    )
    assert (
        rcpt(r, LAN, "lisa@example.com")
        == "554 5.7.1 <mail.outside.example>: Helo command rejected: Access denied"
    )
    # No HELO at all: Postfix skips the HELO list entirely.
    assert (
        rcpt(r, {**LAN, "helo": ""}, "lisa@example.com")
        == "554 5.7.1 <lisa@example.com>: Sender address rejected: Access denied"
    )
    # A permit in the client list does not leak into the relay decision.
    r = policy(directory, resolver, smtpd_client_restrictions="permit")
    assert rcpt(r, OUTSIDER, "lisa@example.com") == RELAY_DENIED.format("lisa@example.com")


def test_each_recipient_is_judged_on_its_own(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    resolver.failing.add("flaky.example")
    r = policy(directory, resolver, smtpd_sender_restrictions="reject_unknown_sender_domain")
    flaky = {**OUTSIDER, "sender": "a@flaky.example"}
    assert (
        rcpt(r, flaky, "john@example.org")
        == "450 4.1.8 <a@flaky.example>: Sender address rejected: Domain not found"
    )
    # The deferral belonged to that RCPT only; example.com simply has no records yet.
    assert (
        rcpt(r, OUTSIDER, "john@example.org")
        == "450 4.1.8 <lisa@example.com>: Sender address rejected: Domain not found"
    )
    resolver.add("MX", "example.com", (10, "mx.example.com"))
    assert rcpt(r, OUTSIDER, "john@example.org") is None
    assert rcpt(r, OUTSIDER, "nobody@example.org") == UNKNOWN.format("nobody@example.org")


def test_etrn(directory: FakeDirectory, resolver: FakeResolver) -> None:
    r = policy(directory, resolver, smtpd_etrn_restrictions="permit_mynetworks reject")
    assert judge(r, "etrn", **OUTSIDER, etrn_domain="example.com") == (
        "554 5.7.1 <example.com>: Etrn command rejected: Access denied"
    )
    assert judge(r, "etrn", **LAN, etrn_domain="example.com") is None


# -- look-up failures -------------------------------------------------------------------------


def test_directory_unavailable_is_a_temporary_lookup_failure(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(directory, resolver)
    directory.unavailable = True
    assert (
        rcpt(r, OUTSIDER, "john@example.org")
        == "451 4.3.0 <john@example.org>: Temporary lookup failure"
    )
    # A trusted client passes the lists without a look-up; the mailbox check still needs one.
    assert (
        rcpt(r, LAN, "john@example.org") == "451 4.3.0 <john@example.org>: Temporary lookup failure"
    )
    r = policy(directory, resolver, smtpd_sender_restrictions="reject_sender_login_mismatch")
    assert (
        rcpt(r, OUTSIDER, "lisa@example.com")
        == "451 4.3.0 <lisa@example.com>: Temporary lookup failure"
    )


def test_unlisted_recipient_check_can_be_turned_off(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    r = policy(directory, resolver, reject_unlisted_recipient=False)
    assert rcpt(r, OUTSIDER, "nobody@example.org") is None
    r = policy(
        directory,
        resolver,
        recipient=GUIDE + " reject_unlisted_recipient",
        reject_unlisted_recipient=False,
    )
    assert rcpt(r, LAN, "nobody@example.org") is None  # permit_mynetworks ended the list first
    r = policy(
        directory,
        resolver,
        recipient="reject_unlisted_recipient " + GUIDE,
        reject_unlisted_recipient=False,
    )
    assert rcpt(r, LAN, "nobody@example.org") == UNKNOWN.format("nobody@example.org")


# -- configuration ----------------------------------------------------------------------------


def test_open_relay_configuration_is_refused(
    directory: FakeDirectory, resolver: FakeResolver
) -> None:
    with pytest.raises(ValueError, match="specify at least one working instance of"):
        PolicySettings(
            relay_restrictions=(), recipient_restrictions=parse_restrictions("permit_mynetworks")
        )
    with pytest.raises(
        ValueError, match="smtpd_relay_restrictions or smtpd_recipient_restrictions"
    ):
        policy(directory, resolver, recipient="permit_sasl_authenticated permit")


def test_unknown_stage(directory: FakeDirectory, resolver: FakeResolver) -> None:
    with pytest.raises(ValueError, match="unknown policy stage 'data'"):
        judge(policy(directory, resolver), "data", **OUTSIDER)


def test_from_config_reads_main_cf_names(directory: FakeDirectory, resolver: FakeResolver) -> None:
    values: dict[str, Any] = {
        "smtpd_recipient_restrictions": GUIDE.replace(",", "").split(),
        "smtpd_relay_restrictions": [],
        "mynetworks": [ipaddress.ip_network("192.0.2.0/24")],
        "smtpd_delay_reject": False,
        "smtpd_client_restrictions": ["reject_rbl_client", "zen.example"],
    }
    settings = PolicySettings.from_config(values.__getitem__)
    assert settings.delay_reject is False
    assert settings.reject_unlisted_recipient is True  # absent: Postfix default
    assert settings.client_restrictions[0].argument == "zen.example"
    r = Restrictions(settings, directory, resolver)
    assert r.mynetworks_contains("192.0.2.7") and not r.mynetworks_contains("127.0.0.1")
    with pytest.raises(
        ValueError, match='smtpd_helo_restrictions: unknown restriction "reject_bad_helo"'
    ):
        PolicySettings.from_config(
            {**values, "smtpd_helo_restrictions": ["reject_bad_helo"]}.__getitem__
        )


@pytest.mark.parametrize(
    "ip, inside",
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::ffff:127.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("192.0.2.1", False),
        ("not-an-ip", False),
    ],
)
def test_mynetworks_contains(
    directory: FakeDirectory, resolver: FakeResolver, ip: str, inside: bool
) -> None:
    r = policy(
        directory,
        resolver,
        mynetworks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    )
    assert r.mynetworks_contains(ip) is inside
