"""What the IMAP core tells its adapter, and the settings it is built with.

As in pop3/events.py: an event with `needs_reply` stops the core until the adapter
answers it with the method named on the event; the others are notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ImapSettings:
    greeting: str = "mailroom ready."
    tls_available: bool = False  # a certificate is loaded: offer STARTTLS
    tls_active: bool = False  # implicit TLS (IMAPS, port 993)
    plaintext_auth_requires_tls: bool = True  # disable_plaintext_auth (no loopback exemption)
    max_bad_commands: int = 20  # Dovecot's CLIENT_MAX_BAD_COMMANDS
    max_auth_failures: int = 3


class Event:
    needs_reply: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Credentials(Event):
    """LOGIN or AUTHENTICATE: check, open the store, then accept_login(backend) or reject_login()."""

    needs_reply: ClassVar[bool] = True
    mechanism: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Execute(Event):
    """A command that needs the store: call execute() (it blocks: use a worker thread)."""

    needs_reply: ClassVar[bool] = True
    tag: str
    name: str


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """The OK is queued: flush data_to_send(), handshake, then call tls_started()."""


@dataclass(frozen=True, slots=True)
class Idling(Event):
    """IDLE began: call idle_poll() (in a worker thread) every so often until input arrives."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Flush data_to_send() and close the socket. Returned on every call from now on."""

    reason: str


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
