"""The asyncio side of an SMTP session: bytes to the core, answers from the services.

One `SmtpSession` (an asyncio.Protocol) per connection, with one task that drives the
sans-IO `ServerConnection`. The adapter decides nothing about the protocol: it reads
(pausing the socket while the core works, so input stays bounded), awaits the
restrictions, the auth backend and the spool, and writes what the core produced.
Replies are written when the core needs more input, which is exactly RFC 2920's rule
for pipelining: flush before waiting for the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, cast

from mailroom.adapters.tls import describe
from mailroom.directory.base import DirectoryError
from mailroom.policy.address import route
from mailroom.policy.context import PolicyContext
from mailroom.queue.headers import received_header
from mailroom.queue.spool import SpoolError
from mailroom.runtime.log import get_logger
from mailroom.smtp import replies
from mailroom.smtp.events import (
    NEED_DATA,
    AuthCredentials,
    ConnectionClosed,
    Etrn,
    Helo,
    MailFrom,
    MessageReceived,
    Quit,
    RcptTo,
    ServerSettings,
    StartTLS,
    Vrfy,
)
from mailroom.smtp.replies import Reply
from mailroom.smtp.server import ServerConnection

if TYPE_CHECKING:
    from mailroom.runtime.services import Runtime

log = get_logger("smtpd")

TLS_HANDSHAKE_TIMEOUT = 30.0  # seconds; a client that stalls the handshake is dropped
HEADER_PEEK = 8192  # bytes of a message read to find its Message-ID for the log
# Bytes the core may hold unread before the socket is paused even while the session
# waits for input (more than one pipelined batch of commands ever needs).
INPUT_HIGH_WATER = 65536


@dataclass(frozen=True)
class ListenerProfile:
    """What differs between the MX, submission and submissions listeners."""

    name: str  # smtp | submission | submissions
    settings: ServerSettings


class SmtpSession(asyncio.Protocol):
    def __init__(self, runtime: Runtime, profile: ListenerProfile) -> None:
        self.runtime = runtime
        self.profile = profile
        # Made by the loop's protocol factory; asyncio.get_running_loop() costs a
        # getpid() system call each time, and the session waits several times per message.
        self._event_loop = asyncio.get_running_loop()
        self.conn = ServerConnection(profile.settings)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.client_name = "unknown"
        self.tls_text = ""
        self._waiter: asyncio.Future[bool] | None = None  # set while _wait_input awaits input
        self._reading = False  # the next chunk may be taken without pausing the socket
        self._paused = False  # we paused the transport's reading
        self._timer: asyncio.TimerHandle | None = None  # one smtpd_timeout timer per session
        self._deadline = 0.0
        self._canonical_cache: dict[str, str] = {}
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        self._counted = False
        self._last_command = "CONNECT"
        self._sender: str | None = None  # MAIL FROM of the transaction, for RCPT policy and logs
        self.waiting = False  # blocked on client input (a shutdown may close an idle session)

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.client_ip = str(peer[0]).removeprefix("::ffff:") if str(peer[0]).startswith("::ffff:") else str(peer[0])
        self.client_name = "localhost" if self.client_ip in ("127.0.0.1", "::1") else "unknown"
        if transport.get_extra_info("ssl_object") is not None:
            self.tls_text = describe(transport.get_extra_info("ssl_object"))[0]
        self.runtime.smtp_sessions.add(self)
        self._task = self._event_loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        # Input stays bounded: the one chunk the session is waiting for is taken as it
        # is; any further chunk (the core has not consumed the last one yet, or an event
        # is unanswered) or a core holding too much pauses the socket until the core
        # needs more input again.
        if self._reading and conn.buffered <= INPUT_HIGH_WATER:
            self._reading = False
        elif not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake(True)

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._wake(True)
        return True  # keep the write side open until our replies are out

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake(True)
        self._can_write.set()
        self.runtime.smtp_sessions.discard(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- the session task ---------------------------------------------------------------
    @property
    def who(self) -> str:
        return f"{self.client_name}[{self.client_ip}]"

    def _wake(self, result: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _on_timer(self) -> None:
        """The session's smtpd_timeout timer: re-armed lazily, not once per wait."""
        self._timer = None
        if not self.waiting:
            return  # not waiting for input: the next wait arms it again
        loop = self._event_loop
        if loop.time() + 0.001 >= self._deadline:
            self._wake(False)
        else:
            self._timer = loop.call_at(self._deadline, self._on_timer)

    async def _run(self) -> None:
        log.info("connect from %s", self.who)
        try:
            greeting = self._admit()
            if greeting is None:
                # smtpd_delay_reject = no: client restrictions are judged at connect time.
                greeting = await self._evaluate("connect", self._context())
                if greeting is not None:
                    self._reject_log("CONNECT", greeting, None)
            self._write(self.conn.initiate(greeting))
            if greeting is None:
                await self._loop()
        except Exception:
            log.exception("%s: unexpected error in session", self.who)
            if not self.conn.closed and not self._lost:
                with contextlib.suppress(Exception):
                    self._write(replies.service_unavailable(self.profile.settings.hostname).encode())
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._counted:
                self.runtime.anvil.disconnect(self.client_ip)
            log.info("disconnect from %s", self.who)
            if self.transport is not None and not self._lost:
                self.transport.close()

    def _admit(self) -> Reply | None:
        """Anvil limits, exempting $mynetworks as Postfix's smtpd_client_event_limit_exceptions."""
        config = self.runtime.config
        total = int(config["smtpd_client_limit"])
        if total and len(self.runtime.smtp_sessions) > total:
            log.warning("too many SMTP sessions (smtpd_client_limit = %d): refusing %s", total, self.who)
            return replies.too_many_sessions(self.profile.settings.hostname)
        if self.runtime.policy.mynetworks_contains(self.client_ip):
            return None
        self._counted = True
        count = self.runtime.anvil.connect(self.client_ip)
        limit = int(config["smtpd_client_connection_count_limit"])
        rate_limit = int(config["smtpd_client_connection_rate_limit"])
        hostname = self.profile.settings.hostname
        if limit and count > limit:
            log.warning("Connection concurrency limit exceeded: %d from %s for service %s", count, self.who, self.profile.name)
            return replies.too_many_connections(hostname, self.client_ip)
        if rate_limit and self.runtime.anvil.rate("connect", self.client_ip) > rate_limit:
            log.warning("Connection rate limit exceeded from %s for service %s", self.who, self.profile.name)
            return replies.too_many_connections(hostname, self.client_ip)
        return None

    async def _loop(self) -> None:
        conn = self.conn
        timeout = float(self.runtime.config["smtpd_timeout"])
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.delays_owed:
                    await self._owed_delay()
                self._write(conn.data_to_send())
                if not await self._wait_input(timeout):
                    log.info("timeout after %s from %s", self._last_command, self.who)
                    self._write(conn.timeout())
                    return
                continue
            if isinstance(event, ConnectionClosed):
                if conn.delays_owed:
                    await self._owed_delay()
                self._write(conn.data_to_send())
                if event.reason.startswith("lost connection"):
                    log.info("lost connection after %s from %s", self._last_command, self.who)
                elif event.reason == "too many errors":
                    log.warning("%s: hangup after too many errors", self.who)
                return
            if isinstance(event, StartTLS):
                self._last_command = "STARTTLS"
                self._write(conn.data_to_send())
                if not await self._start_tls():
                    return
                conn.tls_started()
                continue
            if isinstance(event, Quit):
                self._last_command = "QUIT"
                continue
            await self._answer(event)
            if conn.over_soft_error_limit:
                await asyncio.sleep(float(self.runtime.config["smtpd_error_sleep_time"]))

    async def _owed_delay(self) -> None:
        """smtpd_error_sleep_time for each reply the core gave past the soft error limit
        (NOOP floods past smtpd_junk_command_limit, unknown commands...), before sending."""
        owed, self.conn.delays_owed = self.conn.delays_owed, 0
        if owed and not self._lost:
            await asyncio.sleep(owed * float(self.runtime.config["smtpd_error_sleep_time"]))

    async def _wait_input(self, timeout: float) -> bool:
        """Resume reading and wait for bytes (or EOF); False on smtpd_timeout."""
        if self._lost:
            self.conn.receive_data(b"")
            return True
        loop = self._event_loop
        waiter = self._waiter = loop.create_future()
        self._reading = True
        try:
            if self._paused:
                self._paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
            if not self._can_write.is_set():
                await self._can_write.wait()
            self.waiting = True
            self._deadline = loop.time() + timeout
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._on_timer)
            got_input = await waiter
        finally:
            self.waiting = False
            self._waiter = None
            self._reading = False
        if not got_input:
            return False
        if self._lost:
            self.conn.receive_data(b"")
        return True

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    async def _start_tls(self) -> bool:
        context = self.runtime.tls.context
        if context is None or self.transport is None:
            return False
        loop = asyncio.get_running_loop()
        if not self._paused:  # nothing is read in plaintext while the handshake starts
            self._paused = True
            self.transport.pause_reading()
        try:
            transport = await loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except (ssl.SSLError, OSError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            log.warning("TLS handshake failed from %s: %s", self.who, reason)
            self._lost = True
            return False
        if transport is None:
            return False
        self.transport = transport
        self._paused = False  # a new transport, reading
        self.tls_text = describe(transport.get_extra_info("ssl_object"))[0]
        log.info("Anonymous TLS connection established from %s: %s", self.who, self.tls_text)
        return True

    # -- answering events ------------------------------------------------------------------
    def _context(self, **extra: str | None) -> PolicyContext:
        conn = self.conn
        return PolicyContext(
            client_address=self.client_ip,
            client_name=self.client_name,
            helo=conn.helo_name or "",
            protocol=self._protocol(),
            tls_active=conn.tls_active,
            sasl_username=conn.authenticated_user,
            sasl_method=conn.auth_mechanism,
            listener=self.profile.name,
            **extra,
        )

    def _canonical(self, address: str) -> str:
        """The recipient as it will be routed: what policy judges is what is queued.

        Quotes around a plain local part and a trailing dot go (Postfix's
        resolve_dequoted_address); a bare <postmaster> (RFC 5321 §4.5.1) becomes
        postmaster@$mydomain, so it is judged and delivered like any local address
        instead of being accepted and later bounced to an arbitrary sender.
        """
        cached = self._canonical_cache.get(address)
        if cached is not None:
            return cached
        routed = route(address)
        if routed.bare_postmaster:
            return f"postmaster@{self.runtime.config.expanded('mydomain')}"
        canonical = routed.normalized if routed.valid and not routed.routed else address
        if len(self._canonical_cache) < 64:
            self._canonical_cache[address] = canonical
        return canonical

    def _protocol(self) -> str:
        conn = self.conn
        name = "ESMTP" if conn.extended else "SMTP"
        if conn.tls_active:
            name += "S"
        if conn.authenticated_user:
            name += "A"
        return name

    def _reject_log(self, stage: str, reply: Reply, sender: str | None, recipient: str | None = None) -> None:
        parts = [f"from=<{sender}>" if sender is not None else ""]
        if recipient is not None:
            parts.append(f"to=<{recipient}>")
        parts.append(f"proto={'ESMTP' if self.conn.extended else 'SMTP'}")
        parts.append(f"helo=<{self.conn.helo_name or ''}>")
        log.info("NOQUEUE: reject: %s from %s: %s; %s", stage, self.who, reply, " ".join(p for p in parts if p))

    async def _evaluate(self, stage: str, ctx: PolicyContext) -> Reply | None:
        try:
            return await self.runtime.policy.evaluate(stage, ctx)
        except DirectoryError as exc:
            log.warning("%s: directory look-up failed: %s", self.who, exc)
            return Reply(451, "4.3.0", "Temporary lookup failure")

    async def _answer(self, event: object) -> None:
        conn = self.conn
        if isinstance(event, Helo):
            self._last_command = "EHLO" if event.extended else "HELO"
            ctx = self._context()
            ctx.helo = event.name
            reply = await self._evaluate("helo", ctx)
            if reply is None:
                conn.accept()
            else:
                self._reject_log("HELO", reply, None)
                conn.reply(reply)
        elif isinstance(event, MailFrom):
            self._last_command = "MAIL"
            self._sender = event.address
            reply = await self._evaluate("mail", self._context(sender=event.address))
            if reply is None:
                conn.accept()
            else:
                self._reject_log("MAIL", reply, event.address)
                conn.reply(reply)
        elif isinstance(event, RcptTo):
            self._last_command = "RCPT"
            recipient = self._canonical(event.address)
            reply = await self._evaluate("rcpt", self._context(sender=self._sender, recipient=recipient))
            if reply is None:
                conn.accept()
            else:
                self._reject_log("RCPT", reply, self._sender, recipient)
                conn.reply(reply)
        elif isinstance(event, AuthCredentials):
            self._last_command = "AUTH"
            reply, username = await self._authenticate(event)
            if reply is replies.AUTH_SUCCESSFUL:
                conn.accept(username=username)
            else:
                conn.reply(reply)
        elif isinstance(event, MessageReceived):
            self._last_command = "BDAT" if event.chunked else "DATA"
            queued = await self._queue(event)
            if isinstance(queued, Reply):
                conn.reply(queued)
            else:
                conn.accept(queue_id=queued)  # the core words the 250 (DATA and BDAT differ)
        elif isinstance(event, Vrfy):
            self._last_command = "VRFY"
            conn.accept()  # 252: never tells whether a mailbox exists
        elif isinstance(event, Etrn):
            self._last_command = "ETRN"
            reply = await self._evaluate("etrn", self._context(etrn_domain=event.domain))
            if reply is None and not _fast_flush(self.runtime.config["fast_flush_domains"], event.domain):
                log.warning("reject: ETRN %.100s... from %s", event.domain, self.who)
                conn.reply(replies.etrn_denied(event.domain))
            elif reply is None:
                self.runtime.queue_manager.flush(event.domain)
                conn.accept()
            else:
                self._reject_log("ETRN", reply, None)
                conn.reply(reply)
        else:  # pragma: no cover - the core has no other events that need an answer
            raise RuntimeError(f"unexpected event {event!r}")

    async def _authenticate(self, event: AuthCredentials) -> tuple[Reply, str]:
        config = self.runtime.config
        limit = int(config["smtpd_client_auth_rate_limit"])
        if (
            limit
            and not self.runtime.policy.mynetworks_contains(self.client_ip)
            and self.runtime.anvil.rate("auth", self.client_ip) > limit
        ):
            log.warning("AUTH command rate limit exceeded from %s", self.who)
            return replies.too_many_auth(self.client_ip), ""
        if event.authzid and event.authzid.lower() != event.username.lower():
            temporary, reason = False, "authorization identity differs from the user"
        else:
            outcome = await self.runtime.auth_backend.authenticate(
                event.username,
                event.password,
                service="smtp",
                remote_ip=self.client_ip,
                secured=self.conn.tls_active,
            )
            if outcome.ok:
                return replies.AUTH_SUCCESSFUL, outcome.username or event.username
            temporary, reason = outcome.temporary, outcome.reason
        log.warning("%s: SASL %s authentication failed: %s", self.who, event.mechanism, reason or "authentication failure")
        # A delay after each failure slows password guessing (Postfix/Dovecot auth_failure_delay).
        await asyncio.sleep(float(config["smtpd_error_sleep_time"]))
        return (replies.TEMP_AUTH_FAILURE if temporary else replies.auth_failed()), ""

    async def _queue(self, event: MessageReceived) -> Reply | str:
        """Queue the message (fsynced); its queue ID, or the refusal to send instead."""
        runtime = self.runtime
        envelope = event.envelope()
        for rcpt in envelope.recipients:
            rcpt.address = self._canonical(rcpt.address)
        client = envelope.client
        client.helo = self.conn.helo_name or ""
        client.hostname = self.client_name
        client.address = self.client_ip
        client.protocol = self._protocol()
        if self.conn.tls_active and runtime.config["smtpd_tls_received_header"]:
            client.tls = self.tls_text
        client.sasl_username = self.conn.authenticated_user
        client.sasl_method = self.conn.auth_mechanism
        envelope.queue_id = runtime.spool.new_queue_id()
        envelope.arrival_time = time.time()
        single = envelope.recipients[0].address if len(envelope.recipients) == 1 else None
        header = received_header(
            envelope, runtime.hostname, envelope.queue_id, single, envelope.arrival_time,
            show_sasl_username=bool(runtime.config["smtpd_sasl_authenticated_header"]),
        ).encode("utf-8", "replace")
        try:
            queue_id = await runtime.spool.enqueue(envelope, event.data, header=header)
        except SpoolError as exc:
            log.error("%s: queue file write error: %s", self.who, exc)
            return replies.INSUFFICIENT_STORAGE if exc.disk else replies.QUEUE_WRITE_ERROR
        auth = f", sasl_method={client.sasl_method}, sasl_username={client.sasl_username}" if client.sasl_username else ""
        log.info("%s: client=%s%s", queue_id, self.who, auth)
        message_id = _message_id(event.data)
        if message_id:
            get_logger("cleanup").info("%s: message-id=%s", queue_id, message_id)
        runtime.queue_manager.notify(queue_id)
        return queue_id

    @property
    def idle(self) -> bool:
        """Waiting for the next command outside a transaction: safe to close at once."""
        return self.waiting and not self.conn.in_transaction

    def shutdown(self) -> None:
        """Server stopping: close the connection now (between or inside transactions)."""
        if self.transport is not None and not self._lost:
            with contextlib.suppress(Exception):
                self.transport.write(replies.shutting_down(self.profile.settings.hostname).encode())
            self.transport.close()
        if self._task is not None:
            self._task.cancel()


def _fast_flush(domains: list[str], domain: str) -> bool:
    """Postfix's fast_flush_domains match: the domain itself, or a parent given as .parent."""
    wanted = domain.lower().rstrip(".")
    for entry in domains:
        entry = entry.lower()
        if wanted == entry or (entry.startswith(".") and wanted.endswith(entry)):
            return True
    return False


_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def _message_id(data: bytes) -> str:
    head = data[:HEADER_PEEK]
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[:end]
        if b"message-id" not in head.lower():
            return ""
        found = _fast_message_id(head)
        if found is not None:
            return found
    return _parsed_message_id(head)


def _fast_message_id(head: bytes) -> str | None:
    """What the email parser finds, for a plain ASCII CRLF header block; else None."""
    if not head.isascii() or head.count(b"\r") != head.count(b"\r\n"):
        return None
    lines = head.split(b"\r\n")
    value: list[bytes] | None = None
    for i, line in enumerate(lines):
        if line[:1] in (b" ", b"\t"):
            if i == 0:
                return None
            if value is not None:
                value.append(line)
            continue
        if value is not None:
            break
        if _HEADER_NAME.match(line) is None:
            return None  # not a header line: leave the odd cases to the parser
        if line[:11].lower() == b"message-id:":
            value = [line[11:].lstrip(b" \t")]
    if value is None:
        return ""
    return " ".join(b"\r\n".join(value).decode("ascii").split())[:200]


def _parsed_message_id(head: bytes) -> str:
    try:
        value = BytesHeaderParser().parsebytes(head).get("Message-ID", "")
    except Exception:
        return ""
    return " ".join(str(value).split())[:200]
