"""Dovecot's authentication client protocol (version 1), both sides, without I/O.

Theory of operation. The protocol is tab-separated lines ending in LF, values
escaped with Dovecot's tab-escaping (\\001 + 1/t/r/n). On connect the server sends
its handshake (VERSION, MECH per mechanism, SPID, CUID, COOKIE, DONE) without waiting;
the client sends VERSION and CPID. Then the client sends `AUTH id mech key=value...`
(`resp=` carries the base64 initial response) and `CONT id base64`; the server answers
each id with `CONT id base64` (a challenge), `OK id user=...` or `FAIL id ...`. Ids let
one connection carry many requests; Postfix sends one at a time.

`ServerConnection` is what Postfix's smtpd (smtpd_sasl_type = dovecot) talks to: it
runs the PLAIN/LOGIN step functions of mailroom.sasl.mechanisms and emits a
`CheckPassword` event when it has credentials; the adapter asks its AuthBackend and
calls `succeed()` or `fail()`. `ClientConnection` is mailroom asking a real Dovecot.
Both read with `receive_data(bytes)` / `next_event()` (h11 style) and collect output
in `data_to_send()`. Violations raise RemoteProtocolError: close the connection, as
Dovecot does (tests/transcripts/dovecot_auth/dovecot_*.capture record its behaviour).
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from dataclasses import dataclass, field
from typing import Final

from mailroom.sasl import mechanisms
from mailroom.wire.errors import LocalProtocolError, RemoteProtocolError
from mailroom.wire.lines import Line, LineBuffer

MAJOR_VERSION: Final = 1  # a different major version is incompatible (both peers check it)
SERVER_MINOR_VERSION: Final = 2  # what Dovecot 2.3 announces
CLIENT_MINOR_VERSION: Final = 0  # what Postfix 3.7 sends
# Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH: a request with a 255+255+255-octet PLAIN
# message is ~1 KiB; anything near this is not a login.
MAX_LINE: Final = 16384
MAX_ID: Final = 2**32 - 1  # ids are C `unsigned int` on both real peers
# Requests one connection may have open at once (waiting for CONT or the backend).
# Postfix uses one; a client opening more is hoarding server memory.
MAX_PENDING: Final = 32
MAX_HANDSHAKE_LINES: Final = 64  # a real server announces a dozen mechanisms at most
# VERSION and CPID lines are ~20 octets: a longer first line is not a Dovecot client
# (a TLS hello, an HTTP request), so it is refused without waiting for a newline.
MAX_HANDSHAKE_LINE: Final = 256

FAIL_INVALID_BASE64: Final = "invalid_base64"  # Dovecot's `code=` values
FAIL_TEMP: Final = "temp_fail"
FAIL_AUTHZ: Final = "authz_fail"

_ESCAPES: Final = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_UNESCAPES: Final = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def escape(value: str) -> str:
    """Dovecot's str_tabescape(): no TAB, CR or LF may reach the wire inside a value."""
    if not any(c in value for c in _ESCAPES):
        return value
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape(value: str) -> str:
    """Dovecot's str_tabunescape(): \\001 + c is the escaped character (unknown c: itself)."""
    if "\x01" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == "\x01":
            nxt = next(chars, "")
            out.append(_UNESCAPES.get(nxt, nxt))
        else:
            out.append(c)
    return "".join(out)


def _line(*fields: str) -> bytes:
    return ("\t".join(fields) + "\n").encode("utf-8")


def _parse_args(fields: list[str]) -> dict[str, str]:
    """`key=value` and bare flags (`secured`, `nologin`, `temp`); a flag maps to ""."""
    args: dict[str, str] = {}
    for item in fields:
        key, _, value = item.partition("=")
        args[key] = unescape(value)
    return args


def _parse_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > MAX_ID:
        raise RemoteProtocolError(f"bad request id {text[:20]!r}")
    return int(text)


def _is_base64(text: str) -> bool:
    """Dovecot refuses anything but strict base64 (and treats "*" and "=" as invalid)."""
    try:
        b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


