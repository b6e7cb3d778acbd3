"""The restriction evaluator's replies, in Postfix's exact words (smtpd_check.c).

Each code is the default of the Postfix parameter named next to it (postconf(5)).
Postfix forces the enhanced code's class digit to match the reply code
(smtpd_check_reject: "enforce consistency between the SMTP code and DSN code"), so a
template written as 4.5.2 goes out as 5.5.2 with a 504; `_reply` does the same.
"""

from __future__ import annotations

from mailroom.smtp.replies import Reply

# -- Postfix default reply codes ---------------------------------------------------------
REJECT_CODE = 554  # reject_code
DEFER_CODE = 450  # defer_code
RELAY_DOMAINS_REJECT_CODE = 554  # relay_domains_reject_code; defer_unauth_destination: -100
UNKNOWN_VIRTUAL_MAILBOX_REJECT_CODE = 550  # unknown_virtual_mailbox_reject_code
NON_FQDN_REJECT_CODE = 504  # non_fqdn_reject_code
INVALID_HOSTNAME_REJECT_CODE = 501  # invalid_hostname_reject_code
UNKNOWN_ADDRESS_REJECT_CODE = 450  # unknown_address_reject_code
UNKNOWN_HOSTNAME_REJECT_CODE = 450  # unknown_hostname_reject_code
UNKNOWN_CLIENT_REJECT_CODE = 450  # unknown_client_reject_code
MAPS_RBL_REJECT_CODE = 554  # maps_rbl_reject_code
PLAINTEXT_REJECT_CODE = 450  # plaintext_reject_code
SENDER_LOGIN_MISMATCH_CODE = 553  # hard-wired in reject_*_sender_login_mismatch
LOOKUP_FAILURE_CODE = 451  # reject_dict_retry

#: Postfix's reply_class names (smtpd_check_int.h SMTPD_NAME_*).
CLIENT = "Client host"
HELO = "Helo command"
SENDER = "Sender address"
RECIPIENT = "Recipient address"
ETRN = "Etrn command"

#: RBL TXT reasons are concatenated up to this many characters (smtpd_check.c RBL_TXT_LIMIT).
RBL_TXT_LIMIT = 500


def _reply(code: int, dsn: str, text: str) -> Reply:
    return Reply(code, str(code)[0] + dsn[1:], text)


def access_denied(name: str, what: str) -> Reply:
    """`reject` (generic_checks REJECT_ALL)."""
    return _reply(REJECT_CODE, "5.7.1", f"<{name}>: {what} rejected: Access denied")


def try_again_later(name: str, what: str) -> Reply:
    """`defer` (generic_checks DEFER_ALL)."""
    return _reply(DEFER_CODE, "4.3.2", f"<{name}>: {what} rejected: Try again later")


def defer_if_requested(name: str, what: str, which: str) -> Reply:
    """`defer_if_permit` / `defer_if_reject` as explicit restrictions."""
    return _reply(450, "4.7.0", f"<{name}>: {what} rejected: {which} requested")


def relay_access_denied(recipient: str, *, defer: bool = False) -> Reply:
    """reject_unauth_destination (554 5.7.1) / defer_unauth_destination (454 4.7.1)."""
    code = RELAY_DOMAINS_REJECT_CODE - 100 if defer else RELAY_DOMAINS_REJECT_CODE
    return _reply(code, "5.7.1", f"<{recipient}>: Relay access denied")


def user_unknown(address: str, what: str) -> Reply:
    """check_rcpt_maps, virtual mailbox class (5.1.0 for a sender, 5.1.1 for a recipient)."""
    dsn = "5.1.0" if what == SENDER else "5.1.1"
    return _reply(
        UNKNOWN_VIRTUAL_MAILBOX_REJECT_CODE,
        dsn,
        f"<{address}>: {what} rejected: User unknown in virtual mailbox table",
    )


