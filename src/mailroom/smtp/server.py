"""The SMTP server state machine, sans-IO in the manner of h11.

Theory of operation
-------------------
The adapter owns the socket; this object owns the protocol. Bytes go in with
`receive_data()` (b"" = EOF); `next_event()` parses exactly ONE command at a time
and either answers it itself (syntax, sequence, limits: anything that needs no
outside knowledge) and moves on, or returns an Event. An event with `needs_reply`
freezes the core: no further byte is looked at until the adapter calls `accept()`
or `reply()`. That single rule gives RFC 2920 pipelining for free: a client may
send MAIL, RCPT, RCPT, DATA in one packet, and the replies still come out strictly
in command order, each decided with the state its predecessors left behind.
Replies accumulate in an output buffer drained by `data_to_send()`.

States: GREETING -> COMMAND <-> AUTH (SASL exchange) / DATA (message body) /
CHUNK (one BDAT chunk) / TLS_HANDSHAKE (after STARTTLS) -> CLOSED. Transaction state
(sender, recipients, the BDAT chunks so far) lives across COMMAND, DATA and CHUNK and
is cleared by RSET, HELO/EHLO, end of DATA, BDAT LAST, STARTTLS and TLS start
(RFC 5321 §4.1.1.5, §4.1.4; RFC 3030 §2; RFC 3207 §4.2).

Security choices: only <CRLF>.<CRLF> ends DATA (see smtp/data.py); a BDAT chunk is
framed by its count alone and is read even when the command is refused, so its
content is never taken for commands (see smtp/bdat.py); bytes pipelined after
STARTTLS are discarded (RFC 3207 §6); a command ending in a bare LF closes the
session when forbid_bare_newline is on; lines are bounded (wire/lines.py).

CHUNKING (RFC 3030, without BINARYMIME) answers as Debian's Postfix 3.7 does, as
recorded in tests/interop/test_postfix_bdat.py: "250 2.0.0 Ok: N bytes" per chunk,
"250 2.0.0 Ok: N bytes queued as ID" after LAST; a count that cannot be parsed is
"521 5.5.4 Syntax: BDAT count [LAST]" and the end of the session; once a chunk of a
transfer is refused (503/554 sequence, "551 5.7.1 Null BDAT request" for BDAT 0
without LAST, "552 5.3.4 Chunk exceeds message size limit"), later chunks are read
and dropped with "551 5.0.0 Discarded N bytes after earlier error" until LAST, RSET
or HELO/EHLO; MAIL, RCPT and DATA inside a transfer are "503 5.5.1 Error: <verb>
after BDAT". Where mailroom is stricter than Postfix, the code says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum, auto

from mailroom.sasl.mechanisms import (
    MECHANISMS,
    Challenge,
    Credentials,
    Exchange,
    Failure,
    FailureKind,
)
from mailroom.smtp import replies
from mailroom.smtp.address import AddressError, Path, parse_path
from mailroom.smtp.bdat import ChunkedMessage, ChunkReader, parse_bdat
from mailroom.smtp.commands import (
    AUTH_LINE_LIMIT,
    COMMAND_LINE_LIMIT,
    CommandError,
    MailParams,
    RcptParams,
    parse_command,
    parse_mail,
    parse_rcpt,
)
from mailroom.smtp.data import DataReader
from mailroom.smtp.events import (
    NEED_DATA,
    AuthCredentials,
    ConnectionClosed,
    Etrn,
    Event,
    Helo,
    MailFrom,
    MessageReceived,
    NeedData,
    Quit,
    RcptTo,
    ServerSettings,
    StartTLS,
    Vrfy,
)
from mailroom.smtp.replies import Reply
from mailroom.wire.errors import LocalProtocolError
from mailroom.wire.lines import Line, LineBuffer

# Commands allowed before STARTTLS when TLS is required (Postfix's SMTPD_CMD_FLAG_PRE_TLS).
PRE_TLS_VERBS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "QUIT"})
# Postfix's "junk commands" (SMTPD_CMD_FLAG_LIMIT: HELO and EHLO too, though its docs name four)
_JUNK_VERBS = frozenset({"HELO", "EHLO", "NOOP", "RSET", "VRFY", "ETRN"})
# A BDAT command line: the verb, then blanks or the end (Postfix splits words at blanks).
_BDAT_LINE = re.compile(rb"[ \t]*BDAT(?:[ \t\r]|\Z)", re.IGNORECASE)


class State(Enum):
    GREETING = auto()
    COMMAND = auto()
    AUTH = auto()
    DATA = auto()
    CHUNK = auto()
    TLS_HANDSHAKE = auto()
    CLOSED = auto()


class ServerConnection:
    """One SMTP session. Drive it: initiate(), then receive_data()/next_event() in a loop."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.state = State.GREETING
        self.tls_active = settings.tls_active
        self.helo_name: str | None = None
        self.extended = False
        self.authenticated_user = ""
        self.auth_mechanism = ""
        self._auth_name = ""
        self.error_count = 0
        self.junk_commands = 0  # NOOP, RSET, VRFY, ETRN since the last delivered message
        # Replies the core gave itself past smtpd_soft_error_limit: Postfix sleeps
        # smtpd_error_sleep_time before each; the adapter sleeps that many times over before
        # it sends them (replies to events it delays itself, after answering).
        self.delays_owed = 0
        self._out = bytearray()
        self._lines = LineBuffer(AUTH_LINE_LIMIT)
        self._eof = False
        self._pending: Event | None = None
        self._close_reason = ""
        self._sasl: Exchange | None = None
        self._data: DataReader | None = None
        self._chunk: ChunkReader | None = None  # the BDAT chunk being read
        self._bdat: ChunkedMessage | None = None  # a BDAT transfer is open (first BDAT .. LAST)
        self._sender: tuple[Path, MailParams] | None = None
        self._recipients: list[tuple[Path, RcptParams]] = []

    # ------------------------------------------------------------ adapter API

    def initiate(self, reply: Reply | None = None) -> bytes:
        """Send the 220 greeting, or a client-restriction refusal (which closes)."""
        if self.state is not State.GREETING:
            raise LocalProtocolError("initiate() called twice")
        self.state = State.COMMAND
        self._send(reply or replies.greeting(self.settings.banner), count=False)
        if reply is not None and not reply.is_positive:
            self._close("rejected at connect")
        return self.data_to_send()

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed as lines (DATA and BDAT chunk bytes are
        consumed as they arrive and not counted here)."""
        return len(self._lines)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes as they arrived; b"" means the client closed its side."""
        if not data:
            self._eof = True
        elif self.state is State.TLS_HANDSHAKE or self.state is State.CLOSED:
            return  # RFC 3207 §6: nothing sent in plaintext after STARTTLS is trusted
        elif self._data is not None and self._data.result is None:
            rest = self._data.feed(data)
            if rest is not None:
                self._lines.feed(rest)
        elif self._chunk is not None and not self._chunk.done:
            rest = self._chunk.feed(data)
            if rest:
                self._lines.feed(rest)
        else:
            self._lines.feed(data)

    def next_event(self) -> Event | NeedData:
        if self._pending is not None:
            raise LocalProtocolError(f"answer {type(self._pending).__name__} first")
        if self.state is State.GREETING:
            raise LocalProtocolError("call initiate() first")
        while True:
            if self.state is State.CLOSED:
                return ConnectionClosed(self._close_reason)
            if self.state is State.TLS_HANDSHAKE:
                return NEED_DATA
            if self.state is State.DATA:
                event = self._data_step()
            elif self.state is State.CHUNK:
                event = self._chunk_step()
            else:
                event = self._line_step()
            if isinstance(event, NeedData):
                return event
            if event is not None:
                if event.needs_reply:
                    self._pending = event
                return event

    def accept(self, *, queue_id: str | None = None, username: str | None = None) -> None:
        """Answer the pending event with its usual positive reply.

        For AuthCredentials, `username` is the backend's canonical name for the user,
        which the session then carries (logs, Received, sender checks), not what was typed.
        """
        event = self._pending
        if isinstance(event, Helo):
            self.reply(replies.OK)
        elif isinstance(event, MailFrom):
            self.reply(replies.SENDER_OK)
        elif isinstance(event, RcptTo):
            self.reply(replies.RECIPIENT_OK)
        elif isinstance(event, AuthCredentials):
            self._auth_name = username or ""
            self.reply(replies.AUTH_SUCCESSFUL)
        elif isinstance(event, MessageReceived):
            if not queue_id:
                raise LocalProtocolError("accepting a message needs its queue id")
            self.reply(replies.queued_as(queue_id, len(event.data) if event.chunked else None))
        elif isinstance(event, Vrfy):
            self.reply(replies.vrfy_cannot_verify(event.argument))
        elif isinstance(event, Etrn):
            self.reply(replies.ETRN_STARTED)
        else:
            raise LocalProtocolError("no event is waiting for an answer")

    def reply(self, reply: Reply) -> None:
        """Answer the pending event; state changes apply only when `reply` is positive."""
        event, self._pending = self._pending, None
        if event is None:
            raise LocalProtocolError("no event is waiting for an answer")
        ok = reply.is_positive
        if isinstance(event, Helo) and ok:
            # RFC 5321 §4.1.4: HELO/EHLO resets the transaction.
            self.helo_name, self.extended = event.name, event.extended
            self._reset_transaction()
            h = self.settings.hostname
            reply = replies.ehlo_ok(h, self.ehlo_keywords()) if event.extended else replies.helo_ok(h)
        elif isinstance(event, MailFrom) and ok:
            self._sender = (event.path, event.params)
        elif isinstance(event, RcptTo) and ok:
            self._recipients.append((event.path, event.params))
        elif isinstance(event, AuthCredentials) and ok:
            self.authenticated_user = self._auth_name or event.username
            self.auth_mechanism = event.mechanism
        elif isinstance(event, MessageReceived):
            self._reset_transaction()  # RFC 5321 §4.1.1.4: either way, the transaction ends
            if ok:
                self.error_count = 0  # Postfix counts errors "without delivering mail"
                self.junk_commands = 0  # smtpd_junk_command_limit: "reset after mail is delivered"
        self._send(reply)
        if reply.code == 421:
            self._close("closed by adapter reply")  # RFC 5321 §3.8
        self._check_hard_limit()

    def tls_started(self) -> None:
        """The handshake succeeded: RFC 3207 §4.2, forget everything learned before it."""
        if self.state is not State.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self.state = State.COMMAND
        self.tls_active = True
        self.helo_name, self.extended = None, False
        self.authenticated_user = self.auth_mechanism = ""
        self._reset_transaction()
        self._lines.clear()

    def timeout(self) -> bytes:
        """smtpd_timeout expired: the 421 to send before closing."""
        self._pending = None
        if self.state is not State.CLOSED:
            self._send(replies.timeout_exceeded(self.settings.hostname), count=False)
            self._close("timeout")
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def in_transaction(self) -> bool:
        """A MAIL transaction is open: a shutdown should let it finish."""
        return (
            self._sender is not None
            or self._bdat is not None
            or self.state is State.DATA
            or self.state is State.CHUNK
        )

    @property
    def awaiting_reply(self) -> Event | None:
        return self._pending

    @property
    def over_soft_error_limit(self) -> bool:
        """Postfix sleeps smtpd_error_sleep_time before each reply past this point."""
        return self.error_count > self.settings.soft_error_limit

    def ehlo_keywords(self) -> list[str]:
        """RFC 5321 §4.1.1.1 extension list, in Postfix's order."""
        s = self.settings
        kw = ["PIPELINING", f"SIZE {s.message_size_limit}" if s.message_size_limit else "SIZE"]
        if not s.vrfy_disabled:
            kw.append("VRFY")
        kw.append("ETRN")
        if s.tls_available and not self.tls_active:
            kw.append("STARTTLS")
        if self._auth_offered():
            kw.append("AUTH " + " ".join(MECHANISMS))
        kw += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]
        if s.smtputf8:
            kw.append("SMTPUTF8")
        kw.append("CHUNKING")  # RFC 3030, last as in Postfix; BINARYMIME is not offered
        return kw

    # -------------------------------------------------------------- internals

    def _auth_offered(self) -> bool:
        s = self.settings
        return s.auth_enabled and (self.tls_active or not s.tls_required_for_auth)

    def _send(self, reply: Reply, *, count: bool = True) -> None:
        self._out += reply.encode()
        if count and reply.code >= 400 and self.state is not State.CLOSED:
            self.error_count += 1
            if self.error_count >= self.settings.hard_error_limit:
                self._out += replies.too_many_errors(self.settings.hostname).encode()
                self._close("too many errors")

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._close_reason = reason
        self._data = None
        self._chunk = None
        self._bdat = None
        self._sasl = None

    def _reset_transaction(self) -> None:
        self._sender = None
        self._recipients = []
        self._bdat = None

    def _data_step(self) -> Event | NeedData | None:
        assert self._data is not None
        result = self._data.result
        if result is None:
            if self._eof:
                self._close("lost connection after DATA")
                return None
            return NEED_DATA
        self._data = None
        self.state = State.COMMAND
        return self._message_end(result.message, too_big=result.too_big, bare_lf=result.bare_lf)

    def _chunk_step(self) -> Event | NeedData | None:
        chunk = self._chunk
        assert chunk is not None
        if not chunk.done:
            if self._eof:
                self._close("lost connection after BDAT")  # nothing is queued
                return None
            return NEED_DATA
        self._chunk = None
        self.state = State.COMMAND
        if chunk.refusal is not None:
            if chunk.last:
                self._reset_transaction()  # Postfix: a refused LAST ends the transaction too
            self._send(chunk.refusal)
            return None
        if not chunk.last:
            self._send(replies.chunk_received(chunk.size))
            return None
        transfer = self._bdat
        assert transfer is not None
        self._bdat = None
        message = transfer.message()
        # smtpd_forbid_bare_newline covers chunk content as it covers DATA: a bare LF
        # anywhere fails the message here, at LAST, once every chunk has been read.
        # Postfix 3.7 takes a bare LF in a chunk as a line end and queues the message;
        # mailroom refuses it, so no later hop can split the lines (or find a message
        # end) where this server did not.
        # The CRLF given to an unended last line counts: no queued message is over the limit.
        limit = self.settings.message_size_limit
        too_big = limit > 0 and len(message) > limit
        return self._message_end(message, too_big=too_big, bare_lf=transfer.bare_lf, chunked=True)

    def _message_end(
        self, message: bytes, *, too_big: bool = False, bare_lf: bool = False, chunked: bool = False
    ) -> Event | None:
        """DATA's end and BDAT LAST share every check, and the MessageReceived event."""
        sender = self._sender
        recipients = tuple(self._recipients)
        if too_big:
            self._reset_transaction()
            self._send(replies.MESSAGE_TOO_BIG)  # RFC 1870 §6.3
        elif _header_size(message) > self.settings.header_size_limit:
            # Postfix truncates an oversized header; mailroom refuses the message
            # rather than deliver a silently altered one (bounded memory either way).
            self._reset_transaction()
            self._send(replies.HEADER_TOO_BIG)
        elif bare_lf:
            self._reset_transaction()
            self._send(replies.BARE_LF_IN_DATA)
        else:
            assert sender is not None
            return MessageReceived(message, sender[0], sender[1], recipients, chunked)
        return None

    def _line_step(self) -> Event | NeedData | None:
        item = self._lines.next_line()
        if item is None:
            if self._eof:
                self._close("lost connection")
                return None
            return NEED_DATA
        if not isinstance(item, Line):
            if self.state is not State.AUTH and _BDAT_LINE.match(item.head):
                # An overlong BDAT line: its count cannot be trusted, so its chunk cannot
                # be skipped, and what follows must never be read as commands.
                self._send(replies.BDAT_SYNTAX, count=False)
                self._close("overlong BDAT command")
                return None
            self._sasl = None if self.state is State.AUTH else self._sasl
            self.state = State.COMMAND
            self._send(replies.LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4
            return None
        # A command line ending in a bare LF (what `openssl s_client` sends as typed, in
        # the guide's dialog) is read as if it ended in CRLF unless the operator chose
        # smtpd_forbid_bare_newline = reject. Smuggling is a DATA problem, and DATA ends
        # only at CRLF.CRLF whatever this setting says.
        if item.bare_lf and self.settings.reject_bare_lf_commands:
            self._send(replies.bare_lf_in_command(self.settings.hostname), count=False)
            self._close("bare LF in command")
            return None
        if self.state is not State.AUTH and _BDAT_LINE.match(item.text):
            # Before the UTF-8 and length checks: whatever else is wrong with the line,
            # the chunk behind it must be read or refused with the session.
            return self._bdat_cmd(item.text)
        try:
            text = item.text.decode("utf-8")
        except UnicodeDecodeError:
            self._send(replies.BAD_UTF8)
            return None
        if self.state is State.AUTH:
            return self._sasl_step(item.text)
        command = parse_command(text)
        if item.wire_length > COMMAND_LINE_LIMIT and command.verb != "AUTH":
            self._send(replies.LINE_TOO_LONG)
            return None
        return self._dispatch(command.verb, command.argument)

    def _dispatch(self, verb: str, arg: str) -> Event | None:
        s = self.settings
        if not verb:
            return self._refuse(replies.BAD_SYNTAX)
        handler = _HANDLERS.get(verb)
        if handler is None:
            return self._refuse(replies.NOT_RECOGNIZED)  # HELP, EXPN, ... like Postfix
        if s.tls_required and not self.tls_active and verb not in PRE_TLS_VERBS:
            return self._refuse(replies.STARTTLS_FIRST)  # RFC 3207 §4
        if verb in _JUNK_VERBS:
            # Postfix: after smtpd_junk_command_limit of these commands, each one more
            # counts as an error (so a client cannot keep a session busy with them).
            if self.junk_commands > s.junk_command_limit:
                self.error_count += 1
            self.junk_commands += 1
        try:
            event: Event | None = handler(self, arg)
        except CommandError as exc:
            event = self._refuse(exc.reply)
        if event is None:
            self._check_hard_limit()
        return event

    def _check_hard_limit(self) -> None:
        """Postfix looks at the error count before it reads the next command: errors
        counted without an error reply (junk commands) end the session there too."""
        if self.state is not State.CLOSED and self.error_count >= self.settings.hard_error_limit:
            self._out += replies.too_many_errors(self.settings.hostname).encode()
            self._close("too many errors")

    def _refuse(self, reply: Reply) -> Event | None:
        """Answer the command ourselves; no event for the adapter."""
        self._send(reply)
        if self.over_soft_error_limit:
            self.delays_owed += 1  # the adapter sleeps before sending it (see delays_owed)
        return None

    def _helo(self, arg: str, extended: bool) -> Event | None:
        if not arg:
            return self._refuse(replies.EHLO_SYNTAX if extended else replies.HELO_SYNTAX)
        return Helo(arg, extended)

    def _mail(self, arg: str) -> Event | None:
        s = self.settings
        if self.helo_name is None and s.helo_required:
            return self._refuse(replies.SEND_HELO_FIRST)  # smtpd_helo_required
        if s.auth_required_for_mail and not self.authenticated_user:
            return self._refuse(replies.AUTH_REQUIRED)  # RFC 4954 §6
        if self._sender is not None:
            return self._refuse(replies.NESTED_MAIL)
        if self._bdat is not None:
            return self._refuse(replies.MAIL_AFTER_BDAT)  # a refused transfer waits for LAST
        path, params = parse_mail(
            arg, message_size_limit=s.message_size_limit, smtputf8_enabled=s.smtputf8
        )
        return MailFrom(path, params)

    def _rcpt(self, arg: str) -> Event | None:
        if self._sender is None:
            return self._refuse(replies.NEED_MAIL)
        if self._bdat is not None:
            return self._refuse(replies.RCPT_AFTER_BDAT)
        path, params = parse_rcpt(arg, smtputf8=self._sender[1].smtputf8)
        if len(self._recipients) >= self.settings.recipient_limit:
            return self._refuse(replies.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.8
        return RcptTo(path, params)

    def _data_cmd(self, arg: str) -> Event | None:
        if self._bdat is not None:
            return self._refuse(replies.DATA_AFTER_BDAT)  # RFC 3030 §2: not mixed in one message
        if arg:
            return self._refuse(replies.DATA_SYNTAX)
        if self._sender is None:
            return self._refuse(replies.NEED_RCPT)
        if not self._recipients:
            return self._refuse(replies.NO_VALID_RECIPIENTS)  # RFC 2920 §3.1
        self._send(replies.START_MAIL_INPUT)
        self.state = State.DATA
        self._data = DataReader(self.settings.message_size_limit, self.settings.forbid_bare_newline)
        rest = self._data.feed(self._lines.take())
        if rest is not None:
            self._lines.feed(rest)
        return None

    def _bdat_cmd(self, line: bytes) -> Event | None:
        """RFC 3030 BDAT: start reading one chunk, to keep or to drop (then reply)."""
        try:
            args = parse_bdat(line.decode("ascii").lstrip(" \t")[4:])
        except UnicodeDecodeError:
            args = None
        if args is None:
            # No count, no framing: the chunk cannot be skipped, so the session ends.
            self._send(replies.BDAT_SYNTAX, count=False)
            self._close("BDAT syntax error")
            return None
        s = self.settings
        transfer = self._bdat
        refusal: Reply | None = None
        if s.tls_required and not self.tls_active:
            # Postfix answers 530 too, but then reads the chunk as commands (it executes a
            # NOOP sent as chunk data). mailroom drops the chunk: its content is never a command.
            refusal = replies.STARTTLS_FIRST
        elif args.size == 0 and not args.last:
            refusal = replies.NULL_BDAT
        elif transfer is not None and transfer.failed:
            refusal = replies.chunk_discarded(args.size)
        elif self._sender is None:
            refusal = replies.NEED_RCPT
        elif not self._recipients:
            refusal = replies.NO_VALID_RECIPIENTS  # RFC 2920 §3.1, as DATA
        elif s.message_size_limit and (transfer.size if transfer else 0) + args.size > s.message_size_limit:
            # Refused by its count, before a byte is kept: memory stays within the limit.
            refusal = replies.CHUNK_TOO_BIG
        if refusal is None:
            if transfer is None:
                transfer = self._bdat = ChunkedMessage(s.forbid_bare_newline)
            chunk = ChunkReader(args, transfer)
        else:
            if not args.last and refusal is not replies.STARTTLS_FIRST:
                # Postfix's error state: the rest of this transfer is read and dropped.
                if transfer is None:
                    self._bdat = ChunkedMessage(s.forbid_bare_newline, failed=True)
                else:
                    transfer.failed = True
            chunk = ChunkReader(args, None, refusal)
        self._chunk = chunk
        self.state = State.CHUNK
        if not chunk.done:
            rest = chunk.feed(self._lines.take())
            if rest:
                self._lines.feed(rest)
        return None

    def _rset(self, arg: str) -> Event | None:
        if arg:
            return self._refuse(replies.RSET_SYNTAX)
        self._reset_transaction()  # RFC 5321 §4.1.1.5
        return self._refuse(replies.OK)

    def _noop(self, arg: str) -> Event | None:
        return self._refuse(replies.OK)  # RFC 5321 §4.1.1.9: the argument is ignored

    def _quit(self, arg: str) -> Event | None:
        self._send(replies.BYE)
        self._close("QUIT")
        return Quit()

    def _vrfy(self, arg: str) -> Event | None:
        if self.settings.vrfy_disabled:
            return self._refuse(replies.VRFY_DISABLED)
        if not arg:
            return self._refuse(replies.VRFY_SYNTAX)
        return Vrfy(arg)

    def _etrn(self, arg: str) -> Event | None:
        if self.helo_name is None:
            return self._refuse(replies.SEND_HELO_FIRST)
        if self._sender is not None:
            return self._refuse(replies.MAIL_IN_PROGRESS)  # RFC 1985 §5
        if not arg or " " in arg:
            return self._refuse(replies.ETRN_SYNTAX)
        domain = arg[1:] if arg[0] in "@#" else arg
        try:
            parse_path(f"<x@{domain}>", allow_utf8=False)
        except AddressError:
            return self._refuse(replies.ETRN_BAD_DOMAIN)
        return Etrn(domain)

    def _starttls(self, arg: str) -> Event | None:
        if arg:
            return self._refuse(replies.STARTTLS_SYNTAX)
        if self.tls_active:
            return self._refuse(replies.TLS_ALREADY_ACTIVE)
        if not self.settings.tls_available:
            return self._refuse(replies.NOT_IMPLEMENTED)
        self._send(replies.READY_TO_START_TLS)
        self._lines.clear()  # RFC 3207 §6: drop anything pipelined behind STARTTLS
        self.state = State.TLS_HANDSHAKE
        return StartTLS()

    def _auth(self, arg: str) -> Event | None:
        s = self.settings
        if not s.auth_enabled:
            return self._refuse(replies.AUTH_NOT_ENABLED)
        if s.tls_required_for_auth and not self.tls_active:
            # smtpd_tls_auth_only: AUTH is not offered, so Postfix answers as if it were off.
            return self._refuse(replies.AUTH_NOT_ENABLED)
        if self.helo_name is None:
            return self._refuse(replies.SEND_HELO_FIRST)
        if self.authenticated_user:
            return self._refuse(replies.ALREADY_AUTHENTICATED)  # RFC 4954 §4
        if self._sender is not None:
            return self._refuse(replies.MAIL_IN_PROGRESS)  # RFC 4954 §4
        words = arg.split(" ")
        if not arg or len(words) > 2:
            return self._refuse(replies.AUTH_SYNTAX)
        self._sasl = Exchange()
        initial = words[1].encode("ascii", "replace") if len(words) == 2 else None
        return self._sasl_result(self._sasl.start(words[0], initial))

    def _sasl_step(self, line: bytes) -> Event | None:
        assert self._sasl is not None
        return self._sasl_result(self._sasl.step(line))

    def _sasl_result(self, step: Challenge | Credentials | Failure) -> Event | None:
        if isinstance(step, Challenge):
            self.state = State.AUTH
            self._send(replies.challenge(step.b64))
            return None
        self.state = State.COMMAND
        self._sasl = None
        if isinstance(step, Credentials):
            return AuthCredentials(step.mechanism, step.authzid, step.username, step.password)
        return self._refuse(_SASL_FAILURES.get(step.kind) or replies.auth_failed())


_SASL_FAILURES = {
    FailureKind.ABORTED: replies.AUTH_ABORTED,
    FailureKind.DECODE: replies.AUTH_CANNOT_DECODE,
    FailureKind.MECHANISM: replies.AUTH_BAD_MECHANISM,
}

_HANDLERS: dict[str, Callable[[ServerConnection, str], Event | None]] = {
    "HELO": lambda c, a: c._helo(a, False),
    "EHLO": lambda c, a: c._helo(a, True),
    "MAIL": ServerConnection._mail,
    "RCPT": ServerConnection._rcpt,
    "DATA": ServerConnection._data_cmd,
    "RSET": ServerConnection._rset,
    "NOOP": ServerConnection._noop,
    "QUIT": ServerConnection._quit,
    "VRFY": ServerConnection._vrfy,
    "ETRN": ServerConnection._etrn,
    "STARTTLS": ServerConnection._starttls,
    "AUTH": ServerConnection._auth,
}


def _header_size(message: bytes) -> int:
    """Bytes before the blank line that ends the header (RFC 5322 §2.1); all of it if none."""
    if message.startswith(b"\r\n"):
        return 0
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2