class _Lines:
    """The bounded LF framing both sides share; a line over MAX_LINE ends the connection."""

    def __init__(self) -> None:
        self.buffer = LineBuffer(MAX_LINE)
        self.eof = False

    def feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
        self.buffer.feed(data)

    def next(self) -> list[str] | None:
        line = self.buffer.next_line()
        if line is None:
            if self.eof and len(self.buffer):
                raise RemoteProtocolError("connection closed in the middle of a line")
            return None
        if not isinstance(line, Line):
            raise RemoteProtocolError(f"line longer than {MAX_LINE} octets")
        try:
            text = line.text.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("line is not UTF-8") from None
        return text.split("\t")


# -- events ---------------------------------------------------------------------------------


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection cleanly (between lines)."""


@dataclass(frozen=True, slots=True)
class ClientHandshake:
    """Server side: the client sent VERSION and CPID; requests may follow."""

    major: int
    minor: int
    cpid: str


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Server side: a mechanism finished with credentials; answer with succeed()/fail()."""

    id: int
    mechanism: str
    username: str
    password: str
    authzid: str
    service: str
    remote_ip: str
    local_ip: str
    secured: bool
    args: dict[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class MechanismFailed:
    """Server side: the client's SASL message was malformed; answer with fail()."""

    id: int
    mechanism: str
    detail: str
    remote_ip: str


@dataclass(frozen=True, slots=True)
class ServerHandshake:
    """Client side: the server's handshake up to DONE."""

    major: int
    minor: int
    mechanisms: dict[str, tuple[str, ...]]  # name -> flags (plaintext, anonymous, ...)
    spid: str = ""
    cuid: str = ""
    cookie: str = ""


@dataclass(frozen=True, slots=True)
class Continue:
    """Client side: the server's challenge for request `id` (base64 text)."""

    id: int
    data: str


@dataclass(frozen=True, slots=True)
class Success:
    """Client side: OK; args carries user= and whatever else the server adds."""

    id: int
    args: dict[str, str]

    @property
    def user(self) -> str:
        return self.args.get("user", "")


@dataclass(frozen=True, slots=True)
class Failed:
    """Client side: FAIL; `temporary` for code=temp_fail or the older `temp` flag."""

    id: int
    args: dict[str, str]

    @property
    def temporary(self) -> bool:
        return "temp" in self.args or self.args.get("code") == FAIL_TEMP

    @property
    def reason(self) -> str:
        return self.args.get("reason", "") or self.args.get("code", "")


ServerEvent = ClientHandshake | CheckPassword | MechanismFailed | Closed
ClientEvent = ServerHandshake | Continue | Success | Failed | Closed


# -- the server side ------------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    mechanism: str
    args: dict[str, str]
    exchange: mechanisms.Exchange
    checking: bool = False  # the adapter owes succeed()/fail()


class ServerConnection:
    """One client connection to mailroom's auth socket (e.g. one Postfix smtpd process)."""

    def __init__(
        self, spid: str, cuid: str, cookie: str, mechs: tuple[str, ...] = mechanisms.MECHANISMS
    ) -> None:
        self._lines = _Lines()
        self._out = bytearray()
        self._mechs = mechs
        self._version_seen = False
        self.handshake_done = False
        self.pending: dict[int, _Request] = {}
        self._out += b"".join(
            [
                _line("VERSION", str(MAJOR_VERSION), str(SERVER_MINOR_VERSION)),
                *(_line("MECH", m, "plaintext") for m in mechs),
                _line("SPID", spid),
                _line("CUID", cuid),
                _line("COOKIE", cookie),
                _line("DONE"),
            ]
        )

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; b"" means the client closed its side."""
        self._lines.feed(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ServerEvent | _NeedData:
        while True:
            fields = self._lines.next()
            if fields is None:
                if not self.handshake_done and len(self._lines.buffer) > MAX_HANDSHAKE_LINE:
                    raise RemoteProtocolError("handshake line too long")
                return Closed() if self._lines.eof else NEED_DATA
            event = self._handle(fields)
            if event is not None:
                return event

    def _handle(self, fields: list[str]) -> ServerEvent | None:
        command = fields[0]
        if not self.handshake_done:
            if command == "VERSION" and not self._version_seen:
                if len(fields) < 3 or not all(f.isascii() and f.isdigit() for f in fields[1:3]):
                    raise RemoteProtocolError("malformed VERSION")
                if int(fields[1]) != MAJOR_VERSION:
                    raise RemoteProtocolError(f"incompatible protocol version {fields[1][:10]}")
                self._version_seen = True
                self._client_version = (int(fields[1]), int(fields[2][:9]))
                return None
            if command == "CPID" and self._version_seen and len(fields) >= 2:
                self.handshake_done = True
                return ClientHandshake(*self._client_version, cpid=fields[1][:20])
            raise RemoteProtocolError(f"unexpected handshake command {command[:20]!r}")
        if command == "AUTH":
            return self._auth(fields)
        if command == "CONT":
            return self._cont(fields)
        raise RemoteProtocolError(f"unknown command {command[:20]!r}")

    def _auth(self, fields: list[str]) -> ServerEvent | None:
        if len(fields) < 3:
            raise RemoteProtocolError("broken AUTH request")
        rid = _parse_id(fields[1])
        if rid in self.pending:
            raise RemoteProtocolError(f"duplicate request id {rid}")
        if len(self.pending) >= MAX_PENDING:
            raise RemoteProtocolError("too many pending requests")
        mech = fields[2].upper()
        if mech not in self._mechs:
            raise RemoteProtocolError(f"unsupported mechanism {fields[2][:20]!r}")
        args = _parse_args(fields[3:])
        if not args.get("service"):
            raise RemoteProtocolError("AUTH request without service")
        resp = args.get("resp")
        if resp and not _is_base64(resp):
            self._fail_line(
                rid,
                args,
                code=FAIL_INVALID_BASE64,
                reason="Invalid base64 data in initial response",
            )
            return None
        request = _Request(mech, args, mechanisms.Exchange())
        self.pending[rid] = request
        # An empty resp= is no initial response, as in Dovecot (PLAIN then asks with an empty CONT).
        step = request.exchange.start(mech, resp.encode("ascii") if resp else None)
        return self._after_step(rid, request, step)

    def _cont(self, fields: list[str]) -> ServerEvent | None:
        if len(fields) < 2:
            raise RemoteProtocolError("broken CONT request")
        rid = _parse_id(fields[1])
        data = fields[2] if len(fields) > 2 else ""
        request = self.pending.get(rid)
        if request is not None and request.checking:
            raise RemoteProtocolError(f"CONT for request {rid} while its credentials are checked")
        if request is None:
            # Dovecot's answer to a CONT it has no request for (dovecot_handshake_and_requests).
            self._out += _line("FAIL", str(rid), "reason=Authentication request timed out")
            return None
        if data and not _is_base64(data):
            del self.pending[rid]
            self._fail_line(
                rid,
                request.args,
                code=FAIL_INVALID_BASE64,
                reason="Invalid base64 data in continued response",
            )
            return None
        return self._after_step(rid, request, request.exchange.step(data.encode("ascii")))

    def _after_step(self, rid: int, request: _Request, step: mechanisms.Step) -> ServerEvent | None:
        args = request.args
        if isinstance(step, mechanisms.Challenge):
            self._out += _line("CONT", str(rid), step.b64)
            return None
        request.checking = True
        if isinstance(step, mechanisms.Failure):
            return MechanismFailed(
                rid, request.mechanism, step.detail or step.kind.value, args.get("rip", "")
            )
        return CheckPassword(
            id=rid,
            mechanism=step.mechanism,
            username=step.username,
            password=step.password,
            authzid=step.authzid,
            service=args["service"],
            remote_ip=args.get("rip", ""),
            local_ip=args.get("lip", ""),
            secured="secured" in args,
            args=args,
        )

    def _take(self, rid: int) -> _Request:
        request = self.pending.get(rid)
        if request is None or not request.checking:
            raise LocalProtocolError(f"request {rid} is not waiting for an answer")
        del self.pending[rid]
        return request

    def succeed(self, rid: int, username: str) -> None:
        """`OK id user=...`: what Postfix reads as the SASL user name."""
        self._take(rid)
        self._out += _line("OK", str(rid), f"user={escape(username)}")

    def fail(
        self, rid: int, username: str = "", *, temporary: bool = False, authz: bool = False
    ) -> None:
        """`FAIL id user=... [code=temp_fail]`, Dovecot 2.3's shape; no reason (not for clients)."""
        request = self._take(rid)
        code = FAIL_TEMP if temporary else FAIL_AUTHZ if authz else ""
        self._fail_line(rid, request.args, username=username, code=code)

    def _fail_line(
        self,
        rid: int,
        args: dict[str, str],
        *,
        username: str = "",
        code: str = "",
        reason: str = "",
    ) -> None:
        fields = ["FAIL", str(rid)]
        if username:
            fields.append(f"user={escape(username)}")
        if code:
            fields.append(f"code={code}")
        if reason:
            fields.append(f"reason={escape(reason)}")
        self._out += _line(*fields)


# -- the client side ------------------------------------------------------------------------


class ClientConnection:
    """mailroom as a client of a Dovecot auth socket (smtpd_sasl_type = dovecot)."""

    def __init__(self, cpid: int) -> None:
        self._lines = _Lines()
        self._out = bytearray(
            _line("VERSION", str(MAJOR_VERSION), str(CLIENT_MINOR_VERSION))
            + _line("CPID", str(cpid))
        )
        self._handshake: dict[str, str] = {}
        self._version: tuple[int, int] | None = None
        self._mechs: dict[str, tuple[str, ...]] = {}
        self._handshake_lines = 0
        self.handshake: ServerHandshake | None = None
        self.outstanding: set[int] = set()

    def receive_data(self, data: bytes) -> None:
        self._lines.feed(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def auth(
        self,
        rid: int,
        mechanism: str,
        service: str,
        *,
        initial: bytes | None = None,
        local_ip: str = "",
        remote_ip: str = "",
        secured: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        """Queue `AUTH id mech service=... [lip rip secured] [resp=]`, as Postfix words it."""
        if self.handshake is None:
            raise LocalProtocolError("AUTH before the server's handshake")
        if rid in self.outstanding or not 0 < rid <= MAX_ID:
            raise LocalProtocolError(f"request id {rid} in use or out of range")
        fields = ["AUTH", str(rid), mechanism, f"service={escape(service)}", *extra]
        if local_ip:
            fields.append(f"lip={escape(local_ip)}")
        if remote_ip:
            fields.append(f"rip={escape(remote_ip)}")
        if secured:
            fields.append("secured")
        if initial is not None:
            fields.append("resp=" + b64encode(initial).decode("ascii"))
        self.outstanding.add(rid)
        self._out += _line(*fields)

    def cont(self, rid: int, data: bytes) -> None:
        if rid not in self.outstanding:
            raise LocalProtocolError(f"request {rid} is not open")
        self._out += _line("CONT", str(rid), b64encode(data).decode("ascii"))

    def next_event(self) -> ClientEvent | _NeedData:
        while True:
            fields = self._lines.next()
            if fields is None:
                return Closed() if self._lines.eof else NEED_DATA
            event = self._handle(fields)
            if event is not None:
                return event

    def _handle(self, fields: list[str]) -> ClientEvent | None:
        command = fields[0]
        if self.handshake is None:
            self._handshake_lines += 1
            if self._handshake_lines > MAX_HANDSHAKE_LINES:
                raise RemoteProtocolError("endless handshake")
            if command == "VERSION":
                if len(fields) < 3 or not all(f.isascii() and f.isdigit() for f in fields[1:3]):
                    raise RemoteProtocolError("malformed VERSION")
                if int(fields[1]) != MAJOR_VERSION:
                    raise RemoteProtocolError(f"incompatible protocol version {fields[1][:10]}")
                self._version = (int(fields[1]), int(fields[2][:9]))
            elif command == "MECH" and len(fields) >= 2:
                self._mechs[fields[1].upper()] = tuple(fields[2:])
            elif command in ("SPID", "CUID", "COOKIE") and len(fields) >= 2:
                self._handshake[command] = fields[1]
            elif command == "DONE":
                if self._version is None:
                    raise RemoteProtocolError("handshake without VERSION")
                h = self._handshake
                self.handshake = ServerHandshake(
                    *self._version,
                    self._mechs,
                    h.get("SPID", ""),
                    h.get("CUID", ""),
                    h.get("COOKIE", ""),
                )
                return self.handshake
            # Anything else in the handshake is ignored, as Postfix does.
            return None
        if command not in ("OK", "FAIL", "CONT") or len(fields) < 2:
            return None  # unknown replies are ignored, as Postfix does
        rid = _parse_id(fields[1])
        if rid not in self.outstanding:
            return None  # a late answer to a request we gave up on
        if command == "CONT":
            return Continue(rid, fields[2] if len(fields) > 2 else "")
        self.outstanding.discard(rid)
        args = _parse_args(fields[2:])
        return Success(rid, args) if command == "OK" else Failed(rid, args)
