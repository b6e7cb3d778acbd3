"""What each restriction does, one function per Postfix restriction (smtpd_check.c).

A check answers DUNNO (None: go on with the list), OK (ends this list) or a Reply
(reject/defer: ends everything). Temporary DNS trouble does not reject: like Postfix's
default *_tempfail_action = defer_if_permit it arms a deferral that wins only if nothing
rejects later (`State.defer_if_permit`). Directory errors propagate; the evaluator turns
DirectoryUnavailable into "451 4.3.0 ... Temporary lookup failure".
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mailroom.directory.base import AliasLoop
from mailroom.dns.interface import DnsTemporaryError, Resolver
from mailroom.policy import replies as R
from mailroom.policy.address import route, valid_hostname
from mailroom.policy.context import PolicyContext
from mailroom.policy.restrictions import Restriction
from mailroom.smtp.replies import Reply

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: reject_rbl_client without "=answer": a DNSBL lists an address by answering in this
#: block (RFC 5782 §2.1 uses 127.0.0.2 as the test entry). Other answers, e.g. Spamhaus'
#: 127.255.255.x "query refused" codes, are not listings.
RBL_LISTED = ipaddress.IPv4Network("127.0.0.0/24")


class DirectoryLookups(Protocol):
    """The two Directory look-ups the policy needs (mailroom.directory.base.Directory has them)."""

    def is_local_domain(self, domain: str) -> bool: ...

    def expand(self, address: str) -> list[str]: ...


class Permit(enum.Enum):
    OK = "OK"


OK = Permit.OK
Outcome = Reply | Permit | None


@dataclass(slots=True)
class State:
    """One evaluation's context and Postfix's per-request flags."""

    ctx: PolicyContext
    directory: DirectoryLookups
    resolver: Resolver
    mynetworks: Sequence[Network]
    defer_if_permit: Reply | None = None  # first reason wins (Postfix defer_if())
    defer_if_reject: Reply | None = None
    recipient_checked: bool = False  # reject_unlisted_recipient already ran
    sender_checked: bool = False

    def arm_defer_if_permit(self, reply: Reply) -> None:
        if self.defer_if_permit is None:
            self.defer_if_permit = reply


MAX_CACHED_ADDRESSES = 1024  # in_networks answers remembered for one networks tuple

# in_networks' memory: the networks tuple it is for, and {client address: answer}.
# Keyed by the tuple's identity (a reference is kept, so the id cannot be reused):
# hashing the tuple as an lru_cache key hashes every network in Python, on each call.
_networks_memo: tuple[tuple[Network, ...] | None, dict[str, bool]] = (None, {})


def in_networks(ip: str, networks: Sequence[Network]) -> bool:
    """Client address in mynetworks; an IPv4-mapped IPv6 client also matches as IPv4."""
    global _networks_memo
    if not isinstance(networks, tuple):
        return _in_networks(ip, networks)
    memo_for, memo = _networks_memo
    if memo_for is not networks:
        memo = {}
        _networks_memo = (networks, memo)
    answer = memo.get(ip)
    if answer is None:
        answer = _in_networks(ip, networks)
        if len(memo) < MAX_CACHED_ADDRESSES:
            memo[ip] = answer
    return answer


def _in_networks(ip: str, networks: Sequence[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    return any(a in net for a in candidates for net in networks if a.version == net.version)


async def apply(r: Restriction, st: State, name: str, what: str) -> Outcome:
    """Run one restriction; `name`/`what` are Postfix's reply_name and reply_class."""
    ctx = st.ctx
    n = r.name
    if n == "permit":
        return OK
    if n == "reject":
        return R.access_denied(name, what)
    if n == "defer":
        return R.try_again_later(name, what)
    if n == "defer_if_permit":
        st.arm_defer_if_permit(R.defer_if_requested(name, what, n))
        return None
    if n == "defer_if_reject":
        if st.defer_if_reject is None:
            st.defer_if_reject = R.defer_if_requested(name, what, n)
        return None
    if n == "reject_plaintext_session":
        return None if ctx.tls_active else R.encryption_required()
    # -- client ----------------------------------------------------------------------
    if n == "permit_mynetworks":
        return OK if in_networks(ctx.client_address, st.mynetworks) else None
    if n == "permit_sasl_authenticated":
        return OK if ctx.sasl_username else None
    if n == "reject_unknown_client_hostname":
        return (
            R.unknown_client_hostname(ctx.client_address)
            if ctx.client_name.lower() == "unknown"
            else None
        )
    if n == "reject_rbl_client":
        return await rbl_client(st, r.argument)
    # -- helo (skipped when the client sent none) --------------------------------------
    if n in (
        "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname",
        "reject_unknown_helo_hostname",
    ):
        return await helo_check(st, n) if ctx.helo else None
    # -- sender (skipped for the null sender) ------------------------------------------
    sender = ctx.sender
    if n == "reject_non_fqdn_sender":
        return non_fqdn(sender, R.SENDER) if sender else None
    if n == "reject_unknown_sender_domain":
        return await unknown_address_domain(st, sender, R.SENDER) if sender else None
    if n == "reject_unlisted_sender":
        if not sender or st.sender_checked:
            return None
        st.sender_checked = True
        return unlisted(st, sender, R.SENDER)
    if n in ("reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch"):
        if sender and ctx.sasl_username:
            return login_mismatch(st, sender, ctx.sasl_username)
        if n == "reject_authenticated_sender_login_mismatch":
            return None
        n = "reject_unauthenticated_sender_login_mismatch"
    if n == "reject_unauthenticated_sender_login_mismatch":
        if (
            sender
            and not ctx.sasl_username
            and route(sender).domain_is_ours(st.directory.is_local_domain)
        ):
            return R.not_logged_in(sender)
        return None
    # -- recipient ---------------------------------------------------------------------
    rcpt = ctx.recipient
    if rcpt is None:
        return None
    if n == "permit_auth_destination":
        return OK if route(rcpt).is_local(st.directory.is_local_domain) else None
    if n in ("reject_unauth_destination", "defer_unauth_destination"):
        if route(rcpt).is_local(st.directory.is_local_domain):
            return None
        return R.relay_access_denied(rcpt, defer=n == "defer_unauth_destination")
    if n == "reject_non_fqdn_recipient":
        return non_fqdn(rcpt, R.RECIPIENT)
    if n == "reject_unlisted_recipient":
        if st.recipient_checked:
            return None
        st.recipient_checked = True
        return unlisted(st, rcpt, R.RECIPIENT)
    raise AssertionError(
        f"restriction {n} has no implementation"
    )  # parse_restrictions prevents this


