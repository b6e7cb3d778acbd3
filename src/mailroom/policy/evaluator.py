"""Postfix's smtpd restriction lists, evaluated stage by stage.

Theory of operation (Postfix SMTPD_ACCESS_README, smtpd_check.c):
- Each list runs in order. A restriction answers DUNNO (next one), OK (this list is
  done, the *next list still runs*) or reject/defer (everything is done). The end of a
  list is OK.
- smtpd_delay_reject = yes (the default): the client, HELO and sender lists wait for
  RCPT, so "connect", "helo" and "mail" return None and every RCPT runs client, helo,
  sender, relay, recipient lists in that order, for each recipient on its own. With
  `no`, each list runs at its own stage and RCPT runs only relay + recipient.
- After the lists, a recipient in one of our domains that no mailbox, alias or
  catch-all owns gets "550 5.1.1 ... User unknown in virtual mailbox table"
  (smtpd_reject_unlisted_recipient = yes) — even for trusted or authenticated clients.
- A temporary DNS failure arms a deferral (Postfix defer_if_permit) that is answered
  only if nothing rejects. Postfix keeps it across stages; here it is answered at the
  end of the call that found it (so with delay_reject = no, at MAIL, not at RCPT).
- A domainless "postmaster" is accepted before any list (RFC 5321 §4.5.1; Postfix
  smtpd_check_rcpt does the same).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailroom.directory.base import DirectoryUnavailable
from mailroom.dns.interface import Resolver
from mailroom.policy import replies as R
from mailroom.policy.address import route
from mailroom.policy.checks import (
    OK,
    DirectoryLookups,
    Network,
    State,
    apply,
    in_networks,
    unlisted,
)
from mailroom.policy.context import PolicyContext
from mailroom.policy.restrictions import Restriction, parse_restrictions, require_relay_control
from mailroom.smtp.replies import Reply

STAGES = ("connect", "helo", "mail", "rcpt", "etrn")
_DELAYED_STAGES = frozenset({"connect", "helo", "mail"})  # smtpd_delay_reject = yes: wait for RCPT

#: Postfix's built-in smtpd_relay_restrictions (3.x); note it *defers* relaying (454).
DEFAULT_RELAY_RESTRICTIONS = parse_restrictions(
    "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
    "smtpd_relay_restrictions",
)

#: mailroom's mynetworks default: loopback only (see config registry).
DEFAULT_MYNETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::ffff:127.0.0.0/104"),
    ipaddress.ip_network("::1/128"),
)

Restrictionlist = tuple[Restriction, ...]


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The main.cf parameters the evaluator reads; checked when built (ValueError)."""

    client_restrictions: Restrictionlist = ()
    helo_restrictions: Restrictionlist = ()
    sender_restrictions: Restrictionlist = ()
    relay_restrictions: Restrictionlist = DEFAULT_RELAY_RESTRICTIONS
    recipient_restrictions: Restrictionlist = ()
    etrn_restrictions: Restrictionlist = ()
    mynetworks: tuple[Network, ...] = DEFAULT_MYNETWORKS
    delay_reject: bool = True  # smtpd_delay_reject
    reject_unlisted_recipient: bool = True  # smtpd_reject_unlisted_recipient
    reject_unlisted_sender: bool = False  # smtpd_reject_unlisted_sender

    def __post_init__(self) -> None:
        require_relay_control(self.relay_restrictions, self.recipient_restrictions)

    @classmethod
    def from_config(cls, get: Callable[[str], Any]) -> PolicySettings:
        """Build from typed main.cf values, e.g. `PolicySettings.from_config(config.__getitem__)`."""

        def value(name: str, default: Any) -> Any:
            try:
                return get(name)
            except KeyError:
                return default

        def lst(name: str, default: str = "") -> Restrictionlist:
            return parse_restrictions(value(name, default), name)

        return cls(
            client_restrictions=lst("smtpd_client_restrictions"),
            helo_restrictions=lst("smtpd_helo_restrictions"),
            sender_restrictions=lst("smtpd_sender_restrictions"),
            relay_restrictions=lst(
                "smtpd_relay_restrictions",
                "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
            ),
            recipient_restrictions=lst("smtpd_recipient_restrictions"),
            etrn_restrictions=lst("smtpd_etrn_restrictions"),
            mynetworks=tuple(value("mynetworks", DEFAULT_MYNETWORKS)),
            delay_reject=bool(value("smtpd_delay_reject", True)),
            reject_unlisted_recipient=bool(value("smtpd_reject_unlisted_recipient", True)),
            reject_unlisted_sender=bool(value("smtpd_reject_unlisted_sender", False)),
        )


