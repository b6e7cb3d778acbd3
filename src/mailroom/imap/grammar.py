"""The IMAP command grammar (RFC 3501 §9): bytes in, tagged commands out, bounded.

`CommandReader` frames the stream: a command is one or more lines joined by literals
(`{n}` synchronizing: the core must send "+ " before the client continues; `{n+}`
non-synchronizing, RFC 7888 LITERAL+). Text is bounded by MAX_COMMAND, each literal
by a limit the core sets (small before login, MAX_LITERAL after); an oversized
literal is refused and, when the client sends it anyway (LITERAL+), skipped without
being buffered. Parsing yields nested Python values: `str` for atoms, `bytes` for
quoted strings and literals, `list` for parenthesised lists. Fetch attributes such
as `BODY[HEADER.FIELDS (From To)]<0.100>` are one atom: brackets are kept whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

MAX_COMMAND = 64 * 1024  # octets of command text, literals excluded
MAX_LITERAL = 64 * 1024 * 1024  # one literal once logged in (APPEND)
MAX_LITERAL_UNAUTH = 8 * 1024  # one literal before login (LOGIN password...)
MAX_LITERALS = 256  # literals in one command
MAX_DEPTH = 32  # nested parentheses

Value = Union[str, bytes, list["Value"]]  # noqa: UP007 - a recursive alias needs Union

_LITERAL_END = re.compile(rb"\{(\d{1,10})(\+?)\}$")
_TAG_FORBIDDEN = frozenset(b'(){ %*"\\+')


class ParseError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str  # upper case; "UID FETCH" etc. for UID commands
    args: list[Value]


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that cannot be parsed; answer `tag BAD text` (tag "*" when unknown)."""

    tag: str
    text: str


@dataclass(frozen=True, slots=True)
class Continue:
    """A synchronizing literal is expected: send "+ OK" and read on."""


@dataclass(frozen=True, slots=True)
class _Literal:
    data: bytes


class _Paren:
    def __init__(self, char: str) -> None:
        self.char = char


_LP, _RP = _Paren("("), _Paren(")")


class CommandReader:
    def __init__(self) -> None:
        self.literal_limit = MAX_LITERAL_UNAUTH
        self._buf = bytearray()
        self._pieces: list[bytes | _Literal] = []
        self._text_len = 0
        self._need: int | None = None  # octets of literal still to read
        self._discard = 0  # octets of a refused LITERAL+ to drop
        self._skip_line = False  # drop up to the next LF

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()
        self._reset()
        self._discard = 0
        self._skip_line = False

    def take_line(self) -> bytes | None:
        """A raw line (AUTHENTICATE responses, IDLE's DONE), without its CRLF."""
        if self._skip_line:
            nl = self._buf.find(b"\n")
            if nl < 0:
                self._buf.clear()
                return None
            del self._buf[: nl + 1]
            self._skip_line = False
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > MAX_COMMAND:
                self._skip_line = True
                self._buf.clear()
                return b""  # treated as garbage by the caller
            return None
        line = bytes(self._buf[:nl]).removesuffix(b"\r")
        del self._buf[: nl + 1]
        return line

    @property
    def mid_command(self) -> bool:
        return bool(self._pieces) or self._need is not None

    def _reset(self) -> None:
        self._pieces = []
        self._text_len = 0
        self._need = None

    def _tag_guess(self, first: bytes) -> str:
        tag = first.split(b" ", 1)[0]
        if tag and len(tag) <= 64 and not any(c in _TAG_FORBIDDEN or c < 0x21 or c > 0x7E for c in tag):
            return tag.decode("ascii")
        return "*"

    def next(self) -> Command | Invalid | Continue | None:
        while True:
            if self._discard:
                dropped = min(self._discard, len(self._buf))
                del self._buf[:dropped]
                self._discard -= dropped
                if self._discard:
                    return None
            if self._skip_line:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    self._buf.clear()
                    return None
                del self._buf[: nl + 1]
                self._skip_line = False
            if self._need is not None:
                if len(self._buf) < self._need:
                    return None
                self._pieces.append(_Literal(bytes(self._buf[: self._need])))
                del self._buf[: self._need]
                self._need = None
                continue
            room = MAX_COMMAND - self._text_len
            nl = self._buf.find(b"\n", 0, room + 2)
            if nl < 0:
                if len(self._buf) <= room + 1:
                    return None
                first = self._pieces[0] if self._pieces else bytes(self._buf[:80])
                tag = self._tag_guess(first if isinstance(first, bytes) else b"")
                self._reset()
                self._skip_line = True  # drop the rest of the overlong line, keep what follows
                return Invalid(tag, "Too long command line.")
            line = bytes(self._buf[:nl]).removesuffix(b"\r")
            del self._buf[: nl + 1]
            if not self._pieces and not line.strip():
                continue  # an empty line: ignored, as Dovecot does
            self._text_len += len(line) + 2
            match = _LITERAL_END.search(line)
            if match is None:
                self._pieces.append(line)
                pieces, self._pieces = self._pieces, []
                self._reset()
                return parse(pieces)
            size, sync = int(match.group(1)), not match.group(2)
            self._pieces.append(line[: match.start()])
            first = self._pieces[0]
            tag = self._tag_guess(first if isinstance(first, bytes) else b"")
            literals = sum(isinstance(p, _Literal) for p in self._pieces)
            if size > self.literal_limit or literals >= MAX_LITERALS:
                self._reset()
                if not sync:
                    self._discard = size  # sent anyway: drop it, then the rest of its line
                    self._skip_line = True
                return Invalid(tag, "[TOOBIG] Literal too large.")
            self._need = size
            if sync:
                return Continue()