def non_fqdn(address: str, what: str) -> Reply | None:
    """reject_non_fqdn_address: the text after the last '@' must be a dotted host name."""
    domain = address.rpartition("@")[2] if "@" in address else ""
    if domain.startswith("[") and domain.endswith("]"):
        return None  # Postfix: "skip forms that we can't handle yet"
    if len(domain) > 1 and domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    if domain and valid_hostname(domain) and "." in domain:
        return None
    return R.need_fqdn_address(address, what)


def unlisted(st: State, address: str, what: str) -> Reply | None:
    """check_rcpt_maps for the virtual mailbox class: a local-domain address nobody owns."""
    r = route(address)
    if not r.domain_is_ours(st.directory.is_local_domain):
        return None
    if r.routed:  # "user%x@our.domain" names no mailbox and no alias
        return R.user_unknown(address, what)
    try:
        known = bool(st.directory.expand(r.normalized))
    except AliasLoop:
        known = True  # it exists; the loop bounces at delivery, as with Postfix
    return None if known else R.user_unknown(address, what)


def login_mismatch(st: State, sender: str, login: str) -> Reply | None:
    """reject_authenticated_sender_login_mismatch: the login must own the sender.

    Owners are the login itself and whoever the address expands to (ISPmail's
    smtpd_sender_login_maps query over virtual_users and virtual_aliases).
    """
    if sender.lower() == login.lower():
        return None
    r = route(sender)
    owners: list[str] = []
    if r.valid and r.domain and not r.routed and not r.literal:
        try:
            owners = st.directory.expand(r.normalized)
        except AliasLoop:
            owners = []
    if login.lower() in {o.lower() for o in owners}:
        return None
    return R.not_owned(sender, login)


