"""What the SMTP core tells its adapter, and the settings it is built with.

Events with `needs_reply = True` stop the core until the adapter answers them with
`ServerConnection.accept()` or `.reply(Reply)`; the others are notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mailroom.queue.envelope import Envelope, Recipient
from mailroom.smtp.address import Path
from mailroom.smtp.commands import MailParams, RcptParams


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """One listener's behaviour, taken from main.cf by the adapter (Postfix names in comments)."""

    hostname: str = "localhost"  # myhostname
    banner: str = "localhost ESMTP mailroom"  # smtpd_banner, expanded
    message_size_limit: int = 10240000  # message_size_limit; 0 = unlimited
    recipient_limit: int = 1000  # smtpd_recipient_limit
    hard_error_limit: int = 20  # smtpd_hard_error_limit
    soft_error_limit: int = 10  # smtpd_soft_error_limit
    junk_command_limit: int = 100  # smtpd_junk_command_limit
    tls_available: bool = False  # a certificate is loaded: offer STARTTLS
    tls_active: bool = False  # implicit TLS (submissions, port 465)
    tls_required_for_auth: bool = True  # smtpd_tls_auth_only
    tls_required: bool = False  # smtpd_tls_security_level = encrypt
    auth_enabled: bool = False  # smtpd_sasl_auth_enable
    auth_required_for_mail: bool = False  # submission listeners: AUTH before MAIL
    vrfy_disabled: bool = False  # disable_vrfy_command
    forbid_bare_newline: bool = True  # smtpd_forbid_bare_newline yes|reject: bare LF in DATA refused
    reject_bare_lf_commands: bool = False  # smtpd_forbid_bare_newline = reject: also in commands
    smtputf8: bool = True  # smtputf8_enable
    header_size_limit: int = 102400  # header_size_limit: the header section, in bytes
    helo_required: bool = False  # smtpd_helo_required (Postfix's default: no)


class Event:
    needs_reply: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Helo(Event):
    """HELO/EHLO; accept() answers with the core's own 250 (EHLO: the extension list)."""

    needs_reply: ClassVar[bool] = True
    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    needs_reply: ClassVar[bool] = True
    path: Path
    params: MailParams

    @property
    def address(self) -> str:
        return self.path.mailbox


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    needs_reply: ClassVar[bool] = True
    path: Path
    params: RcptParams

    @property
    def address(self) -> str:
        return self.path.mailbox


@dataclass(frozen=True, slots=True)
class AuthCredentials(Event):
    """Check these with the AuthBackend; accept() = 235, reply(auth_failed()) = 535."""

    needs_reply: ClassVar[bool] = True
    mechanism: str
    authzid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """End of DATA or BDAT LAST; queue it, then accept(queue_id=...) or reply with a refusal.

    accept() words the 250 as Postfix does for the command that ended the message
    ("Ok: queued as ID", or "Ok: N bytes queued as ID" after BDAT).
    """

    needs_reply: ClassVar[bool] = True
    data: bytes = field(repr=False)
    sender: Path
    mail_params: MailParams
    recipients: tuple[tuple[Path, RcptParams], ...]
    chunked: bool = False  # RFC 3030: it came in BDAT chunks

    def envelope(self) -> Envelope:
        """The queue envelope; the adapter fills queue_id, arrival_time and client."""
        p = self.mail_params
        return Envelope(
            sender=self.sender.mailbox,
            recipients=[Recipient(path.mailbox, rp.notify, rp.orcpt) for path, rp in self.recipients],
            size=len(self.data),
            body_type=p.body_type,
            smtputf8=p.smtputf8,
            ret=p.ret,
            envid=p.envid,
        )


@dataclass(frozen=True, slots=True)
class Vrfy(Event):
    needs_reply: ClassVar[bool] = True
    argument: str


@dataclass(frozen=True, slots=True)
class Etrn(Event):
    needs_reply: ClassVar[bool] = True
    domain: str


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """220 is queued: flush data_to_send(), handshake, then call tls_started()."""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """221 is queued; the next event is ConnectionClosed."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Flush data_to_send() and close the socket. Returned on every call from now on."""

    reason: str


class NeedData:
    """Sentinel: feed more bytes with receive_data() (or b"" at EOF)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
