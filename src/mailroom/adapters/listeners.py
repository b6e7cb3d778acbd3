"""Binding listeners from `*_listen` parameters; a bind failure is one clear line."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from mailroom.config.types import ListenAddress

BACKLOG = 1024  # a burst of 1,000 clients must not see refused connections


class StartupError(Exception):
    """Start-up cannot go on (a listener cannot bind, a certificate is missing, ...)."""


async def bind(
    parameter: str,
    addresses: list[ListenAddress],
    factory: Callable[[], asyncio.Protocol],
    ssl_context: ssl.SSLContext | None = None,
) -> list[asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.AbstractServer] = []
    for address in addresses:
        host = address.host or None
        try:
            server = await loop.create_server(
                factory,
                host=host,
                port=address.port,
                ssl=ssl_context,
                backlog=BACKLOG,
                reuse_address=True,
                family=socket.AF_INET6 if address.host and ":" in address.host else socket.AF_UNSPEC,
                ssl_handshake_timeout=30.0 if ssl_context else None,
            )
        except OSError as exc:
            for started in servers:
                started.close()
            raise StartupError(f"{parameter} = {address}: cannot listen: {exc.strerror or exc}") from None
        servers.append(server)
    return servers
