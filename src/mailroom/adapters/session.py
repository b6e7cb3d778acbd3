"""The socket side shared by the IMAP and POP3 session adapters.

Both drive a sans-IO core the same way: hold further input while the core works
(input stays bounded), flush replies before waiting for the client, upgrade in place
with STARTTLS/STLS, and keep the write side open after the client's EOF until the
replies are out. Subclasses add the protocol's `_run` and event handling.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from mailroom.adapters.listeners import StartupError, bind
from mailroom.adapters.tls import describe
from mailroom.config.types import ListenAddress

TLS_HANDSHAKE_TIMEOUT = 30.0  # seconds; a client that stalls the handshake is dropped
# Bytes handed to the core at a time. The core answers what it can of them without
# returning (CAPABILITY, CAPA, LIST n...); a big read (up to 256 KiB) of such commands
# would hold the event loop for a quarter of a second, this much for a few ms.
FEED_SLICE = 16 * 1024


class Core(Protocol):
    def receive_data(self, data: bytes) -> None: ...


class LoginSession(asyncio.Protocol):
    """One IMAP or POP3 connection; `service.sessions` tracks the live ones."""

    log: logging.Logger  # set by the subclass: the protocol's Postfix-shaped logger
    conn: Core

    def __init__(self, service: Any, tls_context: Callable[[], ssl.SSLContext | None]) -> None:
        self.service = service
        self._tls_context = tls_context
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.local_ip = ""
        self.client_name = "unknown"
        self.task: asyncio.Task[None] | None = None
        self._input = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._lost = False
        self._held = bytearray()  # received, not yet handed to the core (see FEED_SLICE)
        self._eof_held = False  # the client's EOF came behind held bytes

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.client_ip = str(peer[0]).removeprefix("::ffff:")
        self.local_ip = str(local[0]).removeprefix("::ffff:")
        self.client_name = "localhost" if self.client_ip in ("127.0.0.1", "::1") else "unknown"
        self.service.sessions.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self._held or self._input.is_set():
            self._held += data  # the session has not taken the last input yet: queue behind it
        elif len(data) <= FEED_SLICE:
            self.conn.receive_data(data)
        else:
            self._held += data
            self._feed_slice()
        if self.transport is not None:
            self.transport.pause_reading()  # hold input until the core has consumed this
        self._input.set()

    def eof_received(self) -> bool:
        if self._held:
            self._eof_held = True  # after the bytes before it
        else:
            self.conn.receive_data(b"")
        self._input.set()
        # Keep the write side open until our replies are out (TLS transports cannot half-close).
        return self.transport is None or self.transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._input.set()
        self._can_write.set()
        self.service.sessions.discard(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- helpers for the session task ----------------------------------------------------
    @property
    def who(self) -> str:
        return f"{self.client_name}[{self.client_ip}]"

    async def _run(self) -> None:
        raise NotImplementedError

    def _feed_slice(self) -> None:
        chunk = bytes(self._held[:FEED_SLICE])
        del self._held[:FEED_SLICE]
        self.conn.receive_data(chunk)

    async def _wait_input(self, timeout: float) -> bool:
        """Resume reading and wait for bytes (or EOF); False when the idle timer expires.
        Bytes still held from an earlier read go to the core first, a slice at a time."""
        if self._held:
            await self._can_write.wait()  # the answers to the last slice are on their way
            await asyncio.sleep(0)  # and other sessions get a turn between slices
            if self._held:  # (a STARTTLS upgrade may have dropped them meanwhile)
                self._feed_slice()
            return True
        if self._eof_held:
            self._eof_held = False
            self.conn.receive_data(b"")
            return True
        if self._lost:
            self.conn.receive_data(b"")
            return True
        self._input.clear()
        if self.transport is not None:
            self.transport.resume_reading()
        await self._can_write.wait()
        try:
            async with asyncio.timeout(timeout):
                await self._input.wait()
        except TimeoutError:
            return False
        if self._lost and not self._held:  # else EOF follows the held bytes (the next calls)
            self.conn.receive_data(b"")
        return True

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    async def _start_tls(self) -> bool:
        # Plaintext that came behind STARTTLS/STLS is never trusted (RFC 3501 §6.2.1, RFC
        # 2595 §4): the core dropped what it had; what this adapter still holds goes too.
        self._held.clear()
        self._eof_held = False
        context = self._tls_context()
        if context is None or self.transport is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except (ssl.SSLError, OSError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self.log.warning("TLS handshake failed from %s: %s", self.who, reason)
            self._lost = True
            return False
        if transport is None:
            return False
        self.transport = transport
        self.log.info("TLS connection established from %s: %s", self.who,
                      describe(transport.get_extra_info("ssl_object"))[0])
        return True


async def start_login_listeners(
    protocol: str,
    plain: list[ListenAddress],
    implicit: list[ListenAddress],
    session: Callable[[bool], asyncio.Protocol],
    tls_context: Callable[[], ssl.SSLContext | None],
    log: logging.Logger,
) -> list[asyncio.AbstractServer]:
    """Bind `<protocol>_listen` (STARTTLS/STLS offered when TLS is configured) and
    `<protocol>s_listen` (implicit TLS with `tls_context()`); all or none are bound.
    `session(implicit_tls)` makes one connection's protocol object."""
    servers: list[asyncio.AbstractServer] = []
    try:
        if plain:
            servers += await bind(f"{protocol}_listen", plain, lambda: session(False))
            log.info("%s_listen: listening on %s", protocol, ", ".join(str(a) for a in plain))
        if implicit:
            context = tls_context()
            if context is None:
                raise StartupError(f"{protocol}s_listen: needs smtpd_tls_cert_file and smtpd_tls_key_file")
            servers += await bind(f"{protocol}s_listen", implicit, lambda: session(True), context)
            log.info("%ss_listen: listening on %s", protocol, ", ".join(str(a) for a in implicit))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
