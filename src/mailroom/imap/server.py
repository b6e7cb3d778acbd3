"""The IMAP4rev1 server state machine (RFC 3501 §3), sans-IO in the manner of pop3/server.py.

Theory of operation
-------------------
Bytes go in with `receive_data()` (b"" = EOF); `next_event()` frames ONE command
(grammar.py) and answers what needs no store itself: syntax errors, commands in the
wrong state, CAPABILITY, NOOP before login, LOGOUT, STARTTLS, ID, NAMESPACE, ENABLE.
LOGIN/AUTHENTICATE return `Credentials`; commands that touch mailboxes return
`Execute`, and the adapter calls `execute()` in a worker thread, which talks to the
`Backend` (backend.py) and queues the answers. Pipelined commands are answered in
order because an event that needs a reply freezes the core.

States: NOT_AUTHENTICATED -> AUTHENTICATED <-> SELECTED -> LOGOUT (CLOSED), plus
SASL (an AUTHENTICATE exchange), IDLE and TLS_HANDSHAKE. The selected mailbox is a
view (UIDs in sequence order, their flags); `_refresh()` compares it with the store
and reports other sessions' changes as untagged EXISTS / EXPUNGE / FETCH FLAGS.

Security: with `plaintext_auth_requires_tls` LOGIN and AUTHENTICATE are refused
before TLS and CAPABILITY says LOGINDISABLED; bytes pipelined behind STARTTLS are
discarded (RFC 3501 §6.2.1); command text, literals (smaller before login) and
repeated errors are bounded.
"""

from __future__ import annotations

import calendar
import functools
import re
from bisect import bisect_left
from collections.abc import Callable
from enum import Enum, auto
from typing import NamedTuple, TypeVar

from mailroom.imap import grammar, mime
from mailroom.imap.backend import (
    QUOTA_ROOT,
    SEPARATOR,
    SPECIAL_USE,
    Backend,
    Mailbox,
    MailboxError,
    MessageMeta,
    QuotaBackend,
)
from mailroom.imap.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    Event,
    Execute,
    Idling,
    ImapSettings,
    NeedData,
    StartTLS,
)
from mailroom.imap.grammar import Command, Continue, Invalid, Value
from mailroom.imap.responses import astring, flag_list, internal_date, string
from mailroom.imap.search import Candidate, Context, SearchError, parse_search
from mailroom.imap.sequence import SequenceError, format_set, parse_set, resolve_seq, resolve_uids
from mailroom.sasl.mechanisms import Challenge, Exchange, Failure, FailureKind
from mailroom.sasl.mechanisms import Credentials as SaslCredentials
from mailroom.wire.errors import LocalProtocolError

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_RECENT = frozenset({"\\Recent"})
_SYSTEM_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
PRE_LOGIN_CAPS = ("IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+")
CAPABILITIES = ("IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "UNSELECT",
                "CHILDREN", "NAMESPACE", "UIDPLUS", "MOVE", "SPECIAL-USE", "LITERAL+")
MAX_FLAGS = 100  # flags in one STORE/APPEND
_FETCH_ATT = re.compile(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?$")
_DATE_TIME = re.compile(r"^([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}


_E = TypeVar("_E", bound=Event)


class State(Enum):
    GREETING = auto()
    NOT_AUTHENTICATED = auto()
    AUTHENTICATED = auto()
    SELECTED = auto()
    CLOSED = auto()


class _Bad(Exception):
    """Answer `tag BAD text`."""


class _No(Exception):
    """Answer `tag NO text`."""


def _text(value: Value, what: str = "argument") -> str:
    if isinstance(value, list):
        raise _Bad(f"Invalid {what}.")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _mailbox_name(value: Value) -> str:
    name = _text(value, "mailbox name")
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX" + SEPARATOR):
        return "INBOX" + name[5:]
    return name


def _parse_date_time(text: str) -> float:
    m = _DATE_TIME.match(text)
    if m is None or m.group(2).lower() not in _MONTHS:
        raise _Bad("Invalid date-time.")
    day, mon, year, hh, mm, ss = (int(m.group(1)), _MONTHS[m.group(2).lower()], int(m.group(3)),
                                  int(m.group(4)), int(m.group(5)), int(m.group(6)))
    try:
        stamp = calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0))
        import datetime as dt
        dt.datetime(year, mon, day, hh, mm, ss)
    except (ValueError, OverflowError):
        raise _Bad("Invalid date-time.") from None
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    return float(stamp - offset if m.group(7) == "+" else stamp + offset)


def _flags(values: list[Value], *, storing: bool) -> frozenset[str]:
    if len(values) > MAX_FLAGS:
        raise _Bad("Too many flags.")
    out: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value:
            raise _Bad("Invalid flag.")
        if value.startswith("\\"):
            system = _SYSTEM_LOWER.get(value.lower())
            if system is None:
                if value.lower() == "\\recent":
                    continue  # not storable; Dovecot ignores it
                raise _Bad(f"Invalid system flag {value[:30]}.")
            out.add(system)
        elif all(0x20 < ord(c) < 0x7F and c not in '(){%*"\\]' for c in value) and len(value) <= 128:
            out.add(value)
        else:
            raise _Bad("Invalid keyword.")
    return frozenset(out)