class Restrictions:
    """The evaluator: settings plus the two look-up interfaces it may use."""

    def __init__(
        self, settings: PolicySettings, directory: DirectoryLookups, resolver: Resolver
    ) -> None:
        require_relay_control(settings.relay_restrictions, settings.recipient_restrictions)
        self.settings = settings
        self.directory = directory
        self.resolver = resolver

    def mynetworks_contains(self, ip: str) -> bool:
        """Is this client address trusted (permit_mynetworks)? Also for other policies."""
        return in_networks(ip, self.settings.mynetworks)

    async def evaluate(self, stage: str, ctx: PolicyContext) -> Reply | None:
        """The reply to refuse this stage with, or None to go on."""
        if stage not in STAGES:
            raise ValueError(
                f"unknown policy stage '{stage}' (expected one of {', '.join(STAGES)})"
            )
        delay = self.settings.delay_reject
        if delay and stage in _DELAYED_STAGES:
            return None  # judged at RCPT, with that recipient
        st = State(ctx, self.directory, self.resolver, self.settings.mynetworks)
        if stage == "connect":
            return self._finish(st, await self._client(st))
        if stage == "helo":
            return self._finish(st, await self._helo(st))
        if stage == "mail":
            return self._finish(st, await self._mail(st))
        if stage == "etrn":
            return await self._etrn(st, delay)
        return await self._rcpt(st, delay)

    # -- stages ----------------------------------------------------------------------------
    async def _client(self, st: State) -> Reply | None:
        ctx = st.ctx
        namaddr = f"{ctx.client_name}[{ctx.client_address}]"
        return await self._run(st, self.settings.client_restrictions, namaddr, R.CLIENT)

    async def _helo(self, st: State) -> Reply | None:
        if not st.ctx.helo:  # Postfix smtpd_check_helo: no HELO, no HELO restrictions
            return None
        return await self._run(st, self.settings.helo_restrictions, st.ctx.helo, R.HELO)

    async def _mail(self, st: State) -> Reply | None:
        sender = st.ctx.sender
        if sender is None:
            return None
        reply = await self._run(st, self.settings.sender_restrictions, sender, R.SENDER)
        if (
            reply is None
            and self.settings.reject_unlisted_sender
            and sender
            and not st.sender_checked
        ):
            reply = self._lookup(lambda: unlisted(st, sender, R.SENDER), sender)
        return reply

    async def _rcpt(self, st: State, delay: bool) -> Reply | None:
        rcpt = st.ctx.recipient
        if rcpt is None or route(rcpt).bare_postmaster:
            return None
        if delay:
            for stage in (self._client, self._helo, self._mail):
                reply = await stage(st)
                if reply is not None:
                    return reply
        # Postfix smtpd_check_rcpt: relay list, then recipient list; only a reject stops.
        st.defer_if_reject = None
        for restrictions in (
            self.settings.relay_restrictions,
            self.settings.recipient_restrictions,
        ):
            reply = await self._run(st, restrictions, rcpt, R.RECIPIENT, reset=False)
            if reply is not None:
                return reply
        if st.defer_if_permit is not None:
            return st.defer_if_permit
        if self.settings.reject_unlisted_recipient and not st.recipient_checked:
            return self._lookup(lambda: unlisted(st, rcpt, R.RECIPIENT), rcpt)
        return None

    async def _etrn(self, st: State, delay: bool) -> Reply | None:
        domain = st.ctx.etrn_domain
        if domain is None:
            return None
        if delay:
            for stage in (self._client, self._helo):
                reply = await stage(st)
                if reply is not None:
                    return reply
        reply = await self._run(st, self.settings.etrn_restrictions, domain, R.ETRN)
        return self._finish(st, reply)

    # -- machinery -------------------------------------------------------------------------
    async def _run(
        self,
        st: State,
        restrictions: Sequence[Restriction],
        name: str,
        what: str,
        *,
        reset: bool = True,
    ) -> Reply | None:
        """One list (generic_checks): the first OK ends it, the first reply ends everything."""
        if reset:
            st.defer_if_reject = None  # Postfix SMTPD_CHECK_RESET per list
        for restriction in restrictions:
            try:
                outcome = await apply(restriction, st, name, what)
            except DirectoryUnavailable:
                return R.temporary_lookup_failure(name)
            if outcome is OK:
                return None
            if isinstance(outcome, Reply):
                if outcome.is_permanent and st.defer_if_reject is not None:
                    return st.defer_if_reject  # defer_if_reject turns a reject into a deferral
                return outcome
        return None

    @staticmethod
    def _finish(st: State, reply: Reply | None) -> Reply | None:
        return reply if reply is not None else st.defer_if_permit

    @staticmethod
    def _lookup(check: Callable[[], Reply | None], name: str) -> Reply | None:
        try:
            return check()
        except DirectoryUnavailable:
            return R.temporary_lookup_failure(name)
