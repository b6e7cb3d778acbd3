"""The POP3 server state machine, sans-IO in the manner of h11 (and of smtp/server.py).

Theory of operation
-------------------
The adapter owns the socket and the mailbox; this object owns the protocol. Bytes go
in with `receive_data()` (b"" = EOF); `next_event()` reads ONE command at a time and
either answers it itself (syntax, state, STAT/LIST/UIDL/DELE/RSET from the message
list it was given) or returns an Event. An event with `needs_reply` freezes the core
until the adapter answers it, so pipelined commands (RFC 2449 §6.6 PIPELINING) are
answered strictly in order. Replies collect in a buffer drained by `data_to_send()`.

States (RFC 1939 §3): AUTHORIZATION -> TRANSACTION -> (QUIT) UPDATE, here CLOSED;
SASL while an AUTH exchange runs; TLS_HANDSHAKE after STLS. Deletions are only
marks until a QUIT in TRANSACTION produces `Update`; a session that ends any other
way (EOF, timeout, too many errors) deletes nothing (RFC 1939 §6).

Security choices: with `plaintext_auth_requires_tls` (Dovecot's
disable_plaintext_auth, on by default, no loopback exemption) USER, PASS and AUTH are
refused before TLS and CAPA does not offer them; bytes pipelined behind STLS are
discarded (RFC 2595 §4, as RFC 3207 §6 for SMTP); lines are bounded
(wire/lines.py); repeated errors and failed logins close the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum, auto
from typing import TypeVar

from mailroom.pop3 import framing, replies
from mailroom.pop3.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    Event,
    MessageEntry,
    NeedData,
    Pop3Settings,
    Quit,
    Retrieve,
    StartTLS,
    Update,
)
from mailroom.pop3.replies import Reply
from mailroom.sasl.mechanisms import MECHANISMS, Challenge, Exchange, Failure, FailureKind
from mailroom.sasl.mechanisms import Credentials as SaslCredentials
from mailroom.wire.errors import LocalProtocolError
from mailroom.wire.lines import Line, LineBuffer

# RFC 2449 §4 caps a command at 255 octets but RFC 5034 §4 lets AUTH responses be
# longer; 8 KB holds the largest PLAIN response (3 x 255 octets, base64) many times.
MAX_LINE = 8192
MAX_NUMBER_DIGITS = 10  # message numbers and TOP line counts are 32-bit
MAX_NUMBER = 2**32 - 1
# RFC 2449 §6: CAPA in AUTHORIZATION, as Dovecot answers it.
BASE_CAPABILITIES = ("CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE")


_E = TypeVar("_E", bound=Event)


class State(Enum):
    GREETING = auto()
    AUTHORIZATION = auto()
    SASL = auto()
    TRANSACTION = auto()
    TLS_HANDSHAKE = auto()
    CLOSED = auto()


class _Refused(Exception):
    """A command argument was bad; carries the -ERR to send."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class ServerConnection:
    """One POP3 session. Drive it: initiate(), then receive_data()/next_event() in a loop."""

    def __init__(self, settings: Pop3Settings) -> None:
        self.settings = settings
        self.state = State.GREETING
        self.tls_active = settings.tls_active
        self.username = ""  # the logged-in user (or the USER argument before PASS)
        self.mechanism = ""
        self.bad_commands = 0
        self.auth_failures = 0
        self.messages: list[MessageEntry] = []
        self.deleted: set[int] = set()  # 0-based indexes marked by DELE
        self.retrieved: set[int] = set()  # 0-based indexes sent whole by RETR
        self.stats = {"top": 0, "top_bytes": 0, "retr": 0, "retr_bytes": 0}
        self._out = bytearray()
        self._lines = LineBuffer(MAX_LINE)
        self._eof = False
        self._pending: Event | None = None
        self._close_reason = ""
        self._sasl: Exchange | None = None
        self._user_arg: str | None = None

    # ------------------------------------------------------------ adapter API
    def initiate(self) -> bytes:
        if self.state is not State.GREETING:
            raise LocalProtocolError("initiate() called twice")
        self.state = State.AUTHORIZATION
        self._send(replies.greeting(self.settings.greeting))
        return self.data_to_send()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes as they arrived; b"" means the client closed its side."""
        if not data:
            self._eof = True
        elif self.state in (State.TLS_HANDSHAKE, State.CLOSED):
            return  # RFC 2595 §4: nothing sent in plaintext after STLS is trusted
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
            event = self._line_step()
            if isinstance(event, NeedData):
                return event
            if event is not None:
                if event.needs_reply:
                    self._pending = event
                return event

    def accept_login(self, messages: Sequence[MessageEntry]) -> None:
        """Credentials were good and the maildrop is open: enter TRANSACTION."""
        event = self._take(Credentials)
        self.username, self.mechanism = event.username, event.mechanism
        self.messages = list(messages)
        self.state = State.TRANSACTION
        self._send(replies.LOGGED_IN)

    def reject_login(self, *, temporary: bool = False) -> None:
        """Wrong credentials (or a backend outage when `temporary`)."""
        self._take(Credentials)
        self.username = ""
        self.auth_failures += 1
        self._send(replies.AUTH_TEMP_FAILED if temporary else replies.AUTH_FAILED, count=False)
        if self.auth_failures >= self.settings.max_auth_failures:
            self._send(replies.AUTH_TOO_MANY_FAILURES, count=False)
            self._close("too many authentication failures")

    def login_unavailable(self) -> None:
        """Good credentials but the maildrop cannot be opened: answer and close (as Dovecot)."""
        self._take(Credentials)
        self._send(replies.INTERNAL_ERROR, count=False)
        self._close("mailbox unavailable")

    def send_message(self, data: bytes) -> None:
        """Answer Retrieve with the message's stored bytes (any line ends)."""
        event = self._take(Retrieve)
        index = event.number - 1
        size = self.messages[index].size
        body = framing.message(data, event.body_lines)
        if event.body_lines is None:
            self._send(replies.retr_header(size))
            self.retrieved.add(index)
            self.stats["retr"] += 1
            self.stats["retr_bytes"] += size
        else:
            self._send(replies.OK)
            self.stats["top"] += 1
            self.stats["top_bytes"] += len(body)
        self._out += body

    def message_unavailable(self) -> None:
        """Answer Retrieve: the message vanished (expunged by another session)."""
        self._take(Retrieve)
        self._send(replies.MESSAGE_EXPUNGED)

    def accept(self) -> None:
        """Answer Update: the deletions are done; say goodbye and close."""
        event = self._take(Update)
        self._send(replies.LOGGING_OUT_DELETED if event.deleted else replies.LOGGING_OUT, count=False)
        self._close("QUIT")

    def update_failed(self) -> None:
        """Answer Update: the store failed; RFC 1939 §6 wants -ERR, then close."""
        self._take(Update)
        self._send(replies.INTERNAL_ERROR, count=False)
        self._close("QUIT (update failed)")

    def tls_started(self) -> None:
        """The STLS handshake succeeded: forget everything said before it (RFC 2595 §4)."""
        if self.state is not State.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_started() without STLS")
        self.state = State.AUTHORIZATION
        self.tls_active = True
        self._user_arg = None
        self._lines.clear()

    def timeout(self) -> bytes:
        """The idle timer expired: the -ERR to send before closing (no UPDATE, RFC 1939 §3)."""
        self._pending = None
        if self.state is not State.CLOSED:
            self._send(replies.INACTIVITY, count=False)
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
    def awaiting_reply(self) -> Event | None:
        return self._pending

    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPABILITIES)
        if self.state is State.TRANSACTION:
            return caps
        if self.settings.tls_available and not self.tls_active:
            caps.append("STLS")
        if self._plaintext_allowed():
            caps += ["USER", "SASL " + " ".join(MECHANISMS)]
        return caps

    # -------------------------------------------------------------- internals
    def _take(self, kind: type[_E]) -> _E:
        event, self._pending = self._pending, None
        if not isinstance(event, kind):
            self._pending = event
            raise LocalProtocolError(f"no {kind.__name__} is waiting for an answer")
        return event

    def _plaintext_allowed(self) -> bool:
        return self.tls_active or not self.settings.plaintext_auth_requires_tls

    def _send(self, reply: Reply, *, count: bool = True) -> None:
        self._out += reply.encode()
        if count and not reply.ok and self.state is not State.CLOSED:
            self.bad_commands += 1
            if self.bad_commands >= self.settings.max_bad_commands:
                self._out += replies.TOO_MANY_BAD_COMMANDS.encode()
                self._close("too many bad commands")

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._close_reason = reason
        self._sasl = None

    def _line_step(self) -> Event | NeedData | None:
        item = self._lines.next_line()
        if item is None:
            if self._eof:
                self._close("lost connection")
                return None
            return NEED_DATA
        if not isinstance(item, Line):
            self._sasl = None
            if self.state is State.SASL:
                self.state = State.AUTHORIZATION
            self._send(replies.LINE_TOO_LONG)
            return None
        if self.state is State.SASL:
            return self._sasl_result(self._sasl_step(item.text))
        text = item.text.decode("utf-8", "replace")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        table = _TRANSACTION if self.state is State.TRANSACTION else _AUTHORIZATION
        handler = table.get(verb)
        if handler is None:
            if self.state is State.TRANSACTION:
                self._send(replies.unknown_command(verb[:40]))
            else:
                self._send(replies.UNKNOWN_COMMAND_AUTH)
            return None
        try:
            return handler(self, arg)
        except _Refused as refused:
            self._send(refused.reply)
            return None

    # ---------------------------------------------------------- AUTHORIZATION
    def _capa(self, arg: str) -> Event | None:
        self._send(replies.OK)
        self._out += framing.multiline(self.capabilities())
        return None

    def _stls(self, arg: str) -> Event | None:
        if self.tls_active:
            raise _Refused(replies.TLS_ALREADY_ACTIVE)
        if not self.settings.tls_available:
            raise _Refused(replies.TLS_NOT_AVAILABLE)
        self._send(replies.BEGIN_TLS)
        self._lines.clear()  # RFC 2595 §4: drop anything pipelined behind STLS
        self.state = State.TLS_HANDSHAKE
        return StartTLS()

    def _user(self, arg: str) -> Event | None:
        if not self._plaintext_allowed():
            raise _Refused(replies.PLAINTEXT_DISALLOWED)
        if not arg:
            raise _Refused(replies.NO_USERNAME)
        self._user_arg = arg
        self._send(replies.OK)
        return None

    def _pass(self, arg: str) -> Event | None:
        if not self._plaintext_allowed():
            raise _Refused(replies.PLAINTEXT_DISALLOWED)
        if self._user_arg is None:
            raise _Refused(replies.NO_USERNAME)
        username, self._user_arg = self._user_arg, None
        return Credentials("PLAIN", username, arg)  # RFC 1939 §7: the password may hold spaces

    def _auth(self, arg: str) -> Event | None:
        if not arg:  # a listing of mechanisms, as Dovecot and most servers answer
            self._send(replies.OK)
            self._out += framing.multiline(list(MECHANISMS) if self._plaintext_allowed() else [])
            return None
        if not self._plaintext_allowed():
            raise _Refused(replies.PLAINTEXT_DISALLOWED)  # PLAIN and LOGIN are both plaintext
        words = arg.split(" ")
        if len(words) > 2:
            raise _Refused(replies.AUTH_FAILED)
        self._sasl = Exchange()
        initial = words[1].encode("ascii", "replace") if len(words) == 2 else None
        return self._sasl_result(self._sasl.start(words[0], initial))

    def _sasl_step(self, line: bytes) -> Challenge | SaslCredentials | Failure:
        assert self._sasl is not None
        return self._sasl.step(line)

    def _sasl_result(self, step: Challenge | SaslCredentials | Failure) -> Event | None:
        if isinstance(step, Challenge):
            self.state = State.SASL
            self._out += replies.challenge(step.b64)
            return None
        self.state = State.AUTHORIZATION
        self._sasl = None
        if isinstance(step, SaslCredentials):
            return Credentials(step.mechanism, step.username, step.password)
        if step.kind is FailureKind.ABORTED:
            self._send(replies.AUTH_ABORTED)
        elif step.kind is FailureKind.MECHANISM:
            self._send(replies.AUTH_UNSUPPORTED)
        else:
            self._send(replies.AUTH_FAILED)
        return None

    def _quit_auth(self, arg: str) -> Event | None:
        self._send(replies.LOGGING_OUT_AUTH, count=False)
        self._close("QUIT")
        return Quit()

    # ------------------------------------------------------------ TRANSACTION
    def _number(self, arg: str, *, then_space: bool) -> tuple[int, str]:
        """Dovecot's get_msgnum(): a live message's 0-based index and the text after it."""
        digits = len(arg) - len(arg.lstrip("0123456789"))
        if digits == 0:
            raise _Refused(replies.invalid_number(arg[:40]))
        if digits > MAX_NUMBER_DIGITS or int(arg[:digits]) > MAX_NUMBER:
            raise _Refused(replies.number_too_large(arg[:40]))
        number, rest = int(arg[:digits]), arg[digits:]
        if (rest[:1] != " ") if then_space else rest:
            raise _Refused(replies.noise_after_number(rest[:40]))
        if not 0 < number <= len(self.messages):
            raise _Refused(replies.no_such_message(number))
        if number - 1 in self.deleted:
            raise _Refused(replies.MESSAGE_DELETED)
        return number - 1, rest[1:]

    def _live(self) -> list[int]:
        return [i for i in range(len(self.messages)) if i not in self.deleted]

    def _stat(self, arg: str) -> Event | None:
        live = self._live()
        self._send(replies.stat(len(live), sum(self.messages[i].size for i in live)))
        return None

    def _list(self, arg: str) -> Event | None:
        if arg:
            index, _ = self._number(arg, then_space=False)
            self._send(replies.scan_line(index + 1, self.messages[index].size))
            return None
        live = self._live()
        self._send(replies.list_header(len(live)))
        self._out += framing.multiline([f"{i + 1} {self.messages[i].size}" for i in live])
        return None

    def _uidl(self, arg: str) -> Event | None:
        if arg:
            index, _ = self._number(arg, then_space=False)
            self._send(replies.scan_line(index + 1, self.messages[index].uidl))
            return None
        self._send(replies.OK)
        self._out += framing.multiline([f"{i + 1} {self.messages[i].uidl}" for i in self._live()])
        return None

    def _retr(self, arg: str) -> Event | None:
        index, _ = self._number(arg, then_space=False)
        return Retrieve(index + 1, None)

    def _top(self, arg: str) -> Event | None:
        index, rest = self._number(arg, then_space=True)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits == 0:
            raise _Refused(replies.invalid_size(rest[:40]))
        if digits > MAX_NUMBER_DIGITS or int(rest[:digits]) > MAX_NUMBER:
            raise _Refused(replies.size_too_large(rest[:40]))
        if rest[digits:]:
            raise _Refused(replies.noise_after_size(rest[digits:][:40]))
        return Retrieve(index + 1, int(rest[:digits]))

    def _dele(self, arg: str) -> Event | None:
        index, _ = self._number(arg, then_space=False)
        self.deleted.add(index)
        self._send(replies.MARKED_DELETED)
        return None

    def _rset(self, arg: str) -> Event | None:
        self.deleted.clear()  # RFC 1939 §5: unmark every message
        self._send(replies.OK)
        return None

    def _noop(self, arg: str) -> Event | None:
        self._send(replies.OK)
        return None

    def _quit_transaction(self, arg: str) -> Event | None:
        return Update(tuple(sorted(i + 1 for i in self.deleted)),
                      tuple(sorted(i + 1 for i in self.retrieved - self.deleted)))


_Handler = Callable[[ServerConnection, str], Event | None]

_AUTHORIZATION: dict[str, _Handler] = {
    "CAPA": ServerConnection._capa,
    "STLS": ServerConnection._stls,
    "USER": ServerConnection._user,
    "PASS": ServerConnection._pass,
    "AUTH": ServerConnection._auth,
    "QUIT": ServerConnection._quit_auth,
}

_TRANSACTION: dict[str, _Handler] = {
    "CAPA": ServerConnection._capa,
    "STAT": ServerConnection._stat,
    "LIST": ServerConnection._list,
    "UIDL": ServerConnection._uidl,
    "RETR": ServerConnection._retr,
    "TOP": ServerConnection._top,
    "DELE": ServerConnection._dele,
    "RSET": ServerConnection._rset,
    "NOOP": ServerConnection._noop,
    "QUIT": ServerConnection._quit_transaction,
}