def need_fqdn_address(address: str, what: str) -> Reply:
    """reject_non_fqdn_sender / reject_non_fqdn_recipient."""
    return _reply(
        NON_FQDN_REJECT_CODE, "4.5.2", f"<{address}>: {what} rejected: need fully-qualified address"
    )


def need_fqdn_hostname(name: str, what: str) -> Reply:
    """reject_non_fqdn_helo_hostname."""
    return _reply(
        NON_FQDN_REJECT_CODE, "5.5.2", f"<{name}>: {what} rejected: need fully-qualified hostname"
    )


def invalid_name(name: str, what: str) -> Reply:
    """reject_invalid_helo_hostname."""
    return _reply(INVALID_HOSTNAME_REJECT_CODE, "5.5.2", f"<{name}>: {what} rejected: Invalid name")


def invalid_ip_address(name: str, what: str) -> Reply:
    """A HELO address literal that is not an address (reject_invalid_hostaddr)."""
    return _reply(
        INVALID_HOSTNAME_REJECT_CODE, "5.5.2", f"<{name}>: {what} rejected: invalid ip address"
    )


def host_not_found(name: str, what: str, *, temporary: bool = False) -> Reply:
    """reject_unknown_helo_hostname: no A, AAAA or MX record."""
    code = 450 if temporary else UNKNOWN_HOSTNAME_REJECT_CODE
    return _reply(code, "4.7.1", f"<{name}>: {what} rejected: Host not found")


def domain_not_found(address: str, what: str, *, temporary: bool = False) -> Reply:
    """reject_unknown_sender_domain: no MX, A or AAAA record (4.1.8 sender, 4.1.2 recipient)."""
    code = 450 if temporary else UNKNOWN_ADDRESS_REJECT_CODE
    dsn = "4.1.8" if what == SENDER else "4.1.2"
    return _reply(code, dsn, f"<{address}>: {what} rejected: Domain not found")


def null_mx(address: str, what: str, domain: str) -> Reply:
    """RFC 7505 §4.2 null MX: the domain says it takes no mail, so it sends none either."""
    code, dsn = (550, "4.7.27") if what == SENDER else (556, "4.1.10")
    return _reply(
        code, dsn, f"<{address}>: {what} rejected: Domain {domain} does not accept mail (nullMX)"
    )


def unknown_client_hostname(addr: str) -> Reply:
    """reject_unknown_client_hostname (RFC 7372 status 4.7.25)."""
    return _reply(
        UNKNOWN_CLIENT_REJECT_CODE,
        "4.7.25",
        f"Client host rejected: cannot find your hostname, [{addr}]",
    )


def encryption_required() -> Reply:
    """reject_plaintext_session."""
    return _reply(PLAINTEXT_REJECT_CODE, "4.7.1", "Session encryption is required")


def rbl_blocked(addr: str, rbl_domain: str, reason: str) -> Reply:
    """default_rbl_reply: $rbl_code Service unavailable; $rbl_class [$rbl_what] blocked
    using $rbl_domain${rbl_reason?; $rbl_reason}."""
    text = f"Service unavailable; {CLIENT} [{addr}] blocked using {rbl_domain}"
    if reason:
        text += f"; {reason}"
    return _reply(MAPS_RBL_REJECT_CODE, "4.7.1", text)


def not_logged_in(sender: str) -> Reply:
    """reject_unauthenticated_sender_login_mismatch."""
    return _reply(
        SENDER_LOGIN_MISMATCH_CODE, "5.7.1", f"<{sender}>: Sender address rejected: not logged in"
    )


def not_owned(sender: str, login: str) -> Reply:
    """reject_authenticated_sender_login_mismatch."""
    return _reply(
        SENDER_LOGIN_MISMATCH_CODE,
        "5.7.1",
        f"<{sender}>: Sender address rejected: not owned by user {login}",
    )


def temporary_lookup_failure(name: str) -> Reply:
    """reject_dict_retry: a table (here: the directory) could not be read."""
    return _reply(LOOKUP_FAILURE_CODE, "4.3.0", f"<{name}>: Temporary lookup failure")
