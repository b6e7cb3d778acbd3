"""SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) as pure step functions.

A protocol core (SMTP AUTH, IMAP AUTHENTICATE, POP3 AUTH) owns the wire framing;
this module owns the mechanism: it takes the client's base64 lines and answers
Challenge (send "334 <b64>"), Credentials (ask the backend) or Failure. It never
checks a password and never does I/O, so every branch is testable in isolation.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from dataclasses import dataclass
from enum import Enum

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN")  # the order the EHLO AUTH line shows
# RFC 4616 §2: each of authzid, authcid, passwd is at most 255 octets of UTF-8.
MAX_FIELD = 255
LOGIN_USERNAME_PROMPT = b"Username:"  # "334 VXNlcm5hbWU6" on the wire
LOGIN_PASSWORD_PROMPT = b"Password:"  # "334 UGFzc3dvcmQ6"


class FailureKind(Enum):
    ABORTED = "aborted"  # client sent "*" (RFC 4954 §4) -> 501 5.7.0
    DECODE = "decode"  # not base64 -> 501 5.5.2
    MALFORMED = "malformed"  # decoded but not a valid message -> 535
    AUTHZID = "authzid"  # asks to act as someone else: not supported -> 535
    MECHANISM = "mechanism"  # unknown mechanism -> 535 ... Invalid authentication mechanism


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send this to the client (raw; the framing base64-encodes it)."""

    data: bytes

    @property
    def b64(self) -> str:
        return b64encode(self.data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Credentials:
    mechanism: str
    authzid: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    detail: str = ""  # for logs only


Step = Challenge | Credentials | Failure


def decode_response(line: bytes) -> bytes | Failure:
    """RFC 4954 §4: "*" cancels, "=" is an empty initial response, else strict base64."""
    text = line.strip()
    if text == b"*":
        return Failure(FailureKind.ABORTED)
    if text == b"=":
        return b""
    try:
        return b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return Failure(FailureKind.DECODE, "invalid base64")


def _utf8(field: bytes, what: str) -> str | Failure:
    if len(field) > MAX_FIELD:
        return Failure(FailureKind.MALFORMED, f"{what} too long")
    try:
        return field.decode("utf-8")
    except UnicodeDecodeError:
        return Failure(FailureKind.MALFORMED, f"{what} not UTF-8")


def parse_plain(message: bytes) -> Credentials | Failure:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd; authzid must be empty or ours."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return Failure(FailureKind.MALFORMED, "PLAIN message needs authzid\\0user\\0password")
    fields: list[str] = []
    for raw, what in zip(parts, ("authzid", "username", "password"), strict=True):
        value = _utf8(raw, what)
        if isinstance(value, Failure):
            return value
        fields.append(value)
    authzid, username, password = fields
    if authzid and authzid != username:
        # Acting as another user needs master-user rights we do not have.
        return Failure(FailureKind.AUTHZID, f"authzid {authzid!r} differs from {username!r}")
    return Credentials("PLAIN", authzid, username, password)


class Exchange:
    """One AUTH exchange. start() once, then step() with each client line until done."""

    def __init__(self) -> None:
        self.mechanism = ""
        self._username: str | None = None
        self.done = False

    def start(self, mechanism: str, initial_response: bytes | None) -> Step:
        """`initial_response` is the base64 text after the mechanism name, if any."""
        self.mechanism = mechanism.upper()
        if self.mechanism not in MECHANISMS:
            return self._end(Failure(FailureKind.MECHANISM, mechanism))
        if initial_response is None:
            if self.mechanism == "PLAIN":
                return Challenge(b"")  # RFC 4616 §2: empty challenge, client sends message
            return Challenge(LOGIN_USERNAME_PROMPT)
        return self.step(initial_response)

    def step(self, client_line: bytes) -> Step:
        if self.done:
            raise ValueError("SASL exchange already finished")
        decoded = decode_response(client_line)
        if isinstance(decoded, Failure):
            return self._end(decoded)
        if self.mechanism == "PLAIN":
            return self._end(parse_plain(decoded))
        value = _utf8(decoded, "username" if self._username is None else "password")
        if isinstance(value, Failure):
            return self._end(value)
        if self._username is None:
            if not value:
                return self._end(Failure(FailureKind.MALFORMED, "empty username"))
            self._username = value
            return Challenge(LOGIN_PASSWORD_PROMPT)
        return self._end(Credentials("LOGIN", "", self._username, value))

    def _end(self, result: Credentials | Failure) -> Credentials | Failure:
        self.done = True
        return result