class ServerConnection:
    """One IMAP session. Drive it: initiate(), then receive_data()/next_event() in a loop."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.state = State.GREETING
        self.tls_active = settings.tls_active
        self.username = ""
        self.mechanism = ""
        self.backend: Backend | None = None
        self.mailbox: Mailbox | None = None
        self.readonly = False
        self.uids: list[int] = []  # sequence number - 1 -> UID
        self.meta: dict[int, MessageMeta] = {}
        self.recent: set[int] = set()
        self._last_sync: list[MessageMeta] | None = None  # the backend's last answer, by identity
        self._expunges_held = False  # a refresh that may not announce EXPUNGE saw some
        self.bad_commands = 0
        self.auth_failures = 0
        self.last_error: BaseException | None = None  # an unexpected error in execute(), for the log
        self._reader = grammar.CommandReader()
        self._out = bytearray()
        self._eof = False
        self._tls_handshake = False
        self._pending: Event | None = None
        self._command: Command | None = None
        self._close_reason = ""
        self._sasl: Exchange | None = None
        self._sasl_tag = ""
        self._idle_tag: str | None = None

    # ------------------------------------------------------------ adapter API
    def initiate(self) -> bytes:
        if self.state is not State.GREETING:
            raise LocalProtocolError("initiate() called twice")
        self.state = State.NOT_AUTHENTICATED
        self._line(f"* OK [CAPABILITY {' '.join(self.capabilities())}] {self.settings.greeting}")
        return self.data_to_send()

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif self._tls_handshake or self.state is State.CLOSED:
            return  # RFC 3501 §6.2.1: nothing sent in plaintext after STARTTLS is trusted
        else:
            self._reader.feed(data)

    def next_event(self) -> Event | NeedData:
        if self._pending is not None:
            raise LocalProtocolError(f"answer {type(self._pending).__name__} first")
        if self.state is State.GREETING:
            raise LocalProtocolError("call initiate() first")
        while True:
            if self.state is State.CLOSED:
                return ConnectionClosed(self._close_reason)
            if self._tls_handshake:
                return NEED_DATA
            event = self._step()
            if isinstance(event, NeedData):
                return event
            if event is not None:
                if event.needs_reply:
                    self._pending = event
                return event

    @property
    def idling(self) -> bool:
        return self._idle_tag is not None and self.state is not State.CLOSED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def awaiting_reply(self) -> Event | None:
        return self._pending

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def capabilities(self) -> list[str]:
        if self.state in (State.AUTHENTICATED, State.SELECTED):
            return list(CAPABILITIES) + (["QUOTA"] if isinstance(self.backend, QuotaBackend) else [])
        caps = list(PRE_LOGIN_CAPS)
        if self.settings.tls_available and not self.tls_active:
            caps.append("STARTTLS")
        if self._plaintext_allowed():
            caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
        else:
            caps.append("LOGINDISABLED")
        return caps

    def accept_login(self, backend: Backend) -> None:
        event = self._take(Credentials)
        self.username, self.mechanism = event.username, event.mechanism
        self.backend = backend
        self.state = State.AUTHENTICATED
        self._reader.literal_limit = grammar.MAX_LITERAL
        self._line(f"{self._sasl_tag} OK [CAPABILITY {' '.join(self.capabilities())}] Logged in")

    def reject_login(self, *, temporary: bool = False) -> None:
        self._take(Credentials)
        self.auth_failures += 1
        if temporary:
            self._line(f"{self._sasl_tag} NO [UNAVAILABLE] Temporary authentication failure.")
        else:
            self._line(f"{self._sasl_tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
        if self.auth_failures >= self.settings.max_auth_failures:
            self._line("* BYE Too many authentication failures.")
            self._close("too many authentication failures")

    def login_unavailable(self) -> None:
        """Good credentials but the store cannot be opened."""
        self._take(Credentials)
        self._line(f"{self._sasl_tag} NO [SERVERBUG] Internal error occurred. Refer to server log for more information.")

    def tls_started(self) -> None:
        if not self._tls_handshake:
            raise LocalProtocolError("tls_started() without STARTTLS")
        self._tls_handshake = False
        self.tls_active = True
        self._reader.clear()

    def execute(self, *, inline: bool = False) -> bool:
        """Answer Execute: run the command against the backend (blocking).

        With `inline`, a small read-only command is tried without waiting for the disk
        (Mailbox.nowait, see imap.backend); if the store would have to wait, nothing is
        changed or sent and False comes back: call again without `inline` in a thread.
        """
        event = self._take(Execute)
        command, self._command = self._command, None
        assert command is not None
        mailbox = self.mailbox if inline and command.name in _INLINE and self.state is State.SELECTED else None
        if inline and mailbox is None:
            self._pending, self._command = event, command
            return False
        mark = len(self._out)
        if mailbox is not None:
            mailbox.nowait = True
        handler = _STORE_COMMANDS[command.name]
        try:
            text = handler(self, command)
            if self.state is State.SELECTED and command.name not in _NO_REFRESH:
                self._refresh(expunges=command.name not in _NO_EXPUNGE)
            self._line(f"{event.tag} OK {text}")
        except BlockingIOError:
            if not inline:
                raise
            del self._out[mark:]  # inline commands change no state before they would block
            self._pending, self._command = event, command
            return False
        except _Bad as exc:
            self._bad(event.tag, str(exc))
        except _No as exc:
            self._line(f"{event.tag} NO {exc}")
        except MailboxError as exc:
            code = f"[{exc.code}] " if exc.code else ""
            self._line(f"{event.tag} NO {code}{exc.text}")
        except Exception as exc:  # a store failure: answer, keep the session, let the adapter log it
            self.last_error = exc
            self._line(f"{event.tag} NO [SERVERBUG] Internal error occurred. Refer to server log for more information.")
        finally:
            if mailbox is not None:
                mailbox.nowait = False
        return True

    def idle_poll(self, *, inline: bool = False) -> bool:
        """While idling: report what changed in the selected mailbox (blocking). With
        `inline`, False means the store would have to wait: poll again in a thread."""
        if not (self.idling and self.state is State.SELECTED and self.mailbox is not None):
            return True
        mailbox = self.mailbox
        mailbox.nowait = inline
        try:
            self._refresh(expunges=True)
        except BlockingIOError:
            if not inline:
                self.last_error = OSError("the mailbox asked to wait outside an inline poll")
            return not inline  # _refresh asks the store first: nothing changed yet
        except Exception as exc:
            self.last_error = exc
        finally:
            mailbox.nowait = False
        return True

    def timeout(self) -> bytes:
        self._pending = None
        if self.state is not State.CLOSED:
            self._line("* BYE Disconnected for inactivity.")
            self._close("timeout")
        return self.data_to_send()

    def shutdown(self) -> bytes:
        if self.state is not State.CLOSED:
            self._line("* BYE Server shutting down.")
            self._close("shutdown")
        return self.data_to_send()

    # -------------------------------------------------------------- internals
    def _take(self, kind: type[_E]) -> _E:
        event, self._pending = self._pending, None
        if not isinstance(event, kind):
            self._pending = event
            raise LocalProtocolError(f"no {kind.__name__} is waiting for an answer")
        return event

    def _plaintext_allowed(self) -> bool:
        return self.tls_active or not self.settings.plaintext_auth_requires_tls

    def _line(self, text: str) -> None:
        self._out += text.encode("utf-8") + b"\r\n"

    def _bad(self, tag: str, text: str) -> None:
        self._line(f"{tag} BAD {text}")
        self.bad_commands += 1
        if self.bad_commands >= self.settings.max_bad_commands and self.state is not State.CLOSED:
            self._line("* BYE Too many invalid IMAP commands.")
            self._close("too many bad commands")

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._close_reason = reason
        self._sasl = None
        self._idle_tag = None

    def _step(self) -> Event | NeedData | None:
        if self._sasl is not None or self._idle_tag is not None:
            line = self._reader.take_line()
            if line is None:
                if self._eof:
                    self._close("lost connection")
                    return None
                return NEED_DATA
            if self._sasl is not None:
                return self._sasl_result(self._sasl.step(line))
            tag, self._idle_tag = self._idle_tag, None
            if line.upper() == b"DONE":
                self._line(f"{tag} OK Idle completed.")
            else:
                self._bad(tag or "*", "Expected DONE.")
            return None
        item = self._reader.next()
        if item is None:
            if self._eof:
                self._close("lost connection")
                return None
            return NEED_DATA
        if isinstance(item, Continue):
            self._line("+ OK")
            return None
        if isinstance(item, Invalid):
            self._bad(item.tag, f"Error in IMAP command: {item.text}")
            return None
        return self._dispatch(item)

    def _dispatch(self, command: Command) -> Event | None:
        name = command.name
        try:
            core = _CORE_COMMANDS.get(name)
            if core is not None:
                return core(self, command)
            if name in _STORE_COMMANDS:
                if self.state is State.NOT_AUTHENTICATED:
                    raise _Bad("Not logged in.")
                if name in _SELECTED_ONLY and self.state is not State.SELECTED:
                    raise _Bad("No mailbox selected.")
                self._command = command
                return Execute(command.tag, name)
            raise _Bad(f"Error in IMAP command {name[:30]}: Unknown command.")
        except _Bad as exc:
            self._bad(command.tag, str(exc))
        except _No as exc:
            self._line(f"{command.tag} NO {exc}")
        return None

    # ------------------------------------------------------------ any state
    def _capability(self, command: Command) -> Event | None:
        self._line("* CAPABILITY " + " ".join(self.capabilities()))
        self._line(f"{command.tag} OK Capability completed.")
        return None

    def _noop(self, command: Command) -> Event | None:
        if self.state is State.SELECTED:
            self._command = command
            return Execute(command.tag, "NOOP")
        self._line(f"{command.tag} OK NOOP completed.")
        return None

    def _logout(self, command: Command) -> Event | None:
        self._line("* BYE Logging out")
        self._line(f"{command.tag} OK Logout completed.")
        self._close("LOGOUT")
        return None

    def _id(self, command: Command) -> Event | None:
        if len(command.args) != 1 or not (command.args[0] == "NIL" or isinstance(command.args[0], list)):
            raise _Bad("Invalid ID parameters.")
        self._line('* ID ("name" "mailroom")')
        self._line(f"{command.tag} OK ID completed.")
        return None

    # ---------------------------------------------------- not authenticated
    def _require_logged_out(self) -> None:
        if self.state is not State.NOT_AUTHENTICATED:
            raise _Bad("Already logged in.")

    def _starttls(self, command: Command) -> Event | None:
        self._require_logged_out()
        if self.tls_active:
            raise _Bad("TLS is already active.")
        if not self.settings.tls_available:
            raise _Bad("TLS support isn't enabled.")
        self._line(f"{command.tag} OK Begin TLS negotiation now.")
        self._reader.clear()  # RFC 3501 §6.2.1: drop anything pipelined behind STARTTLS
        self._tls_handshake = True
        return StartTLS()

    def _login(self, command: Command) -> Event | None:
        self._require_logged_out()
        if len(command.args) != 2:
            raise _Bad("Invalid arguments.")
        if not self._plaintext_allowed():
            raise _No("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
        user, password = (_text(a) for a in command.args)
        self._sasl_tag = command.tag
        return Credentials("LOGIN", user, password)

    def _authenticate(self, command: Command) -> Event | None:
        self._require_logged_out()
        if not 1 <= len(command.args) <= 2 or not all(isinstance(a, str) for a in command.args):
            raise _Bad("Invalid arguments.")
        if not self._plaintext_allowed():
            raise _No("[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
        mechanism = _text(command.args[0])
        initial = _text(command.args[1]).encode("ascii", "replace") if len(command.args) == 2 else None
        self._sasl = Exchange()
        self._sasl_tag = command.tag
        return self._sasl_result(self._sasl.start(mechanism, initial))

    def _sasl_result(self, step: Challenge | SaslCredentials | Failure) -> Event | None:
        if isinstance(step, Challenge):
            self._line("+ " + step.b64)
            return None
        self._sasl = None
        if isinstance(step, SaslCredentials):
            return Credentials(step.mechanism, step.username, step.password)
        if step.kind is FailureKind.ABORTED:
            self._bad(self._sasl_tag, "Authentication aborted by client.")
        elif step.kind is FailureKind.MECHANISM:
            self._line(f"{self._sasl_tag} NO Unsupported authentication mechanism.")
        elif step.kind is FailureKind.DECODE:
            self._bad(self._sasl_tag, "Invalid base64 data in continued response")
        else:
            self.auth_failures += 1
            self._line(f"{self._sasl_tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
        return None

    # ------------------------------------------------- authenticated, no store
    def _require_login(self) -> None:
        if self.state not in (State.AUTHENTICATED, State.SELECTED):
            raise _Bad("Not logged in.")

    def _namespace(self, command: Command) -> Event | None:
        self._require_login()
        self._line(f'* NAMESPACE (("" "{SEPARATOR}")) NIL NIL')
        self._line(f"{command.tag} OK Namespace completed.")
        return None

    def _enable(self, command: Command) -> Event | None:
        self._require_login()
        if not command.args or not all(isinstance(a, str) for a in command.args):
            raise _Bad("Invalid arguments.")
        self._line("* ENABLED")  # nothing we offer needs enabling (no CONDSTORE, no UTF8=ACCEPT)
        self._line(f"{command.tag} OK Enabled.")
        return None

    def _idle(self, command: Command) -> Event | None:
        self._require_login()
        if command.args:
            raise _Bad("Invalid arguments.")
        self._idle_tag = command.tag
        self._line("+ idling")
        return Idling()

    # ------------------------------------------------------ store commands
    def _backend(self) -> Backend:
        assert self.backend is not None
        return self.backend

    def _selected(self) -> Mailbox:
        assert self.mailbox is not None
        return self.mailbox

    def _refresh(self, *, expunges: bool) -> None:
        mailbox = self._selected()
        listed = mailbox.sync()
        if listed is self._last_sync and not (expunges and self._expunges_held):
            return  # the backend says nothing changed: skip comparing every message
        self._last_sync = listed
        current = {m.uid: m for m in listed}
        self._expunges_held = not expunges and any(uid not in current for uid in self.uids)
        if expunges:
            for index in range(len(self.uids) - 1, -1, -1):
                uid = self.uids[index]
                if uid not in current:
                    self._line(f"* {index + 1} EXPUNGE")
                    del self.uids[index]
                    self.meta.pop(uid, None)
                    self.recent.discard(uid)
        top = self.uids[-1] if self.uids else 0
        new = sorted(uid for uid in current if uid > top)
        for index, uid in enumerate(self.uids):
            meta = current.get(uid)
            if meta is not None and meta.flags != self.meta[uid].flags:
                self.meta[uid] = meta
                self._line(f"* {index + 1} FETCH (FLAGS {self._flags_of(uid).decode()})")
        if new:
            for uid in new:
                self.uids.append(uid)
                self.meta[uid] = current[uid]
                if current[uid].recent:
                    self.recent.add(uid)
            self._line(f"* {len(self.uids)} EXISTS")
            self._line(f"* {len(self.recent)} RECENT")

    def _number(self, uid: int) -> int:
        """The message number of a listed UID: self.uids ascends, so a bisection (not a
        10,000-entry map per command) finds it."""
        return bisect_left(self.uids, uid) + 1

    def _flags_of(self, uid: int) -> bytes:
        flags = self.meta[uid].flags
        return flag_list(flags | _RECENT if uid in self.recent else flags)

    def _unselect(self) -> None:
        self.mailbox = None
        self.uids, self.meta, self.recent = [], {}, set()
        self._last_sync, self._expunges_held = None, False
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def _select(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(command.args[0])
        self._unselect()  # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected
        mailbox = self._backend().open(name, readonly=command.name == "EXAMINE")
        messages = mailbox.sync()
        self.mailbox, self.readonly = mailbox, command.name == "EXAMINE"
        self.state = State.SELECTED
        self.uids = [m.uid for m in messages]
        self.meta = {m.uid: m for m in messages}
        self._last_sync = messages
        keywords = sorted({f for m in messages for f in m.flags if not f.startswith("\\")})
        flags = " ".join([*SYSTEM_FLAGS, *keywords])
        self._line(f"* FLAGS ({flags})")
        if self.readonly:
            self._line("* OK [PERMANENTFLAGS ()] Read-only mailbox.")
        else:
            self._line(f"* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.")
        self._line(f"* {len(self.uids)} EXISTS")
        self.recent = {m.uid for m in messages if m.recent}
        self._line(f"* {len(self.recent)} RECENT")
        unseen = next((i + 1 for i, uid in enumerate(self.uids) if "\\Seen" not in self.meta[uid].flags), None)
        if unseen is not None:
            self._line(f"* OK [UNSEEN {unseen}] First unseen.")
        self._line(f"* OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid")
        self._line(f"* OK [UIDNEXT {mailbox.uidnext}] Predicted next UID")
        return ("[READ-ONLY] Examine" if self.readonly else "[READ-WRITE] Select") + " completed."

    def _create(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(command.args[0]).removesuffix(SEPARATOR)
        if any(c in name for c in "%*") or not name:
            raise _No("Invalid mailbox name.")
        self._backend().create(name)
        return "Create completed."

    def _delete(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(command.args[0])
        if self.mailbox is not None and self.mailbox.name == name:
            self._unselect()  # Dovecot: deleting the selected mailbox closes it
        self._backend().delete(name)
        return "Delete completed."

    def _rename(self, command: Command) -> str:
        if len(command.args) != 2:
            raise _Bad("Invalid arguments.")
        old, new = (_mailbox_name(a) for a in command.args)
        if any(c in new for c in "%*") or not new:
            raise _No("Invalid mailbox name.")
        self._backend().rename(old, new)
        return "Rename completed."

    def _subscribe(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        self._backend().set_subscribed(_mailbox_name(command.args[0]), command.name == "SUBSCRIBE")
        return ("Subscribe" if command.name == "SUBSCRIBE" else "Unsubscribe") + " completed."

    def _list(self, command: Command) -> str:
        args = list(command.args)
        special_only = False
        if args and isinstance(args[0], list):  # RFC 5258 selection options
            selection = args.pop(0)
            assert isinstance(selection, list)
            options = [_text(a).upper() for a in selection]
            special_only = "SPECIAL-USE" in options
        if len(args) >= 4 and isinstance(args[2], str) and args[2].upper() == "RETURN":
            args = args[:2]  # RETURN (SPECIAL-USE) / (CHILDREN): always shown anyway
        if len(args) != 2:
            raise _Bad("Invalid arguments.")
        reference, pattern = _text(args[0]), _text(args[1])
        verb = "LSUB" if command.name == "LSUB" else "LIST"
        if verb == "LIST" and not pattern:
            self._line(f'* LIST (\\Noselect) "{SEPARATOR}" ""')
            return "List completed."
        full = reference + pattern if reference.endswith(SEPARATOR) or not reference else reference + SEPARATOR + pattern
        regex = "".join(".*" if c == "*" else f"[^{re.escape(SEPARATOR)}]*" if c == "%" else re.escape(c) for c in full)
        matcher = re.compile(f"^{regex}$", re.IGNORECASE if full.upper().startswith("INBOX") else 0)
        names = self._backend().list_mailboxes()
        existing = set(names)
        if verb == "LSUB":
            shown = self._backend().subscriptions()
        else:  # levels that are no mailbox ("Lists" of "Lists.mailroom") too, as \Noselect (§6.3.8)
            implied = {name.rsplit(SEPARATOR, depth)[0] for name in names for depth in range(1, name.count(SEPARATOR) + 1)}
            implied.discard("")  # ".x" implies no level: "" is LIST's reserved delimiter reply
            shown = sorted(existing | implied, key=lambda n: (n.upper() != "INBOX", n))
        for name in shown:
            test = "INBOX" + name[5:] if name.upper().startswith("INBOX") else name
            if not matcher.match(test):
                continue
            attrs: list[str] = []
            if verb == "LIST":
                if name not in existing:
                    attrs.append("\\Noselect")
                children = any(other.startswith(name + SEPARATOR) for other in names)
                attrs.append("\\HasChildren" if children else "\\HasNoChildren")
                use = SPECIAL_USE.get(name)
                if use:
                    attrs.append(use)
                elif special_only:
                    continue
            elif name not in existing:
                attrs.append("\\NonExistent")
            self._out += (f"* {verb} ({' '.join(attrs)}) \"{SEPARATOR}\" ".encode() + astring(name) + b"\r\n")
        return ("Lsub" if verb == "LSUB" else "List") + " completed."

    def _status(self, command: Command) -> str:
        if len(command.args) != 2 or not isinstance(command.args[1], list) or not command.args[1]:
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(command.args[0])
        items = [_text(a).upper() for a in command.args[1]]
        if any(i not in ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN") for i in items):
            raise _Bad("Invalid status item.")
        status = self._backend().status(name)
        values = {"MESSAGES": status.messages, "RECENT": status.recent, "UIDNEXT": status.uidnext,
                  "UIDVALIDITY": status.uidvalidity, "UNSEEN": status.unseen}
        body = " ".join(f"{i} {values[i]}" for i in items)
        self._out += b"* STATUS " + astring(name) + f" ({body})\r\n".encode()
        return "Status completed."

    # RFC 2087 QUOTA, as Dovecot's imap_quota: one root per user, STORAGE in KiB; a root
    # without a limit is left out of QUOTAROOT and GETQUOTA shows it with no resources.
    def _quota(self) -> tuple[int, int]:
        backend = self._backend()
        if not isinstance(backend, QuotaBackend):
            raise _Bad("Unknown command.")
        return backend.quota()

    def _quota_line(self, used: int, limit: int) -> None:
        resources = f"STORAGE {used // 1024} {limit // 1024}" if limit > 0 else ""
        self._out += b"* QUOTA " + astring(QUOTA_ROOT) + f" ({resources})\r\n".encode()

    def _getquotaroot(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(command.args[0])
        used, limit = self._quota()
        if name not in self._backend().list_mailboxes():
            raise MailboxError(f"Mailbox doesn't exist: {name}", "NONEXISTENT")
        self._out += b"* QUOTAROOT " + astring(name) + (b" " + astring(QUOTA_ROOT) if limit > 0 else b"") + b"\r\n"
        if limit > 0:
            self._quota_line(used, limit)
        return "Getquotaroot completed."

    def _getquota(self, command: Command) -> str:
        if len(command.args) != 1:
            raise _Bad("Invalid arguments.")
        used, limit = self._quota()
        if _text(command.args[0]) != QUOTA_ROOT:
            raise _No("Quota root doesn't exist.")
        self._quota_line(used, limit)
        return "Getquota completed."

    def _setquota(self, command: Command) -> str:
        if len(command.args) != 2 or not isinstance(command.args[1], list):
            raise _Bad("Invalid arguments.")
        self._quota()
        raise _No("[NOPERM] Quota can be changed only by admin.")

    def _append(self, command: Command) -> str:
        args = command.args
        if len(args) < 2 or not isinstance(args[-1], bytes):
            raise _Bad("Invalid arguments.")
        name = _mailbox_name(args[0])
        flags: frozenset[str] = frozenset()
        date: float | None = None
        for extra in list(args[1:-1]):
            if isinstance(extra, list):
                flags = _flags(extra, storing=True)
            elif isinstance(extra, bytes):
                date = _parse_date_time(extra.decode("ascii", "replace"))
            else:
                raise _Bad("Invalid arguments.")
        data = args[-1]
        if not data:
            raise _No("Can't save a zero byte message.")
        uidvalidity, uid = self._backend().append(name, mime.to_crlf(data), flags, date)
        return f"[APPENDUID {uidvalidity} {uid}] Append completed."

    def _check(self, command: Command) -> str:
        return "Check completed." if command.name == "CHECK" else "NOOP completed."

    def _close_cmd(self, command: Command) -> str:
        if command.name == "CLOSE" and not self.readonly:
            deleted = [uid for uid in self.uids if "\\Deleted" in self.meta[uid].flags]
            if deleted:
                self._selected().expunge(deleted)
        self._unselect()
        return ("Close" if command.name == "CLOSE" else "Unselect") + " completed."

    def _expunge(self, command: Command) -> str:
        if self.readonly:
            raise _No("Mailbox is read-only.")
        wanted: set[int] | None = None
        if command.name == "UID EXPUNGE":
            if len(command.args) != 1:
                raise _Bad("Invalid arguments.")
            wanted = set(self._resolve(command.args[0], uid=True))
        elif command.args:
            raise _Bad("Invalid arguments.")
        deleted = [uid for uid in self.uids if "\\Deleted" in self.meta[uid].flags
                   and (wanted is None or uid in wanted)]
        if deleted:
            self._selected().expunge(deleted)
        return "Expunge completed."

    def _resolve(self, value: Value, *, uid: bool) -> list[int]:
        """UIDs named by a sequence set (message numbers unless `uid`)."""
        if not isinstance(value, str):
            raise _Bad("Invalid messageset.")
        try:
            ranges = parse_set(value)
            if uid:
                return resolve_uids(ranges, self.uids)
            return [self.uids[n - 1] for n in resolve_seq(ranges, len(self.uids))]
        except SequenceError as exc:
            raise _Bad(f"Error in IMAP command: {exc}.") from None

    def _search(self, command: Command) -> str:
        args = list(command.args)
        if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "CHARSET":
            charset = _text(args[1]).upper()
            if charset not in ("UTF-8", "US-ASCII"):
                raise _No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.")
            args = args[2:]
        uid_mode = command.name == "UID SEARCH"
        try:
            predicate = parse_search(args, uid_mode=uid_mode)
        except SearchError as exc:
            raise _Bad(f"Error in IMAP command SEARCH: {exc}.") from None
        mailbox = self._selected()
        context = Context(self.uids, len(self.uids))
        found: list[int] = []
        for index, uid in enumerate(self.uids):
            meta = self.meta[uid]
            candidate = Candidate(index + 1, uid, meta.flags, meta.size,
                                  load=lambda u=uid: mailbox.read(u),  # type: ignore[misc]
                                  date=lambda u=uid: mailbox.internal_date(u),  # type: ignore[misc]
                                  recent=uid in self.recent)
            if predicate(candidate, context):
                found.append(uid if uid_mode else index + 1)
        self._line("* SEARCH" + "".join(f" {n}" for n in found))
        return "Search completed."

    def _store(self, command: Command) -> str:
        if len(command.args) < 3 or not isinstance(command.args[1], str):
            raise _Bad("Invalid arguments.")
        uid_mode = command.name == "UID STORE"
        uids = self._resolve(command.args[0], uid=uid_mode)
        item = command.args[1].upper()
        silent = item.endswith(".SILENT")
        item = item.removesuffix(".SILENT")
        if item not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise _Bad("Invalid STORE item.")
        raw = command.args[2:]
        values = raw[0] if len(raw) == 1 and isinstance(raw[0], list) else raw
        flags = _flags(values, storing=True)
        if self.readonly:
            raise _No("Mailbox is read-only.")
        mailbox = self._selected()
        if item == "FLAGS":
            current = frozenset(f for uid in uids for f in self.meta[uid].flags)
            updated = mailbox.store(uids, flags, (current | frozenset(SYSTEM_FLAGS)) - flags)
        elif item == "+FLAGS":
            updated = mailbox.store(uids, flags, frozenset())
        else:
            updated = mailbox.store(uids, frozenset(), flags)
        for meta in updated:
            if meta.uid in self.meta:
                self.meta[meta.uid] = meta
        if not silent:
            for uid in uids:
                extra = f"UID {uid} " if uid_mode else ""
                self._line(f"* {self._number(uid)} FETCH ({extra}FLAGS {self._flags_of(uid).decode()})")
        return "Store completed."

    def _copy(self, command: Command) -> str:
        if len(command.args) != 2:
            raise _Bad("Invalid arguments.")
        uid_mode = command.name.startswith("UID ")
        move = command.name.endswith("MOVE")
        uids = self._resolve(command.args[0], uid=uid_mode)
        target = _mailbox_name(command.args[1])
        if move and self.readonly:
            raise _No("Mailbox is read-only.")
        if not uids:
            return ("Move" if move else "Copy") + " completed."  # nothing matched
        mailbox = self._selected()
        try:
            validity, sources, targets = mailbox.copy(uids, target)
        except MailboxError as exc:
            if exc.code == "NONEXISTENT":
                raise MailboxError(f"Mailbox doesn't exist: {target}", "TRYCREATE") from None
            raise
        code = f"[COPYUID {validity} {format_set(sources)} {format_set(targets)}]" if sources else ""
        if not move:
            return f"{code} Copy completed.".lstrip()
        if code:
            self._line(f"* OK {code} Moved UIDs.")
        mailbox.expunge(sources)
        self._refresh(expunges=True)
        return "Move completed."

    def _fetch(self, command: Command) -> str:
        if len(command.args) != 2:
            raise _Bad("Invalid arguments.")
        uid_mode = command.name == "UID FETCH"
        uids = self._resolve(command.args[0], uid=uid_mode)
        items = _fetch_items(command.args[1])
        if uid_mode and "UID" not in items:
            items.insert(0, "UID")
        mailbox = self._selected()
        failed = False
        sets_seen = not self.readonly and any(
            (i.startswith("BODY[") or i in ("RFC822", "RFC822.TEXT")) for i in items)
        if mailbox.nowait and (sets_seen or len(uids) > INLINE_MESSAGES or not all(map(_inline_item, items)) or (
                not _META_ONLY.issuperset(items)
                and len(uids) * INLINE_MESSAGE_COST
                + sum(self.meta[u].size for u in uids if u in self.meta) > INLINE_BUDGET)):
            raise BlockingIOError("not for the event loop")  # a flag change, parsing, or long work: a thread
        for uid in uids:
            try:
                parts = self._fetch_one(mailbox, uid, items, sets_seen)
            except _Gone:
                failed = True
                continue
            self._out += f"* {self._number(uid)} FETCH (".encode() + b" ".join(parts) + b")\r\n"
        if failed:
            raise _No("Some messages could not be FETCHed (expunged by another session).")
        return "Fetch completed."

    def _fetch_one(self, mailbox: Mailbox, uid: int, items: list[str], sets_seen: bool) -> list[bytes]:
        cache: dict[str, object] = {}

        def data() -> bytes:
            if "data" not in cache:
                raw = mailbox.read(uid)
                if raw is None:
                    raise _Gone()
                cache["data"] = raw
            value = cache["data"]
            assert isinstance(value, bytes)
            return value

        def tree() -> mime.Part:
            if "tree" not in cache:
                cache["tree"] = mime.parse(data())
            value = cache["tree"]
            assert isinstance(value, mime.Part)
            return value

        def envelope() -> bytes:
            """From the MIME tree when it is built anyway, else from the top header's fields."""
            if "tree" in cache:
                return mime.envelope(tree().headers)
            if "data" in cache:
                return mime.envelope_of(mime.raw_fields(mime.split_header(data())[0]))
            raw = mailbox.read_raw(uid)  # only the header is needed: no CRLF copy of the body
            if raw is None:
                raise _Gone()
            return mime.envelope_of(mime.raw_fields(mime.crlf_header(raw), mime.ENVELOPE_FIELDS))

        if sets_seen and "\\Seen" not in self.meta[uid].flags:
            data()  # do not mark a vanished message
            for meta in mailbox.store([uid], frozenset({"\\Seen"}), frozenset()):
                self.meta[meta.uid] = meta
            if "FLAGS" not in items:
                items = [*items, "FLAGS"]
        out: list[bytes] = []
        for item in items:
            if item == "UID":
                out.append(f"UID {uid}".encode())
            elif item == "FLAGS":
                out.append(b"FLAGS " + self._flags_of(uid))
            elif item == "RFC822.SIZE":
                out.append(f"RFC822.SIZE {self.meta[uid].size}".encode())
            elif item == "INTERNALDATE":
                out.append(b"INTERNALDATE " + internal_date(mailbox.internal_date(uid)))
            elif item == "ENVELOPE":
                out.append(b"ENVELOPE " + mailbox.summary(uid, item, envelope))
            elif item in ("BODYSTRUCTURE", "BODY"):
                out.append(item.encode() + b" " + mailbox.summary(
                    uid, item, functools.partial(_structure, tree, extended=item == "BODYSTRUCTURE")))
            elif item == "RFC822":
                out.append(b"RFC822 " + string(data()))
            elif item == "RFC822.HEADER":
                out.append(b"RFC822.HEADER " + string(mime.split_header(data())[0]))
            elif item == "RFC822.TEXT":
                out.append(b"RFC822.TEXT " + string(mime.split_header(data())[1]))
            else:
                out.append(_section(item, data, tree))
        return out


