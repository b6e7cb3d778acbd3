"""SMTP client connection state machine (the client role), sans-IO.

Theory of operation. One ClientSession carries one message to one server for N
recipients. The conversation is written as a generator that yields actions and
is resumed with what came back, so the whole protocol reads top to bottom; the
adapter only moves bytes:

    session = ClientSession(message, settings, peer="mx.example.com[192.0.2.1]")
    while not isinstance(action := session.next_action(), Done):
        Send       -> write action.data
        NeedReply  -> read with the timeout for action.stage; receive_data(bytes),
                      receive_data(b"") at EOF; on timeout call timed_out()
        StartTls   -> upgrade the stream, then tls_done(ok)
    action.result: per-recipient outcomes and, if the session failed, why.

Rules enforced, with their RFCs: greeting must be 220 (RFC 5321 §4.2); EHLO with
HELO fallback on 5xx (§3.2); STARTTLS per smtp_tls_security_level and EHLO again
after it, nothing read before the handshake may be used (RFC 3207 §4.2, §6);
PIPELINING of MAIL/RCPT/DATA when offered (RFC 2920 §3.1); SIZE pre-check
(RFC 1870 §6); 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531 §3.4, a message that
needs it bounces 5.6.7 when the server lacks it); DSN parameters passed on only
to a server that offers DSN (RFC 3461 §4); 452 "too many recipients" retried in a
next transaction (RFC 5321 §4.5.3.1.10); dot-stuffing (§4.5.2).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from mailroom.smtp.commands import (
    MailParams,
    RcptParams,
    format_mail,
    format_rcpt,
    parse_ehlo_keywords,
    parse_reply_lines,
)
from mailroom.smtp.replies import Reply
from mailroom.wire.errors import LocalProtocolError, RemoteProtocolError
from mailroom.wire.lines import Line, LineBuffer

# RFC 5321 §4.5.3.1.5 says 512 octets per reply line; real servers send longer
# texts, so accept eight times that before calling it garbage.
REPLY_LINE_LIMIT = 4096
# An EHLO reply has one line per extension; a few dozen is generous.
MAX_REPLY_LINES = 200
# Postfix's smtp_destination_recipient_limit default (default_destination_recipient_limit).
RECIPIENTS_PER_TRANSACTION = 50
TLS_LEVELS = ("none", "may", "encrypt")

# What smtp(8) says it was doing when a timeout or lost connection hit (smtp_proto.c).
PHASES = {
    "greeting": "receiving the initial server greeting",
    "ehlo": "performing the EHLO handshake",
    "helo": "performing the HELO handshake",
    "starttls": "performing the STARTTLS handshake",
    "mail": "sending MAIL FROM",
    "rcpt": "sending RCPT TO",
    "data": "sending DATA command",
    "body": "sending message body",
    "dot": "sending end of data -- message may be sent more than once",
    "rset": "sending RSET",
    "quit": "sending QUIT",
}
# "(in reply to X command)" names, as Postfix writes them.
COMMAND_NAMES = {"ehlo": "EHLO", "helo": "HELO", "starttls": "STARTTLS", "mail": "MAIL FROM",
                 "rcpt": "RCPT TO", "data": "DATA", "dot": "end of DATA", "rset": "RSET"}

SENT, DEFERRED, BOUNCED = "sent", "deferred", "bounced"


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY, () = not given
    orcpt: str | None = None  # "rfc822;addr", xtext-decoded


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """Everything the session needs about the message; `data` uses CRLF line ends."""

    sender: str
    recipients: Sequence[OutboundRecipient]
    data: bytes
    body_type: str = ""  # "" | 7BIT | 8BITMIME (BINARYMIME needs BDAT, not offered here)
    smtputf8: bool = False  # the message came in with SMTPUTF8
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    helo_name: str
    tls_level: str = "may"  # smtp_tls_security_level: none | may | encrypt
    recipients_per_transaction: int = RECIPIENTS_PER_TRANSACTION

    def __post_init__(self) -> None:
        if self.tls_level not in TLS_LEVELS:
            raise ValueError(f"bad smtp_tls_security_level '{self.tls_level}'")


# ---------------------------------------------------------------- actions and results


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    stage: str  # a key of PHASES: which timeout applies to the write


@dataclass(frozen=True, slots=True)
class NeedReply:
    stage: str  # a key of PHASES: which timeout applies


@dataclass(frozen=True, slots=True)
class StartTls:
    """Upgrade the connection now, then call tls_done(ok)."""


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    status: str  # sent | deferred | bounced
    dsn: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """Why the session ended before every recipient was decided.

    `try_next`: nothing about this failure is specific to the message, so the
    undecided recipients may go to the next MX host (smtp(8) does the same).
    """

    dsn: str
    reason: str
    try_next: bool

    @property
    def permanent(self) -> bool:
        return self.dsn.startswith("5")


@dataclass(slots=True)
class SessionResult:
    """Per recipient index an outcome, or None if undecided (then `failure` says why)."""

    outcomes: list[RecipientOutcome | None]
    failure: SessionFailure | None = None
    tls: bool = False
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    result: SessionResult


Action = Send | NeedReply | StartTls | Done


# ---------------------------------------------------------------- pure helpers


def dsn_of(reply: Reply) -> str:
    """RFC 3463 status from a reply: its enhanced code if consistent, else X.0.0."""
    klass = str(reply.code)[0]
    if reply.enhanced and reply.enhanced[0] == klass:
        return reply.enhanced
    return f"{klass}.0.0"


def one_line(reply: Reply) -> str:
    """A reply as Postfix logs it: code, enhanced code, text lines joined by spaces."""
    return str(Reply(reply.code, reply.enhanced, reply.text.replace("\n", " ")))


_EOL = re.compile(rb"\r?\n|\r")
_DOT_LINE = re.compile(rb"^\.", re.M)


def encode_data(data: bytes) -> bytes:
    """Message bytes -> DATA payload: CRLF line ends (RFC 5321 §2.3.8), a leading dot
    doubled (§4.5.2), and the <CRLF>.<CRLF> terminator (§4.1.1.4)."""
    lf = _EOL.sub(b"\n", data)
    if lf and not lf.endswith(b"\n"):
        lf += b"\n"
    stuffed = _DOT_LINE.sub(b"..", lf)
    return stuffed.replace(b"\n", b"\r\n") + b".\r\n"


def has_8bit(data: bytes) -> bool:
    return not data.isascii()


def needs_smtputf8(message: OutboundMessage) -> bool:
    """RFC 6531 §3.2: SMTPUTF8 is needed only for non-ASCII addresses or headers;
    an SMTPUTF8 message that turns out to be ASCII may go to any server."""
    if not message.smtputf8:
        return False
    if not message.sender.isascii() or any(not r.address.isascii() for r in message.recipients):
        return True
    end = message.data.find(b"\r\n\r\n")
    header = message.data if end < 0 else message.data[:end]
    return not header.isascii()


# ---------------------------------------------------------------- the session


class ClientSession:
    """One SMTP client conversation; see the module docstring for the loop."""

    def __init__(self, message: OutboundMessage, settings: ClientSettings, peer: str, *, tls_active: bool = False) -> None:
        if not message.recipients:
            raise LocalProtocolError("a session needs at least one recipient")
        self.message = message
        self.settings = settings
        self.peer = peer  # "host[ip]" for reply texts
        self.tls_active = tls_active
        self.extensions: dict[str, str] = {}
        self.outcomes: list[RecipientOutcome | None] = [None] * len(message.recipients)
        self.failure: SessionFailure | None = None
        self._lines = LineBuffer(REPLY_LINE_LIMIT)
        self._reply_lines: list[bytes] = []
        self._replies: deque[Reply] = deque()
        self._eof = False
        self._gen = self._conversation()
        self._current: Action | None = None
        self._tls_ok: bool | None = None
        self._decided_done = False

    # -- adapter interface --------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; b"" means the server closed the connection."""
        if not data:
            self._eof = True
            return
        self._lines.feed(data)
        while True:
            line = self._lines.next_line()
            if line is None:
                return
            if not isinstance(line, Line):
                raise RemoteProtocolError("reply line too long")
            self._reply_lines.append(line.text)
            if len(self._reply_lines) > MAX_REPLY_LINES:
                raise RemoteProtocolError("too many reply lines")
            if len(line.text) < 4 or line.text[3:4] != b"-":
                lines, self._reply_lines = self._reply_lines, []
                self._replies.append(parse_reply_lines(lines))

    def next_action(self) -> Action:
        """What the adapter must do next (Done when the session is over).

        Calling it again means the previous Send was written; a NeedReply is
        returned again until receive_data() brought a whole reply.
        """
        while True:
            current = self._current
            if isinstance(current, Done):
                return current
            if isinstance(current, StartTls):
                if self._tls_ok is None:
                    return current  # waiting for tls_done()
                self._tls_ok = None
                self._step(True)
            elif isinstance(current, NeedReply):
                if self._replies:
                    self._step(self._replies.popleft())
                elif self._eof:
                    self._lost(current.stage, "lost connection with {peer} while {phase}")
                else:
                    return current
            else:  # not started yet, or a Send that has been written
                self._step(None)
            if not isinstance(self._current, NeedReply):
                return self._current  # type: ignore[return-value]

    def tls_done(self, ok: bool, detail: str = "handshake failure") -> None:
        """The adapter finished (or failed) the TLS handshake asked for by StartTls."""
        if not isinstance(self._current, StartTls):
            raise LocalProtocolError("tls_done() without StartTls")
        if not ok:
            self._fail(SessionFailure("4.7.5", f"Cannot start TLS: {detail}", try_next=True))
            return
        if len(self._lines) or self._reply_lines or self._replies:
            # RFC 3207 §6 / CVE-2011-0411: bytes the server sent before the handshake
            # were not protected by it and must not be read as its answer.
            self._fail(SessionFailure("4.7.5", f"host {self.peer} sent data after its STARTTLS reply", try_next=True))
            return
        self.tls_active = True
        self._tls_ok = True

    def timed_out(self) -> None:
        """The stage's timeout expired (while reading or writing)."""
        stage = self._current.stage if isinstance(self._current, NeedReply | Send) else "body"
        self._lost(stage, "conversation with {peer} timed out while {phase}")

    def connection_lost(self, stage: str | None = None) -> None:
        """A write failed or the peer reset the connection."""
        stage = stage or (self._current.stage if isinstance(self._current, NeedReply | Send) else "body")
        self._lost(stage, "lost connection with {peer} while {phase}")

    def protocol_error(self, detail: str) -> None:
        """receive_data raised RemoteProtocolError: the reply stream cannot be trusted."""
        self._fail(SessionFailure("4.5.0", f"host {self.peer} sent a malformed reply: {detail}", try_next=True))

    @property
    def result(self) -> SessionResult:
        return SessionResult(list(self.outcomes), self.failure, self.tls_active, dict(self.extensions))

    # -- internals ----------------------------------------------------------------------
    def _step(self, value: object) -> None:
        try:
            self._current = self._gen.send(value) if self._current is not None else next(self._gen)
        except StopIteration:
            self._current = Done(self.result)

    def _lost(self, stage: str, template: str) -> None:
        if self._decided_done:  # only QUIT was left: the outcomes stand
            self._current = Done(self.result)
            self._gen.close()
            return
        reason = template.format(peer=self.peer, phase=PHASES.get(stage, stage))
        # Once the body is on the way the server may have it: never try another host.
        self._fail(SessionFailure("4.4.2", reason, try_next=stage not in ("body", "dot")))

    def _fail(self, failure: SessionFailure) -> None:
        if self.failure is None:
            self.failure = failure
        self._gen.close()
        self._current = Done(self.result)

    def _said(self, reply: Reply, stage: str) -> str:
        return f"host {self.peer} said: {one_line(reply)} (in reply to {COMMAND_NAMES[stage]} command)"

    def _decide(self, index: int, reply: Reply, stage: str) -> None:
        status = DEFERRED if reply.is_temporary else BOUNCED
        self.outcomes[index] = RecipientOutcome(status, dsn_of(reply), self._said(reply, stage))

    def _end(self, failure: SessionFailure | None = None) -> Generator[Action, object, None]:
        """Record the failure (if any), then QUIT politely; QUIT's fate changes nothing."""
        if failure is not None and self.failure is None:
            self.failure = failure
        self._decided_done = True
        yield Send(b"QUIT\r\n", "quit")
        yield NeedReply("quit")

    def _command(self, line: bytes, stage: str) -> Generator[Action, object, Reply]:
        yield Send(line, stage)
        reply = yield NeedReply(stage)
        assert isinstance(reply, Reply)
        return reply

    def _conversation(self) -> Generator[Action, object, None]:
        greeting = yield NeedReply("greeting")
        assert isinstance(greeting, Reply)
        if greeting.code != 220:  # RFC 5321 §4.2: 220, or 554 for "no service here"
            reason = f"host {self.peer} refused to talk to me: {one_line(greeting)}"
            yield from self._end(SessionFailure(dsn_of(greeting) if greeting.code >= 400 else "4.5.0", reason, try_next=True))
            return
        ok = yield from self._hello()
        if not ok:
            return
        if not self.tls_active and self.settings.tls_level != "none":
            if "STARTTLS" in self.extensions:
                reply = yield from self._command(b"STARTTLS\r\n", "starttls")
                if reply.code != 220:
                    # Only an absent STARTTLS allows plaintext under "may"; a refused one
                    # could be an attacker stripping TLS, so try the next host instead.
                    yield from self._end(SessionFailure(dsn_of(reply), self._said(reply, "starttls"), try_next=True))
                    return
                started = yield StartTls()
                assert started is True
                self.extensions = {}
                ok = yield from self._hello()  # RFC 3207 §4.2: forget what was learned
                if not ok:
                    return
            elif self.settings.tls_level == "encrypt":
                reason = f"TLS is required, but was not offered by host {self.peer}"
                yield from self._end(SessionFailure("4.7.4", reason, try_next=True))
                return
        refusal = self._refusal()
        if refusal is not None:
            yield from self._end(refusal)
            return
        todo = list(range(len(self.message.recipients)))
        payload = encode_data(self.message.data)
        first = True
        while todo:
            if not first:
                reply = yield from self._command(b"RSET\r\n", "rset")
                if not reply.is_positive:
                    break
            first = False
            batch = todo[: self.settings.recipients_per_transaction]
            todo = todo[len(batch):]
            retry = yield from self._transaction(batch, payload)
            todo = retry + todo  # each transaction took at least one, so this ends
        yield from self._end()

    def _hello(self) -> Generator[Action, object, bool]:
        """EHLO, or HELO when EHLO gets a 5xx (RFC 5321 §3.2); False after a failure."""
        name = self.settings.helo_name
        reply = yield from self._command(f"EHLO {name}\r\n".encode(), "ehlo")
        if reply.code == 250:
            self.extensions = parse_ehlo_keywords(reply)
            return True
        stage = "ehlo"
        if reply.is_permanent:
            reply = yield from self._command(f"HELO {name}\r\n".encode(), "helo")
            stage = "helo"
            if reply.code == 250:
                self.extensions = {}
                return True
        yield from self._end(SessionFailure(dsn_of(reply) if reply.code >= 400 else "4.5.0",
                                            self._said(reply, stage), try_next=True))
        return False

    def _refusal(self) -> SessionFailure | None:
        """What the server's extensions make impossible for this message (no retry elsewhere)."""
        if needs_smtputf8(self.message) and "SMTPUTF8" not in self.extensions:
            return SessionFailure("5.6.7", f"SMTPUTF8 is required, but was not offered by host {self.peer}", try_next=False)
        size_text = self.extensions.get("SIZE", "")
        if size_text.isdigit() and int(size_text) > 0 and len(self.message.data) > int(size_text):
            return SessionFailure("5.3.4", f"message size {len(self.message.data)} exceeds size limit "
                                           f"{int(size_text)} of server {self.peer}", try_next=False)
        return None

    def _mail_line(self) -> bytes:
        ext, msg = self.extensions, self.message
        dsn = "DSN" in ext
        eight = msg.body_type == "8BITMIME" or has_8bit(msg.data)
        params = MailParams(
            size=len(msg.data) if "SIZE" in ext else None,
            # RFC 6152 §3: declare 8-bit content when the server understands it; without
            # 8BITMIME it is sent unchanged (Postfix with disable_mime_output_conversion).
            body_type="8BITMIME" if eight and "8BITMIME" in ext else "",
            smtputf8=msg.smtputf8 and "SMTPUTF8" in ext,
            ret=msg.ret if dsn else None,
            envid=msg.envid if dsn else None,
        )
        return format_mail(msg.sender, params)

    def _rcpt_line(self, index: int) -> bytes:
        rcpt = self.message.recipients[index]
        if "DSN" in self.extensions:
            return format_rcpt(rcpt.address, RcptParams(rcpt.notify, rcpt.orcpt))
        return format_rcpt(rcpt.address)

    def _transaction(self, batch: list[int], payload: bytes) -> Generator[Action, object, list[int]]:
        """MAIL, RCPT..., DATA for `batch`; returns indexes to retry in a new transaction."""
        pipelining = "PIPELINING" in self.extensions
        mail = self._mail_line()
        rcpts = [self._rcpt_line(i) for i in batch]
        if pipelining:  # RFC 2920 §3.1: DATA may end the group; replies come in order
            yield Send(mail + b"".join(rcpts) + b"DATA\r\n", "mail")
        else:
            yield Send(mail, "mail")
        mail_reply = yield NeedReply("mail")
        assert isinstance(mail_reply, Reply)
        if not mail_reply.is_positive:
            for i in batch:
                self._decide(i, mail_reply, "mail")
            if pipelining:  # drain the RCPT and DATA replies that are on the way
                for _ in batch:
                    yield NeedReply("rcpt")
                data_reply = yield NeedReply("data")
                if isinstance(data_reply, Reply) and data_reply.code == 354:
                    yield Send(b".\r\n", "dot")
                    yield NeedReply("dot")
            return []
        accepted: list[int] = []
        retry: list[int] = []
        for i, line in zip(batch, rcpts, strict=True):
            if not pipelining:
                yield Send(line, "rcpt")
            reply = yield NeedReply("rcpt")
            assert isinstance(reply, Reply)
            if reply.is_positive:
                accepted.append(i)
            elif reply.code == 452 and accepted and (not reply.enhanced or reply.enhanced == "4.5.3"):
                retry.append(i)  # RFC 5321 §4.5.3.1.10: send the rest in a new transaction
            else:
                self._decide(i, reply, "rcpt")
        if not pipelining and accepted:
            yield Send(b"DATA\r\n", "data")
        if pipelining or accepted:
            data_reply = yield NeedReply("data")
            assert isinstance(data_reply, Reply)
        else:
            return retry
        if data_reply.code != 354:
            for i in accepted:
                self._decide(i, data_reply, "data")
            return retry
        if not accepted:
            # RFC 2920 §3.1: DATA was pipelined and went through although every RCPT
            # failed: end the empty message and ignore what the server says.
            yield Send(b".\r\n", "dot")
            yield NeedReply("dot")
            return retry
        yield Send(payload, "body")
        final = yield NeedReply("dot")
        assert isinstance(final, Reply)
        for i in accepted:
            if final.is_positive:
                self.outcomes[i] = RecipientOutcome(SENT, dsn_of(final), one_line(final))
            else:
                self._decide(i, final, "dot")
        return retry
