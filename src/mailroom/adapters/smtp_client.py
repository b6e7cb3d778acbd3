"""The `smtp` transport: outbound delivery over asyncio around smtp.client's core.

Theory of operation. deliver() routes each recipient (transport_maps, relayhost),
groups them by nexthop and delivers each group concurrently: resolve the nexthop
to candidate addresses (routing.mx), connect to each in turn with
smtp_connect_timeout, and run one ClientSession per connection. Recipients the
session decided are reported at once; the undecided ones (connection refused,
4xx greeting, TLS trouble, ...) go to the next candidate, within Postfix's
smtp_mx_address_limit and smtp_mx_session_limit. This module makes no protocol
decision: it moves bytes, applies each stage's timeout, and performs STARTTLS.

TLS follows Postfix's smtp_tls_security_level: `may` and `encrypt` both use a
context that does not verify the certificate (opportunistic / mandatory
encryption, not authentication), as Postfix does without `verify`/`secure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailroom.dns.interface import Resolver
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.transport import DeliveryResult, Outcome, Report
from mailroom.routing.mx import Candidate, RouteFailure, SelfCheck, resolve_nexthops
from mailroom.routing.tables import open_tables
from mailroom.routing.transport import Route, Router, RouteSyntaxError, parse_nexthops
from mailroom.runtime.log import get_logger
from mailroom.smtp.client import (
    ClientSession,
    ClientSettings,
    Done,
    NeedReply,
    OutboundMessage,
    OutboundRecipient,
    Send,
    SessionFailure,
    SessionResult,
    StartTls,
)
from mailroom.wire.errors import RemoteProtocolError

log = get_logger("smtp")

READ_CHUNK = 64 * 1024  # bytes per read; replies are small, this only bounds one call
CLOSE_GRACE = 2.0  # seconds to wait for a TLS close_notify before dropping the socket
# Postfix defaults: smtp_mx_address_limit, smtp_mx_session_limit.
MX_ADDRESS_LIMIT = 5
MX_SESSION_LIMIT = 2


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """Postfix's smtp_*_timeout parameters and defaults, in seconds."""

    connect: float = 30.0  # smtp_connect_timeout
    helo: float = 300.0  # smtp_helo_timeout: greeting and EHLO/HELO
    starttls: float = 300.0  # smtp_starttls_timeout: STARTTLS and the handshake
    mail: float = 300.0  # smtp_mail_timeout
    rcpt: float = 300.0  # smtp_rcpt_timeout
    data_init: float = 120.0  # smtp_data_init_timeout: DATA command
    data_xfer: float = 180.0  # smtp_data_xfer_timeout: sending the body
    data_done: float = 600.0  # smtp_data_done_timeout: waiting for the final reply
    rset: float = 20.0  # smtp_rset_timeout
    quit: float = 300.0  # smtp_quit_timeout

    def for_stage(self, stage: str) -> float:
        return {
            "greeting": self.helo, "ehlo": self.helo, "helo": self.helo, "starttls": self.starttls,
            "mail": self.mail, "rcpt": self.rcpt, "data": self.data_init, "body": self.data_xfer,
            "dot": self.data_done, "rset": self.rset, "quit": self.quit,
        }.get(stage, self.helo)


@dataclass(slots=True)
class SmtpClientSettings:
    """What the smtp transport reads from main.cf (Postfix names in comments)."""

    tls_level: str = "may"  # smtp_tls_security_level
    relayhost: str = ""  # relayhost
    transport_maps: Sequence[str] = ()  # transport_maps (inline:/texthash: specs)
    timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    mx_address_limit: int = MX_ADDRESS_LIMIT
    mx_session_limit: int = MX_SESSION_LIMIT
    recipients_per_transaction: int = 50  # smtp_destination_recipient_limit
    listeners: Sequence[tuple[str, int]] = ()  # our own smtp_listen, for loop detection
    local_ips: Sequence[str] = ()  # addresses a wildcard listener owns besides loopback
    tls_context: ssl.SSLContext | None = None  # None: client_tls_context()

    @classmethod
    def from_config(cls, config: Any) -> SmtpClientSettings:
        """From a mailroom.config.settings.Config."""
        return cls(
            tls_level=config["smtp_tls_security_level"] or "may",
            relayhost=config["relayhost"],
            transport_maps=list(config["transport_maps"]),
            listeners=[(a.host, a.port) for a in config["smtp_listen"]],
        )


def client_tls_context() -> ssl.SSLContext:
    """Opportunistic/mandatory encryption without certificate checks (Postfix may/encrypt)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _describe(exc: BaseException) -> str:
    """Postfix's connect error words: "Connection refused", "Connection timed out", ..."""
    if isinstance(exc, TimeoutError):
        return "Connection timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own text is "Connect call failed (...)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


