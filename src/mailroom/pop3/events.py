"""What the POP3 core tells its adapter, and the settings it is built with.

Events with `needs_reply = True` stop the core until the adapter answers them (the
method to call is named on each event); the others are notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    """One listener's behaviour (Dovecot setting names in comments)."""

    greeting: str = "mailroom ready."  # login_greeting, as "+OK <greeting>"
    tls_available: bool = False  # a certificate is loaded: offer STLS
    tls_active: bool = False  # implicit TLS (POP3S, port 995)
    plaintext_auth_requires_tls: bool = True  # disable_plaintext_auth (no loopback exemption)
    max_bad_commands: int = 20  # Dovecot's CLIENT_MAX_BAD_COMMANDS
    max_auth_failures: int = 3  # then the connection is closed


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """What the core needs of one message: its CRLF size and its UIDL."""

    size: int
    uidl: str


class Event:
    needs_reply: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Credentials(Event):
    """USER/PASS or AUTH: check, open the maildrop, then accept_login() or reject_login()."""

    needs_reply: ClassVar[bool] = True
    mechanism: str  # PLAIN for USER/PASS, as Dovecot logs it
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Retrieve(Event):
    """RETR or TOP: send_message(bytes) or message_unavailable()."""

    needs_reply: ClassVar[bool] = True
    number: int  # 1-based, as the client sees it
    body_lines: int | None  # None = RETR, else TOP's line count


@dataclass(frozen=True, slots=True)
class Update(Event):
    """QUIT in TRANSACTION (RFC 1939 §6): delete, mark read, then accept() or update_failed()."""

    needs_reply: ClassVar[bool] = True
    deleted: tuple[int, ...]  # 1-based numbers marked with DELE
    retrieved: tuple[int, ...]  # 1-based numbers sent whole with RETR (Dovecot sets \Seen)


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """+OK is queued: flush data_to_send(), handshake, then call tls_started()."""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """QUIT before login: the reply is queued; the next event is ConnectionClosed."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Flush data_to_send() and close the socket. Returned on every call from now on."""

    reason: str


class NeedData:
    """Sentinel: feed more bytes with receive_data() (or b"" at EOF)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