def _lex(pieces: list[bytes | _Literal]) -> list[str | bytes | _Paren]:
    out: list[str | bytes | _Paren] = []
    for piece in pieces:
        if isinstance(piece, _Literal):
            out.append(piece.data)
            continue
        text, i, n = piece, 0, len(piece)
        while i < n:
            c = text[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:
                out.append(_LP)
                i += 1
            elif c == 0x29:
                out.append(_RP)
                i += 1
            elif c == 0x22:
                buf = bytearray()
                j = i + 1
                while True:
                    if j >= n:
                        raise ParseError("Missing '\"'")
                    ch = text[j]
                    if ch == 0x5C:
                        j += 1
                        if j >= n or text[j] not in (0x22, 0x5C):
                            raise ParseError("Invalid escape in quoted string")
                        buf.append(text[j])
                    elif ch == 0x22:
                        break
                    elif ch in (0, 0x0A, 0x0D):
                        raise ParseError("Invalid character in quoted string")
                    else:
                        buf.append(ch)
                    j += 1
                out.append(bytes(buf))
                i = j + 1
            elif c < 0x20 or c == 0x7F or c == 0x7B:
                raise ParseError("Unexpected character")
            else:
                j, depth = i, 0
                while j < n:
                    ch = text[j]
                    if ch < 0x20 or ch == 0x7F:
                        raise ParseError("Invalid characters in atom")
                    if ch == 0x5B:
                        depth += 1
                    elif ch == 0x5D and depth:
                        depth -= 1
                    elif depth == 0 and ch in (0x20, 0x28, 0x29, 0x22, 0x7B):
                        break
                    j += 1
                if depth:
                    raise ParseError("Missing ']'")
                out.append(text[i:j].decode("utf-8", "replace"))
                i = j
    return out


def _nest(lexemes: list[str | bytes | _Paren]) -> list[Value]:
    stack: list[list[Value]] = [[]]
    for lexeme in lexemes:
        if lexeme is _LP:
            if len(stack) > MAX_DEPTH:
                raise ParseError("Too deeply nested")
            inner: list[Value] = []
            stack[-1].append(inner)
            stack.append(inner)
        elif lexeme is _RP:
            if len(stack) == 1:
                raise ParseError("Unexpected ')'")
            stack.pop()
        else:
            assert not isinstance(lexeme, _Paren)
            stack[-1].append(lexeme)
    if len(stack) != 1:
        raise ParseError("Missing ')'")
    return stack[0]


def parse(pieces: list[bytes | _Literal]) -> Command | Invalid:
    first = pieces[0] if pieces and isinstance(pieces[0], bytes) else b""
    tag_bytes = first.lstrip(b" ").split(b" ", 1)[0]
    if (not tag_bytes or len(tag_bytes) > 64
            or any(c in _TAG_FORBIDDEN or c < 0x21 or c > 0x7E for c in tag_bytes)):
        return Invalid("*", "Invalid tag.")
    tag = tag_bytes.decode("ascii")
    try:
        values = _nest(_lex(pieces))
    except ParseError as exc:
        return Invalid(tag, f"{exc}.")
    if len(values) < 2 or not isinstance(values[1], str):
        return Invalid(tag, "Missing command.")
    name = values[1].upper()
    args = values[2:]
    if name == "UID":
        if not args or not isinstance(args[0], str):
            return Invalid(tag, "Missing UID command.")
        name = "UID " + args[0].upper()
        args = args[1:]
    return Command(tag, name, args)
