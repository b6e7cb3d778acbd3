"""The asyncio side of an IMAP session: bytes to the core, answers from auth and the store.

One `ImapSession` (an asyncio.Protocol) per connection with one task driving the
sans-IO `mailroom.imap.server.ServerConnection`, as adapters/pop3.py does for POP3:
reading pauses while the core works (bounded input), `Credentials` go to the
AuthBackend, `Execute` runs the core's store work in a worker thread (the Maildir
blocks) unless the core could answer it inline from memory and the page cache (a
thread hop costs more than a NOOP or a cached FETCH), STARTTLS upgrades with
loop.start_tls (plaintext pipelined behind it is discarded, by the core and by
session.py). While a client IDLEs, inotify wakes the session when its
folder changes (adapters/inotify.py), with a look every IDLE_CHECK_INTERVAL anyway;
without inotify (or on NFS) the folder is polled every IDLE_POLL seconds, so a
delivery shows as EXISTS within a second either way. The idle timer
(imap_timeout, 30 minutes by default: RFC 3501 §5.4's minimum) closes silent sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailroom.adapters.inotify import Watcher, WatchError
from mailroom.adapters.session import LoginSession, start_login_listeners
from mailroom.config.types import ListenAddress
from mailroom.imap.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    Execute,
    ImapSettings,
    StartTLS,
)
from mailroom.imap.server import ServerConnection
from mailroom.mailstore.imap_backend import MaildirBackend, MaildirMailbox
from mailroom.mailstore.maildir import UnsafeAddress
from mailroom.mailstore.store import StoreError, UidListError
from mailroom.runtime.log import get_logger
from mailroom.sasl.backend import AuthBackend

log = get_logger("imap")

DEFAULT_TIMEOUT = 1800.0  # RFC 3501 §5.4: an autologout timer of at least 30 minutes
DEFAULT_AUTH_FAILURE_DELAY = 2.0  # Dovecot's auth_failure_delay
IDLE_POLL = 0.5  # seconds between looks at the folder while a client IDLEs, without inotify
IDLE_CHECK_INTERVAL = 30.0  # with inotify, a look this often anyway (Dovecot's mailbox_idle_check_interval)
INLINE_SLOW = 0.005  # seconds: an inline command this slow means the disk is; see _inline
INLINE_PAUSE = 10.0  # seconds of worker threads only after that
LOOP_SLICE = 0.002  # seconds a session may answer pipelined commands before letting others run
WATCH_WARN_EVERY = 60.0  # seconds between warnings about refused inotify watches


@dataclass
class ImapService:
    """What IMAP sessions share; the server may replace fields on reload (new sessions see them)."""

    mailbox_base: Path  # virtual_mailbox_base
    auth_backend: AuthBackend
    tls_context: Callable[[], ssl.SSLContext | None]
    hostname: str = "localhost"
    mail_nfs_storage: bool = False  # list folders at every look (NFS caches directory times)
    timeout: float = DEFAULT_TIMEOUT  # imap_timeout
    auth_failure_delay: float = DEFAULT_AUTH_FAILURE_DELAY
    disable_plaintext_auth: bool = True
    greeting: str = "mailroom ready."
    idle_poll: float = IDLE_POLL  # without inotify (or on NFS)
    idle_check_interval: float = IDLE_CHECK_INTERVAL  # with inotify: the fallback look
    watcher: Watcher | None = None  # created on first IDLE (needs the running loop)
    watch_unavailable: bool = False  # the kernel refused inotify: poll
    watch_warned_at: float = 0.0  # time.monotonic() of the last "watch refused" warning
    inline: bool = True  # try small read-only commands on the event loop first (see ImapSession._inline)
    inline_paused_until: float = 0.0  # time.monotonic(): no inline attempts before this
    sessions: set[ImapSession] = field(default_factory=set)
    # Connection admission (anvil): returns False to refuse; `release` undoes an admit.
    admit: Callable[[str], bool] = lambda _ip: True
    release: Callable[[str], None] = lambda _ip: None
    # The user's quota in octets (0 = unlimited) for IMAP QUOTA (RFC 2087); set by the runtime.
    quota_lookup: Callable[[str], int] = lambda _user: 0

    def settings(self, *, implicit_tls: bool) -> ImapSettings:
        return ImapSettings(
            greeting=self.greeting,
            tls_available=not implicit_tls and self.tls_context() is not None,
            tls_active=implicit_tls,
            plaintext_auth_requires_tls=self.disable_plaintext_auth,
        )

    def folder_watcher(self) -> Watcher | None:
        """The process's inotify watcher, or None where IDLE must poll (NFS, no inotify)."""
        if self.watcher is None and not self.watch_unavailable and not self.mail_nfs_storage:
            try:
                self.watcher = Watcher(asyncio.get_running_loop())
            except WatchError as exc:
                self.watch_unavailable = True
                log.warning("IDLE checks folders every %.1f s: %s", self.idle_poll, exc)
        return self.watcher

    def watch_refused(self, error: OSError) -> None:
        """A session could not watch its folder (e.g. fs.inotify.max_user_watches): say so
        at most once a minute, not once per session."""
        now = time.monotonic()
        if now - self.watch_warned_at >= WATCH_WARN_EVERY or not self.watch_warned_at:
            self.watch_warned_at = now
            log.warning("IDLE checks folders every %.1f s where inotify refuses a watch: %s", self.idle_poll, error)

    async def stop(self, timeout: float) -> None:
        """Say BYE and close every session; wait up to `timeout` for work in progress."""
        sessions = list(self.sessions)
        for session in sessions:
            session.shutdown()
        tasks = [s.task for s in sessions if s.task is not None and not s.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None


class ImapSession(LoginSession):
    log = log
    conn: ServerConnection

    def __init__(self, service: ImapService, *, implicit_tls: bool = False) -> None:
        super().__init__(service, service.tls_context)
        self.service: ImapService = service
        self.conn = ServerConnection(service.settings(implicit_tls=implicit_tls))
        self._busy = False  # a store operation runs: shutdown waits for it
        self._watch_token: int | None = None  # inotify watch on the folder while idling
        self._watched: object = None  # the mailbox the watch is for
        self._watch_refused = False  # the kernel refused a watch: poll for the rest of the session
        self._folder_changed = False  # set by the watch: look at the folder

    async def _run(self) -> None:
        log.info("connect from %s", self.who)
        admitted = self.service.admit(self.client_ip)
        try:
            if not admitted:
                log.warning("%s: connection limit exceeded, refusing the session", self.who)
                self._write(b"* BYE [UNAVAILABLE] Too many connections from your address; try again later.\r\n")
                return
            self._write(self.conn.initiate())
            await self._loop()
        except Exception:
            log.exception("%s: unexpected error in session", self.who)
            if not self.conn.closed and not self._lost:
                with contextlib.suppress(Exception):
                    self._write(b"* BYE Internal error occurred.\r\n")
        finally:
            if self.conn.username:
                log.info("%s(%s): Disconnected: %s", self.who, self.conn.username,
                         "Logged out" if self.conn.closed else "Connection closed")
            self._unwatch()
            if admitted:
                self.service.release(self.client_ip)
            log.info("disconnect from %s", self.who)
            if self.transport is not None and not self._lost:
                self.transport.close()

    async def _loop(self) -> None:
        conn = self.conn
        last_input = time.monotonic()
        slice_start = time.perf_counter()
        while True:
            # Pipelined commands answered without a wait (inline, or from the core alone)
            # never give the loop back by themselves: every LOOP_SLICE, let others run.
            if time.perf_counter() - slice_start > LOOP_SLICE:
                await asyncio.sleep(0)
                slice_start = time.perf_counter()
            if self._watch_token is not None and not conn.idling:
                self._unwatch()  # IDLE ended (maybe with more commands pipelined behind DONE)
            event = conn.next_event()
            if event is NEED_DATA:
                self._write(conn.data_to_send())
                slice_start = time.perf_counter()  # what follows waits (and yields)
                if not conn.idling:
                    if not await self._wait_input(self.service.timeout):
                        log.info("%s: Disconnected for inactivity", self.who)
                        self._write(conn.timeout())
                        return
                    last_input = time.monotonic()
                    continue
                remaining = self.service.timeout - (time.monotonic() - last_input)
                if remaining <= 0:
                    log.info("%s: Disconnected for inactivity", self.who)
                    self._write(conn.timeout())
                    return
                watched = self._watch()
                if self._folder_changed:
                    self._folder_changed = False
                    await self._idle_poll()
                    continue
                interval = self.service.idle_check_interval if watched else self.service.idle_poll
                if not await self._wait_input(min(interval, remaining)):
                    await self._idle_poll()  # the timer: no watch, or the fallback check
                elif not self._folder_changed:
                    last_input = time.monotonic()
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
            elif isinstance(event, Credentials):
                await self._login(event)
            elif isinstance(event, Execute):
                if not self._inline(conn.execute):
                    await self._blocking(conn.execute)
                    slice_start = time.perf_counter()
                self._write(conn.data_to_send())
                await self._can_write.wait()  # bounded memory: one answer in flight

    async def _idle_poll(self) -> None:
        if not self._inline(self.conn.idle_poll):
            await self._blocking(self.conn.idle_poll)

    def _watch(self) -> bool:
        """While idling, have inotify wake us when the selected folder changes (see
        adapters/inotify.py); False: poll every idle_poll seconds instead."""
        mailbox = self.conn.mailbox
        if self._watch_token is not None:
            if mailbox is self._watched:
                return True
            self._unwatch()  # another folder is selected now
        watcher = self.service.folder_watcher()
        if watcher is None or self._watch_refused or not isinstance(mailbox, MaildirMailbox):
            return False
        path = str(mailbox.folder.path)
        try:
            self._watch_token = watcher.watch([path, f"{path}/new", f"{path}/cur"], self._folder_change)
        except WatchError as exc:
            self._watch_refused = True  # this session polls from now on: no retry at every look
            self.service.watch_refused(exc)
            return False
        self._watched = mailbox
        self._folder_change()  # a change just before the watch began: look once now
        return True

    def _folder_change(self) -> None:
        self._folder_changed = True
        self._input.set()  # wakes _wait_input

    def _unwatch(self) -> None:
        if self._watch_token is not None and self.service.watcher is not None:
            self.service.watcher.unwatch(self._watch_token)
        self._watch_token, self._watched, self._folder_changed = None, None, False

    def _inline(self, work: Callable[..., bool]) -> bool:
        """Try `work(inline=True)` on the event loop (see execute()); False: use a thread.

        The store answers inline only from memory and the page cache, but the stats it
        makes could still wait on a sick disk: one inline step slower than INLINE_SLOW
        sends every session's commands to threads for INLINE_PAUSE seconds."""
        service = self.service
        if not service.inline or time.monotonic() < service.inline_paused_until:
            return False
        started = time.perf_counter()
        done = work(inline=True)
        elapsed = time.perf_counter() - started
        if elapsed > INLINE_SLOW:
            service.inline_paused_until = time.monotonic() + INLINE_PAUSE
            log.warning("%s: a command took %.0f ms on the event loop; running commands in worker threads "
                        "for %.0f s", self.who, elapsed * 1e3, INLINE_PAUSE)
        self._log_store_error()
        return done

    async def _blocking(self, work: Callable[[], object]) -> None:
        self._busy = True
        try:
            await asyncio.to_thread(work)
        finally:
            self._busy = False
        self._log_store_error()

    def _log_store_error(self) -> None:
        error, self.conn.last_error = self.conn.last_error, None
        if error is not None:
            log.error("%s: user=<%s>: %s: %s", self.who, self.conn.username, type(error).__name__, error)

    async def _login(self, event: Credentials) -> None:
        service = self.service
        outcome = await service.auth_backend.authenticate(
            event.username, event.password, service="imap", remote_ip=self.client_ip,
            local_ip=self.local_ip, secured=self.conn.tls_active,
        )
        if not outcome.ok:
            log.warning("%s: SASL %s authentication failed: %s", self.who, event.mechanism,
                        outcome.reason or "authentication failure")
            await asyncio.sleep(service.auth_failure_delay)
            self.conn.reject_login(temporary=outcome.temporary)
            return
        user = outcome.username or event.username
        try:
            backend = await asyncio.to_thread(MaildirBackend.for_user, service.mailbox_base, user,
                                              hostname=service.hostname, nfs=service.mail_nfs_storage,
                                              quota_limit=lambda: service.quota_lookup(user))
        except (StoreError, UidListError, UnsafeAddress, OSError) as exc:
            log.error("%s: user=<%s>: cannot open the mailbox: %s", self.who, user, exc)
            self.conn.login_unavailable()
            return
        self.conn.accept_login(backend)
        log.info("Login: user=<%s>, method=%s, rip=%s, lip=%s%s", user, event.mechanism,
                 self.client_ip, self.local_ip, ", TLS" if self.conn.tls_active else "")

    def shutdown(self) -> None:
        """Server stopping: BYE and close (a running store operation finishes first)."""
        if self.transport is not None and not self._lost and not self._busy:
            with contextlib.suppress(Exception):
                self.transport.write(self.conn.shutdown())
            self.transport.close()
            if self.task is not None:
                self.task.cancel()


async def start_imap_listeners(
    service: ImapService,
    imap_listen: list[ListenAddress],
    imaps_listen: list[ListenAddress],
    *,
    implicit_tls_context: ssl.SSLContext | None = None,
) -> list[asyncio.AbstractServer]:
    """Bind imap_listen (STARTTLS offered when TLS is configured) and imaps_listen (implicit TLS)."""
    return await start_login_listeners(
        "imap", imap_listen, imaps_listen, lambda implicit: ImapSession(service, implicit_tls=implicit),
        lambda: implicit_tls_context or service.tls_context(), log)
