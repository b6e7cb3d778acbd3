"""The asyncio side of a POP3 session: bytes to the core, answers from auth and the store.

One `Pop3Session` (an asyncio.Protocol) per connection, with one task that drives the
sans-IO `mailroom.pop3.server.ServerConnection`. As in adapters/smtp.py the adapter
decides nothing about the protocol: it reads (pausing the socket while the core
works, so input stays bounded), awaits the AuthBackend and the Maildir store (in a
worker thread: the store blocks on the file system) and writes what the core made,
flushing before it waits for the client. A message is written as soon as it is
read and the next command waits for the socket to drain, so a pipelined
`RETR 1 .. RETR n` never holds more than one message in memory.

Everything it needs comes in a `Pop3Service` (mailbox base, auth backend, a TLS
context getter, timeouts), so it does not depend on the runtime module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailroom.adapters.session import LoginSession, start_login_listeners
from mailroom.config.types import ListenAddress
from mailroom.mailstore.maildir import UnsafeAddress
from mailroom.mailstore.store import Folder, MaildirStore, StoreError, UidListError
from mailroom.pop3 import replies
from mailroom.pop3.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    MessageEntry,
    Pop3Settings,
    Quit,
    Retrieve,
    StartTLS,
    Update,
)
from mailroom.pop3.server import ServerConnection
from mailroom.runtime.log import get_logger
from mailroom.sasl.backend import AuthBackend

log = get_logger("pop3")
LISTING_VIEW = "pop3-listing"  # Folder.views key (see mailstore/shared.py): (uids, entries) in POP3 order

DEFAULT_TIMEOUT = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
DEFAULT_AUTH_FAILURE_DELAY = 2.0  # Dovecot's auth_failure_delay

READ_AHEAD_MESSAGES = 16  # messages read in one worker-thread trip for RETR/TOP
READ_AHEAD_BYTES = 1 << 20  # and at most this much beyond the one asked for

@dataclass
class Pop3Service:
    """What POP3 sessions share; the server may replace fields on reload (new sessions see them)."""

    mailbox_base: Path  # virtual_mailbox_base
    auth_backend: AuthBackend
    tls_context: Callable[[], ssl.SSLContext | None]  # the current context, None = no TLS
    hostname: str = "localhost"
    mail_nfs_storage: bool = False  # list folders at every look (NFS caches directory times)
    timeout: float = DEFAULT_TIMEOUT
    auth_failure_delay: float = DEFAULT_AUTH_FAILURE_DELAY
    disable_plaintext_auth: bool = True
    greeting: str = "mailroom ready."
    # Connection admission (anvil): returns False to refuse; `release` undoes an admit.
    admit: Callable[[str], bool] = lambda _ip: True
    release: Callable[[str], None] = lambda _ip: None
    sessions: set[Pop3Session] = field(default_factory=set)

    def settings(self, *, implicit_tls: bool) -> Pop3Settings:
        return Pop3Settings(
            greeting=self.greeting,
            tls_available=not implicit_tls and self.tls_context() is not None,
            tls_active=implicit_tls,
            plaintext_auth_requires_tls=self.disable_plaintext_auth,
        )

    async def stop(self, timeout: float) -> None:
        """Close idle sessions now; give those committing a QUIT `timeout` seconds."""
        sessions = list(self.sessions)
        for session in sessions:
            if not session.updating:
                session.shutdown()
        tasks = [s.task for s in sessions if s.task is not None and not s.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()


class Pop3Session(LoginSession):
    log = log
    conn: ServerConnection

    def __init__(self, service: Pop3Service, *, implicit_tls: bool = False) -> None:
        super().__init__(service, service.tls_context)
        self.service: Pop3Service = service
        self.conn = ServerConnection(service.settings(implicit_tls=implicit_tls))
        self.folder: Folder | None = None
        self.uids: list[int] = []  # message number - 1 -> UID
        self._read_ahead: dict[int, bytes] = {}  # message number -> content read with an earlier one
        self.updating = False

    async def _run(self) -> None:
        log.info("connect from %s", self.who)
        admitted = self.service.admit(self.client_ip)
        try:
            if not admitted:
                log.warning("%s: connection limit exceeded, refusing the session", self.who)
                self._write(replies.TOO_MANY_CONNECTIONS.encode())
                return
            self._write(self.conn.initiate())
            await self._loop()
        except Exception:
            log.exception("%s: unexpected error in session", self.who)
            if not self.conn.closed and not self._lost:
                with contextlib.suppress(Exception):
                    self._write(replies.INTERNAL_ERROR.encode())
        finally:
            if self.conn.username and self.folder is not None:
                s = self.conn.stats
                log.info("%s(%s): Disconnected: %s top=%d/%d, retr=%d/%d, del=%d/%d, size=%d",
                         self.who, self.conn.username,
                         "Logged out" if self.conn.closed and self.updating else "Connection closed",
                         s["top"], s["top_bytes"], s["retr"], s["retr_bytes"],
                         len(self.conn.deleted), len(self.conn.messages),
                         sum(m.size for m in self.conn.messages))
            if admitted:
                self.service.release(self.client_ip)
            log.info("disconnect from %s", self.who)
            if self.transport is not None and not self._lost:
                self.transport.close()

    async def _loop(self) -> None:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                self._write(conn.data_to_send())
                if not await self._wait_input(self.service.timeout):
                    log.info("%s: Disconnected for inactivity", self.who)
                    self._write(conn.timeout())
                    return
                continue
            if isinstance(event, ConnectionClosed):
                self._write(conn.data_to_send())
                if event.reason.startswith("too many"):
                    log.warning("%s: hangup after %s", self.who, event.reason)
                return
            if isinstance(event, StartTLS):
                self._write(conn.data_to_send())
                if not await self._start_tls():
                    return
                conn.tls_started()
            elif isinstance(event, Quit):
                continue
            elif isinstance(event, Credentials):
                await self._login(event)
            elif isinstance(event, Retrieve):
                await self._retrieve(event)
            elif isinstance(event, Update):
                await self._update(event)

    # -- answering events ------------------------------------------------------------------
    async def _login(self, event: Credentials) -> None:
        service = self.service
        outcome = await service.auth_backend.authenticate(
            event.username,
            event.password,
            service="pop3",
            remote_ip=self.client_ip,
            local_ip=self.local_ip,
            secured=self.conn.tls_active,
        )
        if not outcome.ok:
            # The SMTP shape, so one fail2ban filter covers both services.
            log.warning("%s: SASL %s authentication failed: %s", self.who, event.mechanism,
                        outcome.reason or "authentication failure")
            await asyncio.sleep(service.auth_failure_delay)  # slows password guessing
            self.conn.reject_login(temporary=outcome.temporary)
            return
        user = outcome.username or event.username
        def open_inbox() -> tuple[Folder, list[int], list[MessageEntry]]:
            folder = MaildirStore.for_user(service.mailbox_base, user, hostname=service.hostname,
                                           nfs=service.mail_nfs_storage).folder()
            messages = folder.sync()
            listing = folder.views.get(LISTING_VIEW)  # another session's, for these very messages
            if not isinstance(listing, tuple):
                # Dovecot's order: messages with a POP3 order (O key, kept from a migration) first.
                ordered = sorted(messages, key=lambda m: (m.pop3_order is None, m.pop3_order or 0, m.uid))
                listing = ([m.uid for m in ordered], [MessageEntry(m.vsize, m.pop3_uidl) for m in ordered])
                folder.views[LISTING_VIEW] = listing
            uids, entries = listing
            return folder, list(uids), list(entries)  # shared lists stay untouched

        try:
            self.folder, self.uids, entries = await asyncio.to_thread(open_inbox)
        except (StoreError, UidListError, UnsafeAddress, OSError) as exc:
            log.error("%s: user=<%s>: cannot open INBOX: %s", self.who, user, exc)
            self.conn.login_unavailable()
            return
        self.conn.accept_login(entries)
        log.info("Login: user=<%s>, method=%s, rip=%s, lip=%s%s", user, event.mechanism,
                 self.client_ip, self.local_ip, ", TLS" if self.conn.tls_active else "")

    async def _retrieve(self, event: Retrieve) -> None:
        assert self.folder is not None
        data = self._read_ahead.pop(event.number, None)
        if data is None:
            self._read_ahead.clear()
            numbers = self._ahead_of(event.number)
            try:
                datas = await asyncio.to_thread(self._read_many, numbers)
            except StoreError as exc:
                log.error("%s: user=<%s>: %s", self.who, self.conn.username, exc)
                datas = [None]
            data = datas[0]
            self._read_ahead = {n: d for n, d in zip(numbers[1:], datas[1:], strict=False) if d is not None}
        if data is None:
            self.conn.message_unavailable()
            return
        self.conn.send_message(data)
        self._write(self.conn.data_to_send())
        await self._can_write.wait()  # bounded memory: one message in flight at a time

    def _ahead_of(self, number: int) -> list[int]:
        """`number` and the messages after it, up to the read-ahead limits: clients fetch in
        order, and one trip to a worker thread per message costs more than the read."""
        assert self.folder is not None
        numbers, total = [number], 0
        for n in range(number + 1, min(number + READ_AHEAD_MESSAGES, len(self.uids) + 1)):
            info = self.folder.get(self.uids[n - 1])
            total += info.size if info is not None else 0
            if total > READ_AHEAD_BYTES:
                break
            numbers.append(n)
        return numbers

    def _read_many(self, numbers: list[int]) -> list[bytes | None]:
        """Worker thread: the first message must be read; the rest are best effort."""
        assert self.folder is not None
        first = self.folder.read(self.uids[numbers[0] - 1])
        rest: list[bytes | None] = []
        total = 0
        for n in numbers[1:]:
            try:
                data = self.folder.read(self.uids[n - 1])
            except StoreError:
                break
            total += len(data or b"")
            if total > READ_AHEAD_BYTES:
                break  # sizes from names can be missing or wrong: the bytes read are the bound
            rest.append(data)
        return [first, *rest]

    async def _update(self, event: Update) -> None:
        assert self.folder is not None
        folder = self.folder
        deleted = [self.uids[n - 1] for n in event.deleted]
        seen = [self.uids[n - 1] for n in event.retrieved]
        self.updating = True

        def commit() -> None:
            if seen:
                folder.store_flags(seen, add=("\\Seen",))  # Dovecot: RETR marks a message read
            if deleted:
                folder.expunge(deleted)

        try:
            await asyncio.shield(asyncio.to_thread(commit))
        except (StoreError, UidListError, OSError) as exc:
            log.error("%s: user=<%s>: QUIT failed: %s", self.who, self.conn.username, exc)
            self.conn.update_failed()
            return
        self.conn.accept()

    def shutdown(self) -> None:
        """Server stopping: close now; marked deletions are not applied (no QUIT)."""
        if self.transport is not None and not self._lost:
            with contextlib.suppress(Exception):
                self.transport.write(replies.SHUTTING_DOWN.encode())
            self.transport.close()
        if self.task is not None:
            self.task.cancel()


async def start_pop3_listeners(
    service: Pop3Service,
    pop3_listen: list[ListenAddress],
    pop3s_listen: list[ListenAddress],
    *,
    implicit_tls_context: ssl.SSLContext | None = None,
) -> list[asyncio.AbstractServer]:
    """Bind pop3_listen (STLS offered when TLS is configured) and pop3s_listen (implicit TLS).

    `implicit_tls_context` is the context POP3S handshakes start with; pass one whose
    SNI hook switches to the reloaded context (the Runtime's) to pick up SIGHUP. It
    defaults to `service.tls_context()` at bind time.
    """
    return await start_login_listeners(
        "pop3", pop3_listen, pop3s_listen, lambda implicit: Pop3Session(service, implicit_tls=implicit),
        lambda: implicit_tls_context or service.tls_context(), log)
