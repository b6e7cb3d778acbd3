"""SMTP command lines and ESMTP parameters, for the server and for a future client.

Server side: `parse_command` splits a line into verb and argument; `parse_mail`
and `parse_rcpt` turn MAIL/RCPT arguments into a Path plus typed parameters that
map one-to-one onto queue.envelope (body_type, smtputf8, ret, envid, notify,
orcpt). Every refusal is a CommandError carrying the exact reply to send.
Client side: `format_mail`, `format_rcpt`, `parse_reply_lines`, `parse_ehlo_keywords`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailroom.smtp import replies
from mailroom.smtp.address import AddressError, Path, parse_path, split_path
from mailroom.smtp.replies import Reply
from mailroom.wire.errors import RemoteProtocolError

# RFC 5321 §4.5.3.1.4 sets 512 octets (CRLF included) as the floor; extensions raise it
# (RFC 1870 SIZE +26, RFC 3461 ENVID +100 / ORCPT +500, RFC 4954 AUTH= +500), so we
# allow Postfix's line_length_limit.
COMMAND_LINE_LIMIT = 2048
# RFC 4954 §4: an AUTH command with initial response, and each SASL response line,
# may be up to 12288 octets.
AUTH_LINE_LIMIT = 12288
MAX_SIZE_DIGITS = 20  # SIZE= beyond 10**20 octets is nonsense, not a number to parse
MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2
BODY_TYPES = ("7BIT", "8BITMIME", "BINARYMIME")  # RFC 6152 §2, RFC 3030 §3
NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY")  # RFC 3461 §4.1, plus exclusive NEVER

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")  # RFC 5321 §4.1.2 esmtp-keyword
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")


class CommandError(Exception):
    """The command is refused before anyone else sees it; `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper case
    argument: str  # everything after the first space, surrounding blanks removed


@dataclass(frozen=True, slots=True)
class MailParams:
    """MAIL FROM parameters; field names match queue.envelope.Envelope."""

    size: int | None = None  # RFC 1870
    body_type: str = ""  # "" | 7BIT | 8BITMIME | BINARYMIME
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # RFC 3461 §4.3: FULL | HDRS
    envid: str | None = None  # RFC 3461 §4.4, xtext-decoded
    auth: str | None = None  # RFC 4954 §5: accepted, recorded, never trusted


@dataclass(frozen=True, slots=True)
class RcptParams:
    """RCPT TO parameters; field names match queue.envelope.Recipient."""

    notify: tuple[str, ...] = ()  # () = not given
    orcpt: str | None = None  # "rfc822;addr" with the address xtext-decoded


def parse_command(text: str) -> Command:
    """RFC 5321 §4.1.1: verb, then SP and the argument; verbs are case-insensitive."""
    verb, _, argument = text.strip(" ").partition(" ")
    return Command(verb.upper(), argument.strip(" "))


def xtext_decode(text: str) -> str:
    """RFC 3461 §4: xchar = %d33-126 except "+" and "="; "+XX" is a hex-encoded octet."""
    out, i = bytearray(), 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789ABCDEFabcdef" for c in pair):
                raise ValueError("bad xtext hexchar")
            out.append(int(pair, 16))
            i += 3
            continue
        if not (33 <= ord(ch) <= 126) or ch == "=":
            raise ValueError("bad xtext character")
        out.append(ord(ch))
        i += 1
    return out.decode("utf-8")


def xtext_encode(text: str) -> str:
    """Inverse of xtext_decode, for the client side (RFC 3461 §4)."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in text.encode("utf-8")
    )


def _params(text: str) -> list[tuple[str, str | None, str]]:
    """Split "K=V K2" into (KEY, value or None, original token) (RFC 5321 §4.1.2)."""
    out: list[tuple[str, str | None, str]] = []
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not _KEYWORD.match(key) or (eq and not value):
            raise CommandError(replies.BAD_SYNTAX)
        out.append((key.upper(), value if eq else None, token))
    return out


def _path(argument: str, prefix: str, syntax: Reply) -> tuple[str, str]:
    """Strip "FROM:" / "TO:" (case-insensitive; Postfix tolerates a space after ':')."""
    if argument[: len(prefix)].upper() != prefix:
        raise CommandError(syntax)
    rest = argument[len(prefix) :].lstrip(" ")
    try:
        return split_path(rest)
    except AddressError as exc:
        raise CommandError(syntax) from exc


def parse_mail(
    argument: str, *, message_size_limit: int, smtputf8_enabled: bool, chunking: bool = False
) -> tuple[Path, MailParams]:
    """MAIL FROM:<reverse-path> [SP params] (RFC 5321 §4.1.1.2)."""
    path_text, param_text = _path(argument, "FROM:", replies.MAIL_SYNTAX)
    size: int | None = None
    body, utf8, ret, envid, auth = "", False, None, None, None
    for key, value, token in _params(param_text):
        if key == "SIZE" and value is not None:
            if size is not None or not value.isdigit() or not value.isascii() or len(value) > MAX_SIZE_DIGITS:
                raise CommandError(replies.BAD_SIZE)
            size = int(value)
        elif key == "BODY" and value is not None and value.upper() in BODY_TYPES:
            if value.upper() == "BINARYMIME" and not chunking:
                raise CommandError(replies.unsupported_option(token))  # RFC 3030 §3 needs BDAT
            body = value.upper()
        elif key == "SMTPUTF8" and value is None and smtputf8_enabled:
            utf8 = True
        elif key == "RET" and value is not None:
            if ret is not None or value.upper() not in ("FULL", "HDRS"):
                raise CommandError(replies.BAD_RET)
            ret = value.upper()
        elif key == "ENVID" and value is not None:
            envid = _xtext_param(value, MAX_ENVID, envid, replies.BAD_ENVID)
        elif key == "AUTH" and value is not None:
            auth = value  # RFC 4954 §5: we trust only our own AUTH, never the client's claim
        else:
            raise CommandError(replies.unsupported_option(token))
    try:
        path = parse_path(path_text, allow_utf8=utf8, allow_null=True)
    except AddressError as exc:
        raise CommandError(replies.UTF8_NOT_DECLARED if exc.utf8 else replies.BAD_SENDER) from exc
    if size is not None and message_size_limit and size > message_size_limit:
        raise CommandError(replies.MESSAGE_TOO_BIG)  # RFC 1870 §6.2
    return path, MailParams(size, body, utf8, ret, envid, auth)


def parse_rcpt(argument: str, *, smtputf8: bool) -> tuple[Path, RcptParams]:
    """RCPT TO:<forward-path> [SP params] (RFC 5321 §4.1.1.3); `smtputf8` from MAIL."""
    path_text, param_text = _path(argument, "TO:", replies.RCPT_SYNTAX)
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    for key, value, token in _params(param_text):
        if key == "NOTIFY" and value is not None:
            notify = _notify(value, notify)
        elif key == "ORCPT" and value is not None:
            orcpt = _orcpt(value, orcpt)
        else:
            raise CommandError(replies.unsupported_option(token))
    try:
        path = parse_path(path_text, allow_utf8=smtputf8, allow_postmaster=True)
    except AddressError as exc:
        raise CommandError(replies.UTF8_NOT_DECLARED if exc.utf8 else replies.BAD_RECIPIENT) from exc
    return path, RcptParams(notify, orcpt)


def _xtext_param(value: str, limit: int, previous: str | None, error: Reply) -> str:
    if previous is not None or len(value) > limit:
        raise CommandError(error)
    try:
        return xtext_decode(value)
    except ValueError as exc:
        raise CommandError(error) from exc


def _notify(value: str, previous: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 3461 §4.1: NEVER alone, or a comma list of SUCCESS/FAILURE/DELAY."""
    items = tuple(v.upper() for v in value.split(","))
    ok = items == ("NEVER",) or (
        all(v in NOTIFY_VALUES for v in items) and len(set(items)) == len(items)
    )
    if previous or not ok:
        raise CommandError(replies.BAD_NOTIFY)
    return items


def _orcpt(value: str, previous: str | None) -> str:
    """RFC 3461 §4.2: ORCPT=addr-type ";" xtext."""
    addr_type, semi, encoded = value.partition(";")
    if not semi or not _ATOM.match(addr_type) or not encoded:
        raise CommandError(replies.BAD_ORCPT)
    return f"{addr_type};{_xtext_param(encoded, MAX_ORCPT, previous, replies.BAD_ORCPT)}"


# ---------------------------------------------------------------- client side


def format_mail(sender: str, params: MailParams | None = None) -> bytes:
    """The MAIL FROM line a client sends for `sender` ("" = null sender)."""
    p = params or MailParams()
    words = [f"MAIL FROM:<{sender}>"]
    if p.size is not None:
        words.append(f"SIZE={p.size}")
    if p.body_type:
        words.append(f"BODY={p.body_type}")
    if p.smtputf8:
        words.append("SMTPUTF8")
    if p.ret:
        words.append(f"RET={p.ret}")
    if p.envid is not None:
        words.append(f"ENVID={xtext_encode(p.envid)}")
    return (" ".join(words) + "\r\n").encode("utf-8")


def format_rcpt(recipient: str, params: RcptParams | None = None) -> bytes:
    """The RCPT TO line a client sends, with DSN parameters xtext-encoded."""
    p = params or RcptParams()
    words = [f"RCPT TO:<{recipient}>"]
    if p.notify:
        words.append("NOTIFY=" + ",".join(p.notify))
    if p.orcpt:
        addr_type, _, addr = p.orcpt.partition(";")
        words.append(f"ORCPT={addr_type};{xtext_encode(addr)}")
    return (" ".join(words) + "\r\n").encode("utf-8")


_REPLY_LINE = re.compile(r"([2-5][0-9][0-9])([ -])(.*)\Z", re.S)
_ENHANCED = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3}) (.*)\Z", re.S)


def parse_reply_lines(lines: Sequence[bytes | str]) -> Reply:
    """Join "250-a" ... "250 z" (RFC 5321 §4.2.1) into one Reply; RFC 2034 codes split off."""
    if not lines:
        raise RemoteProtocolError("empty reply")
    codes, texts = set(), []
    for n, raw in enumerate(lines):
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        m = _REPLY_LINE.match(line.rstrip("\r\n")) or _REPLY_LINE.match(line.rstrip("\r\n") + " ")
        if not m or (m.group(2) == " ") != (n == len(lines) - 1):
            raise RemoteProtocolError(f"malformed reply line {line!r}")
        codes.add(m.group(1))
        texts.append(m.group(3))
    if len(codes) != 1:
        raise RemoteProtocolError("reply lines disagree on the code")
    matches = [_ENHANCED.match(t) for t in texts]
    enhanced = ""
    if all(matches) and len({m.group(1) for m in matches if m}) == 1:
        enhanced = matches[0].group(1) if matches[0] else ""
        texts = [m.group(2) for m in matches if m]
    return Reply(int(codes.pop()), enhanced, "\n".join(texts))


def parse_ehlo_keywords(reply: Reply) -> dict[str, str]:
    """RFC 5321 §4.1.1.1: every EHLO line after the first is "KEYWORD [params]"."""
    out: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        keyword, _, params = line.partition(" ")
        if keyword:
            out[keyword.upper()] = params
    return out