async def unknown_address_domain(st: State, address: str, what: str) -> Reply | None:
    """reject_unknown_sender_domain: a remote domain needs MX, A or AAAA (RFC 5321 §5.1)."""
    r = route(address)
    if r.literal or (r.valid and not r.domain):
        return None
    if r.valid and st.directory.is_local_domain(r.domain):
        return None
    if not r.valid:
        return R.domain_not_found(address, what)
    temporary = False
    try:
        mx = await st.resolver.mx(r.domain)
    except DnsTemporaryError:
        mx, temporary = [], True
    if mx and all(host == "" for _, host in mx):  # RFC 7505 §3 null MX
        return R.null_mx(address, what, r.domain)
    if mx:
        return None
    for lookup in (st.resolver.a, st.resolver.aaaa):
        try:
            if await lookup(r.domain):
                return None
        except DnsTemporaryError:
            temporary = True
    if temporary:
        st.arm_defer_if_permit(R.domain_not_found(address, what, temporary=True))
        return None
    return R.domain_not_found(address, what)


async def helo_check(st: State, n: str) -> Reply | None:
    """HELO/EHLO name checks (RFC 5321 §4.1.4: a FQDN or an address literal)."""
    helo = st.ctx.helo
    if helo.startswith("["):
        body = helo[1:-1] if helo.endswith("]") else ""
        ok = body != "" and route(f"x@[{body}]").valid
        return None if ok else R.invalid_ip_address(helo, R.HELO)
    name = helo[:-1] if len(helo) > 1 and helo.endswith(".") and not helo.endswith("..") else helo
    if n == "reject_invalid_helo_hostname":
        ok = valid_hostname(name) or _is_ip(name)
        return None if ok else R.invalid_name(helo, R.HELO)
    if n == "reject_non_fqdn_helo_hostname":
        return None if valid_hostname(name) and "." in name else R.need_fqdn_hostname(helo, R.HELO)
    temporary = False
    for lookup in (st.resolver.a, st.resolver.aaaa, st.resolver.mx):
        try:
            if await lookup(name):
                return None
        except DnsTemporaryError:
            temporary = True
    if temporary:
        st.arm_defer_if_permit(R.host_not_found(helo, R.HELO, temporary=True))
        return None
    return R.host_not_found(helo, R.HELO)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def rbl_query(client_address: str, rbl_domain: str) -> str | None:
    """The DNSBL query name (RFC 5782 §2.1 IPv4 octets, §2.4 IPv6 nibbles, reversed)."""
    try:
        ip = ipaddress.ip_address(client_address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        labels = list(reversed(str(ip).split(".")))
    else:
        labels = list(reversed(ip.exploded.replace(":", "")))
    return ".".join(labels) + "." + rbl_domain.rstrip(".")


async def rbl_client(st: State, argument: str) -> Reply | None:
    """reject_rbl_client DOMAIN[=ANSWER]; DNS trouble gives the client the benefit of the doubt."""
    rbl_domain, _, wanted = argument.partition("=")
    query = rbl_query(st.ctx.client_address, rbl_domain)
    if query is None:
        return None
    try:
        answers = await st.resolver.a(query)
    except DnsTemporaryError:
        return None
    listed = [a for a in answers if (a == wanted if wanted else _in_listed_block(a))]
    if not listed:
        return None
    try:
        reason = " / ".join(await st.resolver.txt(query))[: R.RBL_TXT_LIMIT]
    except DnsTemporaryError:
        reason = ""
    return R.rbl_blocked(st.ctx.client_address, rbl_domain, reason)


def _in_listed_block(answer: str) -> bool:
    try:
        return ipaddress.IPv4Address(answer) in RBL_LISTED
    except ValueError:
        return False
