"""smtpd_*_restrictions values: names (and arguments) checked once, at load time.

main.cf gives a restriction list as comma/space separated words (Postfix
smtpd_check_parse()); the config layer already split them. Here each word becomes a
`Restriction`, the one argument-taking form (`reject_rbl_client DOMAIN`) swallows the
next word, and anything mailroom cannot honour is a configuration error *now*, with a
one-line message, instead of Postfix's "451 4.3.5 Server configuration error" at the
first RCPT (Postfix smtpd_check.c generic_checks, "unknown smtpd restriction").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailroom.policy.address import valid_hostname

#: Restrictions mailroom evaluates (postconf(5), "smtpd_*_restrictions").
SUPPORTED = frozenset(
    {
        # generic
        "permit",
        "reject",
        "defer",
        "defer_if_permit",
        "defer_if_reject",
        "reject_plaintext_session",
        # client
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "reject_rbl_client",
        "reject_unknown_client_hostname",
        # helo
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_unknown_helo_hostname",
        # sender
        "reject_non_fqdn_sender",
        "reject_unknown_sender_domain",
        "reject_sender_login_mismatch",
        "reject_authenticated_sender_login_mismatch",
        "reject_unauthenticated_sender_login_mismatch",
        "reject_unlisted_sender",
        # recipient
        "permit_auth_destination",
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject_non_fqdn_recipient",
        "reject_unlisted_recipient",
    }
)

#: Old Postfix spellings that mean the same thing (postconf(5) lists both).
ALIASES = {
    "reject_rbl": "reject_rbl_client",
    "reject_unknown_client": "reject_unknown_client_hostname",
    "reject_invalid_hostname": "reject_invalid_helo_hostname",
    "reject_non_fqdn_hostname": "reject_non_fqdn_helo_hostname",
    "reject_unknown_hostname": "reject_unknown_helo_hostname",
    "check_recipient_maps": "reject_unlisted_recipient",
}

#: Restrictions that take the next word as their argument.
TAKES_ARGUMENT = frozenset({"reject_rbl_client"})

#: Postfix restrictions mailroom knows but does not implement: an error naming them.
UNSUPPORTED = frozenset(
    {
        "check_relay_domains",
        "check_policy_service",
        "permit_mx_backup",
        "permit_tls_clientcerts",
        "permit_tls_all_clientcerts",
        "permit_inet_interfaces",
        "permit_dnswl_client",
        "permit_rhswl_client",
        "permit_naked_ip_address",
        "reject_known_sender_login_mismatch",
        "reject_maps_rbl",
        "reject_multi_recipient_bounce",
        "reject_rhsbl_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_sender",
        "reject_rhsbl_recipient",
        "reject_rhsbl_reverse_client",
        "reject_unauth_pipelining",
        "reject_unknown_recipient_domain",
        "reject_unknown_reverse_client_hostname",
        "reject_unknown_forward_client_hostname",
        "reject_unverified_sender",
        "reject_unverified_recipient",
        "sleep",
        "warn_if_reject",
    }
)

#: Postfix smtpd_check_init() rcpt_required: a list that contains one of these (before
#: any "permit") blocks open relaying. check_relay_domains is unsupported, so omitted.
RELAY_BLOCKING = (
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject",
    "defer",
    "defer_if_permit",
)


@dataclass(frozen=True, slots=True)
class Restriction:
    """One parsed restriction: canonical lower-case name and optional argument."""

    name: str
    argument: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.argument}" if self.argument else self.name


def split_words(value: str | Iterable[str]) -> list[str]:
    """Words of a restriction list: a raw main.cf string or already-split words."""
    items = [value] if isinstance(value, str) else list(value)
    words: list[str] = []
    for item in items:
        words.extend(w for w in item.replace(",", " ").split() if w)
    return words


def parse_restrictions(
    value: str | Iterable[str], parameter: str = "restriction list"
) -> tuple[Restriction, ...]:
    """Parse a list; ValueError (one line, naming the parameter) on anything unusable."""
    words = split_words(value)
    out: list[Restriction] = []
    i = 0
    while i < len(words):
        word = words[i]
        name = ALIASES.get(word.lower(), word.lower())
        i += 1
        if ":" in word:
            raise ValueError(f'{parameter}: access table "{word}" is not supported by mailroom')
        if name in UNSUPPORTED or name.startswith("check_"):
            raise ValueError(f'{parameter}: restriction "{word}" is not supported by mailroom')
        if name not in SUPPORTED:
            raise ValueError(f'{parameter}: unknown restriction "{word}"')
        argument = ""
        if name in TAKES_ARGUMENT:
            if (
                i >= len(words)
                or ALIASES.get(words[i].lower(), words[i].lower()) in SUPPORTED | UNSUPPORTED
            ):
                raise ValueError(
                    f'{parameter}: restriction "{word}" requires a domain name argument'
                )
            argument = words[i]
            i += 1
            _check_rbl_argument(parameter, argument)
        out.append(Restriction(name, argument))
    return tuple(out)


def _check_rbl_argument(parameter: str, argument: str) -> None:
    """`zen.example` or `zen.example=127.0.0.2` (Postfix's exact-answer filter)."""
    domain, _, answer = argument.partition("=")
    if not valid_hostname(domain.rstrip(".").lower()):
        raise ValueError(f'{parameter}: bad DNS list domain "{argument}"')
    if answer:
        parts = answer.split(".")
        if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
            raise ValueError(
                f'{parameter}: bad DNS list answer "{answer}" (expected an IPv4 address)'
            )


def blocks_relaying(restrictions: Sequence[Restriction]) -> bool:
    """Postfix has_required(): a relay-blocking restriction appears before any "permit"."""
    for r in restrictions:
        if r.name == "permit":
            return False
        if r.name in RELAY_BLOCKING:
            return True
    return False


def require_relay_control(relay: Sequence[Restriction], recipient: Sequence[Restriction]) -> None:
    """Postfix refuses to start without relay control (smtpd_check_init, fail_required)."""
    if not blocks_relaying(relay) and not blocks_relaying(recipient):
        choices = ", ".join(RELAY_BLOCKING[:-1]) + " or " + RELAY_BLOCKING[-1]
        raise ValueError(
            "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, "
            f"specify at least one working instance of: {choices}"
        )