class _Whole(NamedTuple):
    """The whole message split at its blank line: all BODY[]/HEADER/TEXT need of it."""

    header: bytes
    body: bytes


def _structure(tree: Callable[[], mime.Part], *, extended: bool) -> bytes:
    return mime.bodystructure(tree(), extended=extended)


class _Gone(Exception):
    """The message was expunged by another session."""


_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE = {"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
           "RFC822", "RFC822.HEADER", "RFC822.TEXT"}


def _fetch_items(value: Value) -> list[str]:
    if isinstance(value, str) and value.upper() in _MACROS:
        return list(_MACROS[value.upper()])
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _Bad("Invalid fetch attributes.")
    items: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise _Bad("Invalid fetch attribute.")
        upper = item.upper()
        if upper in _SIMPLE:
            items.append(upper)
            continue
        match = _FETCH_ATT.match(upper)
        if match is None or match.group(1).startswith("BINARY"):
            raise _Bad(f"Error in IMAP command FETCH: Unknown parameter {item[:40]}.")
        _parse_section(match.group(2))  # validate now: BAD before any output
        items.append(upper)
    return items


def _parse_section(section: str) -> tuple[list[int], str, list[str]]:
    """"1.2.HEADER.FIELDS (A B)" -> ([1, 2], "HEADER.FIELDS", ["A", "B"])."""
    spec, _, fields_text = section.partition(" ")
    numbers: list[int] = []
    parts = spec.split(".") if spec else []
    while parts and parts[0].isdigit():
        if len(parts[0]) > 9 or int(parts[0]) == 0:
            raise _Bad("Invalid section number.")
        numbers.append(int(parts.pop(0)))
    kind = ".".join(parts)
    if kind not in ("", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        raise _Bad(f"Invalid BODY[] section: {section[:40]}.")
    if kind == "MIME" and not numbers:
        raise _Bad("Invalid BODY[] section: MIME needs a part number.")
    fields: list[str] = []
    if kind.startswith("HEADER.FIELDS"):
        inner = fields_text.strip()
        if not (inner.startswith("(") and inner.endswith(")")) or not inner[1:-1].split():
            raise _Bad("Invalid header field list.")
        fields = [f.strip('"') for f in inner[1:-1].split()]
    elif fields_text:
        raise _Bad("Invalid BODY[] section.")
    return numbers, kind, fields


class _Section(NamedTuple):
    """A BODY[...] item parsed once per command, not once per message."""

    section: str
    numbers: tuple[int, ...]
    kind: str
    fields: tuple[str, ...]
    partial: tuple[int, int] | None  # <start.length>


@functools.lru_cache(maxsize=256)
def _section_spec(item: str) -> _Section:
    match = _FETCH_ATT.match(item)
    assert match is not None  # _fetch_items validated it
    numbers, kind, fields = _parse_section(match.group(2))
    partial = (int(match.group(3)), int(match.group(4))) if match.group(3) is not None else None
    return _Section(match.group(2), tuple(numbers), kind, tuple(fields), partial)  # shared: immutable


def _section(item: str, data: Callable[[], bytes], tree: Callable[[], mime.Part]) -> bytes:
    section, numbers, kind, fields, partial = _section_spec(item)
    if not numbers and kind == "":  # BODY[]: the whole message, no splitting and joining again
        content = data()
        if partial is not None:
            start, length = partial
            return f"BODY[]<{start}> ".encode() + string(content[start : start + length])
        return b"BODY[] " + string(content)
    # Only a numbered part needs the MIME tree; the top level is the message split in two.
    part: mime.Part | _Whole | None = mime.find(tree(), numbers) if numbers else _Whole(*mime.split_header(data()))
    content = b""
    if numbers and kind in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT") and part is not None:
        # n.HEADER and n.TEXT exist only for a MESSAGE/RFC822 part: they are its message's.
        part = part.message if isinstance(part, mime.Part) else None
    if part is not None:
        if kind == "":
            content = part.body if numbers else part.header + part.body
        elif kind in ("HEADER", "MIME"):
            content = part.header
        elif kind == "TEXT":
            content = part.body
        else:
            content = mime.header_fields(part.header, fields, exclude=kind.endswith(".NOT"))
    name = f"BODY[{section}]"
    if partial is not None:
        start, length = partial
        content = content[start : start + length]
        name += f"<{start}>"
    return name.encode() + b" " + (string(content) if content or part is not None else b"NIL")


_Core = Callable[[ServerConnection, Command], Event | None]
_Store = Callable[[ServerConnection, Command], str]

_CORE_COMMANDS: dict[str, _Core] = {
    "CAPABILITY": ServerConnection._capability,
    "NOOP": ServerConnection._noop,
    "LOGOUT": ServerConnection._logout,
    "ID": ServerConnection._id,
    "STARTTLS": ServerConnection._starttls,
    "LOGIN": ServerConnection._login,
    "AUTHENTICATE": ServerConnection._authenticate,
    "NAMESPACE": ServerConnection._namespace,
    "ENABLE": ServerConnection._enable,
    "IDLE": ServerConnection._idle,
}

_STORE_COMMANDS: dict[str, _Store] = {
    "NOOP": ServerConnection._check,
    "SELECT": ServerConnection._select,
    "EXAMINE": ServerConnection._select,
    "CREATE": ServerConnection._create,
    "DELETE": ServerConnection._delete,
    "RENAME": ServerConnection._rename,
    "SUBSCRIBE": ServerConnection._subscribe,
    "UNSUBSCRIBE": ServerConnection._subscribe,
    "LIST": ServerConnection._list,
    "LSUB": ServerConnection._list,
    "STATUS": ServerConnection._status,
    "APPEND": ServerConnection._append,
    "CHECK": ServerConnection._check,
    "CLOSE": ServerConnection._close_cmd,
    "UNSELECT": ServerConnection._close_cmd,
    "EXPUNGE": ServerConnection._expunge,
    "UID EXPUNGE": ServerConnection._expunge,
    "SEARCH": ServerConnection._search,
    "UID SEARCH": ServerConnection._search,
    "FETCH": ServerConnection._fetch,
    "UID FETCH": ServerConnection._fetch,
    "STORE": ServerConnection._store,
    "UID STORE": ServerConnection._store,
    "COPY": ServerConnection._copy,
    "UID COPY": ServerConnection._copy,
    "MOVE": ServerConnection._copy,
    "UID MOVE": ServerConnection._copy,
    "GETQUOTAROOT": ServerConnection._getquotaroot,
    "GETQUOTA": ServerConnection._getquota,
    "SETQUOTA": ServerConnection._setquota,
}
_SELECTED_ONLY = frozenset({"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "UID EXPUNGE", "SEARCH", "UID SEARCH",
                            "FETCH", "UID FETCH", "STORE", "UID STORE", "COPY", "UID COPY", "MOVE", "UID MOVE"})
# No untagged EXPUNGE while a client may hold message numbers (RFC 3501 §7.4.1).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "COPY", "UID FETCH", "UID STORE", "UID SEARCH", "UID COPY"})
_NO_REFRESH = frozenset({"SELECT", "EXAMINE", "CLOSE", "UNSELECT", "DELETE"})
# Tried on the event loop first (execute(inline=True)): they change nothing on disk, and a
# thread hop costs more than the work when the folder is unchanged and its files are cached.
_INLINE = frozenset({"NOOP", "CHECK", "FETCH", "UID FETCH"})
# An inline FETCH may hold the event loop for about 2 ms: costs are counted in octets read
# and formatted (about 1 ns each), plus about 15 µs of Python per message.
INLINE_BUDGET = 2_000_000
INLINE_MESSAGE_COST = 15_000
INLINE_MESSAGES = INLINE_BUDGET // INLINE_MESSAGE_COST  # FLAGS/UID/RFC822.SIZE alone: messages only
_META_ONLY = frozenset({"UID", "FLAGS", "RFC822.SIZE"})  # items answered from the listing alone
# Items whose inline cost is bounded by the octets: copies and C-level searches, never MIME
# parsing (ENVELOPE, BODY and BODYSTRUCTURE only from the summary cache: see Mailbox.summary).
_INLINE_SIMPLE = frozenset({*_META_ONLY, "INTERNALDATE", "ENVELOPE", "BODY", "BODYSTRUCTURE",
                            "RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_INLINE_SECTION = re.compile(r"^BODY(?:\.PEEK)?\[(?:HEADER|TEXT)?\](?:<\d+\.\d+>)?$")


def _inline_item(item: str) -> bool:
    return item in _INLINE_SIMPLE or _INLINE_SECTION.match(item) is not None

__all__ = ["ServerConnection", "State"]
