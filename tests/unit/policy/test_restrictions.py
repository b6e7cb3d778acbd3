"""Restriction lists are parsed and vetted once, when main.cf is loaded."""

from __future__ import annotations

import pytest

from mailroom.policy.restrictions import (
    Restriction,
    blocks_relaying,
    parse_restrictions,
    require_relay_control,
)


def test_guide_list_from_words_and_from_text() -> None:
    expected = (
        Restriction("permit_mynetworks"),
        Restriction("permit_sasl_authenticated"),
        Restriction("reject_unauth_destination"),
    )
    words = ["permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"]
    assert parse_restrictions(words) == expected
    assert (
        parse_restrictions(
            " permit_mynetworks,\n permit_sasl_authenticated  reject_unauth_destination"
        )
        == expected
    )


def test_argument_taking_restriction_swallows_the_next_word() -> None:
    parsed = parse_restrictions(["permit_mynetworks", "reject_rbl_client", "zen.example", "reject"])
    assert parsed == (
        Restriction("permit_mynetworks"),
        Restriction("reject_rbl_client", "zen.example"),
        Restriction("reject"),
    )
    assert str(parsed[1]) == "reject_rbl_client zen.example"
    assert (
        parse_restrictions("reject_rbl_client zen.example=127.0.0.2")[0].argument
        == "zen.example=127.0.0.2"
    )


def test_names_are_case_insensitive_and_old_spellings_map() -> None:
    assert parse_restrictions(
        "PERMIT_MYNETWORKS reject_rbl bl.example reject_non_fqdn_hostname"
    ) == (
        Restriction("permit_mynetworks"),
        Restriction("reject_rbl_client", "bl.example"),
        Restriction("reject_non_fqdn_helo_hostname"),
    )


def test_empty_list() -> None:
    assert parse_restrictions("") == ()
    assert parse_restrictions([]) == ()


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "permit_mynetwork",
            'smtpd_recipient_restrictions: unknown restriction "permit_mynetwork"',
        ),
        (
            "reject_everything",
            'smtpd_recipient_restrictions: unknown restriction "reject_everything"',
        ),
        (
            "check_sender_access hash:/etc/postfix/access",
            'smtpd_recipient_restrictions: restriction "check_sender_access" is not supported by mailroom',
        ),
        (
            "check_policy_service unix:private/policy",
            'smtpd_recipient_restrictions: restriction "check_policy_service" is not supported by mailroom',
        ),
        (
            "reject_unverified_recipient",
            'smtpd_recipient_restrictions: restriction "reject_unverified_recipient" is not supported by mailroom',
        ),
        (
            "hash:/etc/postfix/access",
            'smtpd_recipient_restrictions: access table "hash:/etc/postfix/access" is not supported by mailroom',
        ),
        (
            "reject_rbl_client",
            'smtpd_recipient_restrictions: restriction "reject_rbl_client" requires a domain name argument',
        ),
        (
            "reject_rbl_client reject",
            'smtpd_recipient_restrictions: restriction "reject_rbl_client" requires a domain name argument',
        ),
        (
            "reject_rbl_client bad..domain",
            'smtpd_recipient_restrictions: bad DNS list domain "bad..domain"',
        ),
        (
            "reject_rbl_client zen.example=127.0.0",
            'smtpd_recipient_restrictions: bad DNS list answer "127.0.0" (expected an IPv4 address)',
        ),
    ],
)
def test_configuration_errors_are_one_line_and_name_the_culprit(value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_restrictions(value, "smtpd_recipient_restrictions")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value, blocks",
    [
        ("permit_mynetworks permit_sasl_authenticated reject_unauth_destination", True),
        ("permit_mynetworks permit_sasl_authenticated defer_unauth_destination", True),
        ("reject", True),
        ("defer", True),
        ("defer_if_permit", True),
        ("permit_mynetworks permit_sasl_authenticated", False),
        (
            "permit reject_unauth_destination",
            False,
        ),  # Postfix has_required(): permit ends the search
        ("", False),
    ],
)
def test_relay_blocking_detection(value: str, blocks: bool) -> None:
    assert blocks_relaying(parse_restrictions(value)) is blocks


def test_relay_control_is_required_in_one_of_the_two_lists() -> None:
    guide = parse_restrictions(
        "permit_mynetworks permit_sasl_authenticated reject_unauth_destination"
    )
    require_relay_control((), guide)
    require_relay_control(guide, ())
    with pytest.raises(ValueError) as info:
        require_relay_control(
            parse_restrictions("permit_mynetworks"), parse_restrictions("permit_sasl_authenticated")
        )
    assert str(info.value) == (
        "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one "
        "working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit"
    )


def test_policy_core_imports_no_io_modules() -> None:
    """The evaluator is a pure core: DNS and the directory come in through interfaces."""
    import subprocess
    import sys

    code = (
        "import sys, mailroom.policy.evaluator\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'asyncio', 'socket', 'ssl', 'dns', 'sqlite3', 'sqlalchemy'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
