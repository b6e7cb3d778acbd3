"""An in-process IMAP listener for tests: the asyncio adapter on 127.0.0.1 with a temporary
Maildir, the POP3 fixture's fake AuthBackend and a trustme certificate, on its own loop thread.

    from tests.e2e.imap_fixture import imap_server  # noqa: F401  (provides the `imap` fixture)
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import trustme

from mailroom.adapters.imap import ImapService, start_imap_listeners
from mailroom.config.types import ListenAddress
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from tests.e2e.pop3_fixture import HOST, JOHN, PASSWORD, TIMEOUT, FakeAuth

__all__ = ["HOST", "JOHN", "PASSWORD", "TIMEOUT", "ImapFixture", "imap_server"]


@dataclass
class ImapFixture:
    service: ImapService
    auth: FakeAuth
    port: int
    tls_port: int
    client_context: ssl.SSLContext
    maildir: Path
    ca_file: Path
    loop: asyncio.AbstractEventLoop  # the server's event loop (its own thread)

    def deliver(self, data: bytes) -> Path:
        return deliver_to_maildir(self.maildir, data, hostname="mx")

    def plain(self) -> imaplib.IMAP4:
        return imaplib.IMAP4(HOST, self.port, timeout=TIMEOUT)

    def secure(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL(HOST, self.tls_port, ssl_context=self.client_context, timeout=TIMEOUT)

    def login(self) -> imaplib.IMAP4_SSL:
        imap = self.secure()
        imap.login(JOHN, PASSWORD)
        return imap


@pytest.fixture(name="imap")
def imap_server(tmp_path: Path) -> Iterator[ImapFixture]:
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", HOST, common_name="localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.check_hostname = False
    auth = FakeAuth()
    base = tmp_path / "vmail"
    base.mkdir()
    service = ImapService(mailbox_base=base, auth_backend=auth, tls_context=lambda: server_context,
                          hostname="mail.example.org", timeout=5.0, auth_failure_delay=0.0, idle_poll=0.2)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    address = [ListenAddress(HOST, 0)]
    servers = asyncio.run_coroutine_threadsafe(start_imap_listeners(service, address, address), loop).result(TIMEOUT)
    ports = [cast(asyncio.Server, s).sockets[0].getsockname()[1] for s in servers]
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        yield ImapFixture(service, auth, ports[0], ports[1], client_context, mailbox_path(base, JOHN), ca_file, loop)
    finally:
        async def stop() -> None:
            for server in servers:
                server.close()
            await service.stop(2.0)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()
