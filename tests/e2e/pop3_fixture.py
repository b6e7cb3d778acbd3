"""An in-process POP3 listener for tests: the asyncio adapter on 127.0.0.1 with a temporary
Maildir, a tiny fake AuthBackend and a trustme certificate, on its own event loop thread.

    from tests.e2e.pop3_fixture import pop3_server  # noqa: F401  (provides the `pop3` fixture)
"""

from __future__ import annotations

import asyncio
import poplib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import trustme

from mailroom.adapters.pop3 import Pop3Service, start_pop3_listeners
from mailroom.config.types import ListenAddress
from mailroom.mailstore.maildir import deliver_to_maildir, mailbox_path
from mailroom.sasl.backend import AuthOutcome

HOST = "127.0.0.1"
JOHN = "john@example.org"
PASSWORD = "summersun"
TIMEOUT = 10.0


class FakeAuth:
    """The AuthBackend protocol with one user; records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    async def authenticate(self, username: str, password: str, *, service: str, remote_ip: str,
                           local_ip: str = "", secured: bool = False) -> AuthOutcome:
        self.calls.append((username, service, secured))
        if username.lower() == JOHN and password == PASSWORD:
            return AuthOutcome(True, username=JOHN)
        return AuthOutcome(False, reason="authentication failure")


@dataclass
class Pop3Fixture:
    service: Pop3Service
    auth: FakeAuth
    port: int
    tls_port: int
    client_context: ssl.SSLContext
    maildir: Path
    ca_file: Path  # PEM of the CA that signed the server certificate (localhost, 127.0.0.1)

    def deliver(self, data: bytes) -> Path:
        return deliver_to_maildir(self.maildir, data, hostname="mx")

    def plain(self) -> poplib.POP3:
        return poplib.POP3(HOST, self.port, timeout=TIMEOUT)

    def secure(self) -> poplib.POP3_SSL:
        return poplib.POP3_SSL(HOST, self.tls_port, timeout=TIMEOUT, context=self.client_context)

    def login(self) -> poplib.POP3_SSL:
        pop = self.secure()
        pop.user(JOHN)
        pop.pass_(PASSWORD)
        return pop


@pytest.fixture(name="pop3")
def pop3_server(tmp_path: Path) -> Iterator[Pop3Fixture]:
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # A subject CN as well as the SANs: fetchmail's sslcertck rejects a certificate without one.
    ca.issue_cert("localhost", HOST, common_name="localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.check_hostname = False  # we connect to 127.0.0.1 by address
    auth = FakeAuth()
    base = tmp_path / "vmail"
    base.mkdir()
    service = Pop3Service(mailbox_base=base, auth_backend=auth, tls_context=lambda: server_context,
                          hostname="mail.example.org", timeout=5.0, auth_failure_delay=0.0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    address = [ListenAddress(HOST, 0)]
    servers = asyncio.run_coroutine_threadsafe(start_pop3_listeners(service, address, address), loop).result(TIMEOUT)
    ports = [cast(asyncio.Server, s).sockets[0].getsockname()[1] for s in servers]
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        yield Pop3Fixture(service, auth, ports[0], ports[1], client_context, mailbox_path(base, JOHN), ca_file)
    finally:
        async def stop() -> None:
            for server in servers:
                server.close()
            await service.stop(2.0)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