def error_result(address: str, route: Route) -> DeliveryResult:
    """error(8) / retry(8): "error:5.1.1 text" bounces with 5.1.1 and "text"."""
    default = "5.0.0" if route.transport == "error" else "4.0.0"
    text = route.nexthop.strip()
    head, _, rest = text.partition(" ")
    parts = head.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and head[0] in "45":
        dsn, text = head, rest.strip()
    else:
        dsn = default
    if route.transport == "error" and dsn[0] == "4":
        dsn = default  # error(8) is always permanent
    if route.transport == "retry" and dsn[0] == "5":
        dsn = default
    outcome = Outcome.BOUNCED if dsn[0] == "5" else Outcome.DEFERRED
    return DeliveryResult(address, outcome, dsn, text or ("unknown error" if dsn[0] == "5" else "unknown delay"),
                          relay="none")


class ErrorTransport:
    """The `error` and `retry` transports of transport(5), for the queue manager."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def deliver(self, envelope: Envelope, data: bytes, recipients: Sequence[Recipient],
                      report: Report | None = None) -> list[DeliveryResult]:
        results = [error_result(r.address, self.router.route(r.address)) for r in recipients]
        for result in results:
            if report is not None:
                await report(result)
        return results


class SmtpTransport:
    """The queue's `smtp` transport: per-recipient DeliveryResult with Postfix texts."""

    def __init__(
        self,
        resolver: Resolver,
        settings: SmtpClientSettings,
        hostname: str,
        *,
        router: Router | None = None,
        is_local_domain: Callable[[str], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.resolver = resolver
        self.settings = settings
        self.hostname = hostname
        self.router = router or Router(open_tables(settings.transport_maps), settings.relayhost, is_local_domain)
        self.rng = rng or random.Random()
        self.self_check = SelfCheck([hostname], settings.listeners, settings.local_ips)
        self.tls_context = settings.tls_context or client_tls_context()
        self.client_settings = ClientSettings(hostname, settings.tls_level, settings.recipients_per_transaction)

    async def deliver(
        self,
        envelope: Envelope,
        data: bytes | Path,
        recipients: Sequence[Recipient],
        report: Report | None = None,
    ) -> list[DeliveryResult]:
        """Try each recipient once. `data` is the message as queued (CRLF), or a file holding it."""
        by_address: dict[int, DeliveryResult] = {}

        async def emit(index: int, result: DeliveryResult) -> None:
            by_address[index] = result
            if report is not None:
                await report(result)  # recorded durably before anything else happens to it

        groups: dict[str, list[int]] = {}
        for i, rcpt in enumerate(recipients):
            try:
                route = self.router.route(rcpt.address)
            except Exception as exc:  # e.g. the directory is down: try again later
                await emit(i, DeliveryResult(rcpt.address, Outcome.DEFERRED, "4.3.0", f"routing failed: {exc}"))
                continue
            if route.transport in ("error", "retry"):
                await emit(i, error_result(rcpt.address, route))
            elif route.transport == "smtp":
                groups.setdefault(route.nexthop, []).append(i)
            else:
                await emit(i, DeliveryResult(rcpt.address, Outcome.DEFERRED, "4.3.0",
                                       f"mail transport unavailable ({route.transport})"))
        if groups and isinstance(data, Path):
            try:
                data = await asyncio.to_thread(data.read_bytes)
            except OSError as exc:
                reason = f"cannot read queue file: {exc.strerror or exc}"
                for indexes in groups.values():
                    for i in indexes:
                        await emit(i, DeliveryResult(recipients[i].address, Outcome.DEFERRED, "4.3.0", reason))
                groups = {}
        if groups:
            assert isinstance(data, bytes)
            await asyncio.gather(*(
                self._deliver_group(nexthop, envelope, data, recipients, indexes, emit)
                for nexthop, indexes in groups.items()
            ))
        return [by_address[i] for i in range(len(recipients))]

    async def _deliver_group(
        self, nexthop: str, envelope: Envelope, data: bytes, recipients: Sequence[Recipient],
        indexes: list[int], emit: Callable[[int, DeliveryResult], Awaitable[None]],
    ) -> None:
        async def fail_all(outcome: Outcome, dsn: str, reason: str, relay: str = "none") -> None:
            for i in indexes:
                await emit(i, DeliveryResult(recipients[i].address, outcome, dsn, reason, relay))

        try:
            candidates = await resolve_nexthops(self.resolver, parse_nexthops(nexthop),
                                                rng=self.rng, self_check=self.self_check)
        except RouteSyntaxError as exc:
            await fail_all(Outcome.DEFERRED, "4.3.5", f"bad nexthop: {exc}")
            return
        except RouteFailure as exc:
            await fail_all(Outcome.BOUNCED if exc.permanent else Outcome.DEFERRED, exc.dsn, exc.reason)
            return
        pending = list(indexes)
        failures: list[tuple[SessionFailure, str]] = []
        sessions = 0
        loop = asyncio.get_running_loop()
        for cand in candidates[: self.settings.mx_address_limit]:
            started = loop.time()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(cand.ip, cand.port), self.settings.timeouts.connect)
            except (OSError, TimeoutError) as exc:
                reason = f"connect to {cand.label}: {_describe(exc)}"
                log.info("%s", reason)
                failures.append((SessionFailure("4.4.1", reason, try_next=True), "none"))
                continue
            connected = loop.time()
            sessions += 1
            message = self._message(envelope, data, [recipients[i] for i in pending])
            result = await self._session(reader, writer, cand, message)
            done = loop.time()
            still: list[int] = []
            for i, outcome in zip(pending, result.outcomes, strict=True):
                if outcome is None:
                    still.append(i)
                    continue
                no_dsn = outcome.status == "sent" and "DSN" not in result.extensions
                await emit(i, DeliveryResult(recipients[i].address, Outcome(outcome.status), outcome.dsn,
                                       outcome.reason, cand.label, connected - started, done - connected,
                                       relayed_without_dsn=no_dsn))
            pending = still
            if not pending:
                return
            assert result.failure is not None
            failures.append((result.failure, cand.label))
            if not result.failure.try_next or sessions >= self.settings.mx_session_limit:
                break
        if not failures:  # cannot happen: resolve_nexthops never returns []
            failures.append((SessionFailure("4.4.1", f"no address to try for {nexthop}", True), "none"))
        last, relay = failures[-1]
        # A permanent answer bounces only if nothing along the way was temporary.
        permanent = all(f.permanent for f, _ in failures) or (last.permanent and not last.try_next)
        dsn = last.dsn if permanent or not last.permanent else "4" + last.dsn[1:]
        for i in pending:
            await emit(i, DeliveryResult(recipients[i].address, Outcome.BOUNCED if permanent else Outcome.DEFERRED,
                                   dsn, last.reason, relay))

    @staticmethod
    def _message(envelope: Envelope, data: bytes, recipients: Sequence[Recipient]) -> OutboundMessage:
        return OutboundMessage(
            sender=envelope.sender,
            recipients=[OutboundRecipient(r.address, tuple(r.notify), r.orcpt) for r in recipients],
            data=data,
            body_type=envelope.body_type,
            smtputf8=envelope.smtputf8,
            ret=envelope.ret,
            envid=envelope.envid,
        )

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       cand: Candidate, message: OutboundMessage) -> SessionResult:
        session = ClientSession(message, self.client_settings, cand.peer)
        timeouts = self.settings.timeouts
        try:
            while True:
                action = session.next_action()
                if isinstance(action, Done):
                    return action.result
                try:
                    if isinstance(action, Send):
                        writer.write(action.data)
                        await asyncio.wait_for(writer.drain(), timeouts.for_stage(action.stage))
                    elif isinstance(action, NeedReply):
                        chunk = await asyncio.wait_for(reader.read(READ_CHUNK), timeouts.for_stage(action.stage))
                        try:
                            session.receive_data(chunk)
                        except RemoteProtocolError as exc:
                            session.protocol_error(str(exc))
                    elif isinstance(action, StartTls):
                        await self._start_tls(session, reader, writer, cand)
                except TimeoutError:
                    session.timed_out()
                except OSError:
                    session.connection_lost()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_GRACE)

    async def _start_tls(self, session: ClientSession, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, cand: Candidate) -> None:
        # Bytes already buffered in the stream arrived before the handshake (RFC 3207 §6).
        if getattr(reader, "_buffer", b""):
            session.receive_data(bytes(reader._buffer))  # type: ignore[attr-defined]
        server_name = None if _is_ip(cand.host) else cand.host  # SNI takes names only
        try:
            await asyncio.wait_for(writer.start_tls(self.tls_context, server_hostname=server_name),
                                   self.settings.timeouts.starttls)
        except TimeoutError:
            session.tls_done(False, "handshake timed out")
            return
        except (ssl.SSLError, OSError) as exc:
            log.info("SSL_connect error to %s: %s", cand.label, exc)
            session.tls_done(False, "handshake failure")
            return
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            log.info("Untrusted TLS connection established to %s: %s with cipher %s (%s/%s bits)",
                     cand.label, ssl_object.version(), cipher[0], cipher[2], cipher[2])
        session.tls_done(True)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
