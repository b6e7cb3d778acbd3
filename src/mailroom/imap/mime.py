"""A message's MIME tree on bytes, for FETCH: sections, ENVELOPE, BODYSTRUCTURE.

Messages are handed over with CRLF line ends. The tree keeps exact byte ranges, so
`BODY[1.2]` is the octets the client would count; header fields are decoded with
Python's email package (compat32, no re-encoding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser

from mailroom.imap.addresses import envelope_addresses
from mailroom.imap.responses import plist, string

MAX_PARTS = 500  # parts of one message we look into
MAX_NESTING = 20


def to_crlf(data: bytes) -> bytes:
    if b"\r" not in data:  # a Maildir file as delivered (LF): one pass, not two
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_header(data: bytes) -> bytes:
    """split_header(to_crlf(data))[0] without converting the body: ENVELOPE needs only this."""
    if data.startswith((b"\n", b"\r\n")):
        return b"\r\n"
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    if ends:  # the first blank line, whatever its line ends: keep it, drop the body
        end = min(ends)
        data = data[: end + (2 if data[end + 1 : end + 2] == b"\n" else 3)]
    return split_header(to_crlf(data))[0]


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """Header (with its blank line) and body."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 4], data[end + 4 :]


@dataclass
class Part:
    header: bytes
    body: bytes
    headers: Message
    children: list[Part] = field(default_factory=list)  # multipart parts
    message: Part | None = None  # message/rfc822 content

    @property
    def ctype(self) -> tuple[str, str]:
        value = self.headers.get_content_type()
        main, _, sub = value.partition("/")
        return main.upper(), sub.upper()


_parser = BytesHeaderParser()
_FOLD = re.compile(r"\r?\n")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # str.splitlines() breaks here too


def raw_fields(header: bytes, wanted: frozenset[str] | None = None) -> dict[str, list[str]]:
    """Field values by lower-case name, exactly as email's BytesHeaderParser with compat32 and
    raw_items() would give them (tested against it), without building a Message: ENVELOPE of
    10,000 messages spends most of its time there otherwise. With `wanted` (lower-case
    names), only those fields."""
    fields: dict[str, list[str]] = {}
    text = header.decode("ascii", "surrogateescape")
    # splitlines() breaks at CR, LF and CRLF as feedparser does, and also at a few other
    # controls, which feedparser does not: only then is the line regex needed.
    all_lines = _LINE.findall(text) if _OTHER_BREAKS.search(text) else text.splitlines(keepends=True)
    name, value = "", [""]
    for line in all_lines:
        first = line[:1]
        if first in (" ", "\t"):
            if name:
                value.append(line)
            continue  # a continuation before any field is dropped, as feedparser drops it
        colon = line.find(":")
        field_name = line[:colon] if colon >= 0 else ""
        # email.feedparser's headerRE: "From ", or [\041-\071\073-\176]*: (printable ASCII
        # without space up to the first colon, maybe none), or a continuation (above).
        if not (colon >= 0 and field_name.isascii() and field_name.isprintable() and " " not in field_name) \
                and not line.startswith("From "):
            break  # a blank line, or a line that is no header: the body starts here
        if name:
            fields.setdefault(name.lower(), []).append(_source_value(value))
            name = ""
        if line.startswith("From "):
            continue  # the Unix "From " line, or a misplaced one: never a field
        if colon > 0 and (wanted is None or field_name.lower() in wanted):
            name, value = field_name, [line]
    if name:
        fields.setdefault(name.lower(), []).append(_source_value(value))
    return fields


def _source_value(lines: list[str]) -> str:
    """compat32's header_source_parse: the value after the colon, continuations kept."""
    first = lines[0].split(":", 1)[1]
    return (first.lstrip(" \t") + "".join(lines[1:])).rstrip("\r\n")


def parse(data: bytes, *, default: str = "text/plain", depth: int = 0, budget: list[int] | None = None) -> Part:
    budget = budget if budget is not None else [MAX_PARTS]
    budget[0] -= 1
    header, body = split_header(data)
    headers = _parser.parsebytes(header)
    if "content-type" not in headers:
        headers.set_default_type(default)
        if default == "message/rfc822":
            headers.set_default_type("message/rfc822")
    part = Part(header, body, headers)
    main, sub = part.ctype if "content-type" in headers else tuple(default.upper().split("/", 1))
    if depth >= MAX_NESTING or budget[0] <= 0:
        return part
    if main == "MULTIPART":
        boundary = headers.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            child_default = "message/rfc822" if sub == "DIGEST" else "text/plain"
            for chunk in _split_multipart(body, boundary.encode("utf-8", "replace")):
                part.children.append(parse(chunk, default=child_default, depth=depth + 1, budget=budget))
    elif (main, sub) == ("MESSAGE", "RFC822"):
        part.message = parse(body, depth=depth + 1, budget=budget)
    return part


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    pattern = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|$)")
    chunks: list[bytes] = []
    start: int | None = None
    for match in pattern.finditer(body):
        if start is not None:
            chunks.append(body[start : match.start()])
        if match.group(1):
            break
        start = match.end()
        if len(chunks) >= MAX_PARTS:
            break
    return chunks


def _ctype_of(part: Part) -> tuple[str, str]:
    if "content-type" in part.headers:
        return part.ctype
    main, _, sub = part.headers.get_default_type().partition("/")
    return main.upper(), sub.upper()


def find(root: Part, numbers: Sequence[int]) -> Part | None:
    """The part named by "1.2.3" (RFC 3501 §6.4.5), or None when there is no such part.

    A message (the top level, or one encapsulated in a MESSAGE/RFC822 part) that is not
    multipart has exactly one part, 1: its own body, described by the same Part. A
    MESSAGE/RFC822 part's sub-parts are those of the message it carries. Other leaf parts
    have no sub-parts."""
    part, is_message = root, True
    for index, n in enumerate(numbers):
        if part.children:
            if not 0 < n <= len(part.children):
                return None
            part, is_message = part.children[n - 1], False
        elif is_message and n == 1:
            is_message = False
        else:
            return None
        if index < len(numbers) - 1 and part.message is not None:
            part, is_message = part.message, True
    return part


# ------------------------------------------------------------------ ENVELOPE
def _fields(headers: Message) -> dict[str, list[str]]:
    """Field values by lower-case name, as they are in the message: raw_items() bypasses
    compat32's decoding, which would turn raw 8-bit bytes (UTF-8 subjects) into U+FFFD."""
    fields: dict[str, list[str]] = {}
    for key, value in headers.raw_items():
        fields.setdefault(key.lower(), []).append(value)
    return fields


def _unfold(value: str) -> str:
    return _FOLD.sub("", value)


def _first(fields: dict[str, list[str]], name: str) -> bytes | None:
    text = _first_text(fields, name)
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _first_text(fields: dict[str, list[str]], name: str) -> str | None:
    """The first value, unfolded; 8-bit bytes as surrogateescape (string() restores them)."""
    values = fields.get(name)
    return _unfold(values[0]) if values else None


def _header(headers: Message, name: str) -> bytes | None:
    return _first(_fields(headers), name)


def _addresses(fields: dict[str, list[str]], name: str) -> bytes:
    return envelope_addresses(fields.get(name) or [])


def envelope(headers: Message) -> bytes:
    return envelope_of(_fields(headers))


ENVELOPE_FIELDS = frozenset({"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
                             "in-reply-to", "message-id"})


def envelope_of(fields: dict[str, list[str]]) -> bytes:
    """ENVELOPE from raw field values (raw_fields(), or a parsed part's)."""
    sender = any(v.strip() for v in fields.get("sender", ()))
    reply_to = any(v.strip() for v in fields.get("reply-to", ()))
    from_ = _addresses(fields, "from")  # also Sender and Reply-To when they are missing
    return plist([
        string(_first_text(fields, "date")),
        string(_first_text(fields, "subject")),
        from_,
        _addresses(fields, "sender") if sender else from_,
        _addresses(fields, "reply-to") if reply_to else from_,
        _addresses(fields, "to"),
        _addresses(fields, "cc"),
        _addresses(fields, "bcc"),
        string(_first_text(fields, "in-reply-to")),
        string(_first_text(fields, "message-id")),
    ])


# ------------------------------------------------------------- BODYSTRUCTURE
_PARAM_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:"|$)|[;=]|[^;="\s]+|\s+', re.S)  # one pass, no backtracking
_SECTION = re.compile(r"(.+)\*([0-9]{1,3})(\*?)")
_ATTRIBUTE_CHARS = frozenset("!#$&+-.^_`|~" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _raw_pairs(value: str) -> list[tuple[str, str]]:
    """`; key=value` pairs after the media type, quotes removed, in order; junk is skipped."""
    pairs: list[tuple[str, str]] = []
    key: str | None = None
    expect = "semicolon"
    for token in _PARAM_TOKEN.findall(value):
        if token.isspace():
            continue
        if token == ";":
            key, expect = None, "key"
        elif expect == "key" and token != "=":
            key, expect = token.lower(), "equals"
        elif expect == "equals" and token == "=":
            expect = "value"
        elif expect == "value" and key is not None:
            if token.startswith('"'):
                token = _QUOTED_PAIR.sub(r"\1", token[1:-1] if len(token) > 1 and token.endswith('"') else token[1:])
            pairs.append((key, token))
            key, expect = None, "semicolon"
    return pairs


def param_pairs(value: str) -> list[tuple[str, str]]:
    """A field's parameters as written, nothing decoded, with RFC 2231 continuations
    (key*0, key*1*, ...) joined as Dovecot joins them: into `key*`, still encoded, when
    any section is encoded, else into `key`."""
    order: list[tuple[str, str | None]] = []  # None: the joined sections of that name go here
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for key, text in _raw_pairs(value):
        section = _SECTION.fullmatch(key)
        if section is None:
            order.append((key, text))
            continue
        if section[1] not in sections:
            order.append((section[1], None))
        sections.setdefault(section[1], []).append((int(section[2]), bool(section[3]), text))
    pairs: list[tuple[str, str]] = []
    for key, maybe_text in order:
        if maybe_text is not None:
            pairs.append((key, maybe_text))
            continue
        parts = sorted(sections[key])
        if any(encoded for _, encoded, _ in parts):
            pairs.append((key + "*", "".join(t if encoded else _percent(t) for _, encoded, t in parts)))
        else:
            pairs.append((key, "".join(t for _, _, t in parts)))
    return pairs


def _percent(text: str) -> str:
    """An unencoded RFC 2231 section joined to encoded ones must be encoded too."""
    return "".join(c if c in _ATTRIBUTE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
                   for c in text)


def _params(headers: Message, name: str = "content-type") -> bytes:
    values = _fields(headers).get(name)
    pairs = param_pairs(_unfold(values[0])) if values else []
    if not pairs:
        return b"NIL"
    items: list[bytes] = []
    for key, text in pairs:
        items += [string(key.upper()), string(text.encode("utf-8", "surrogateescape"))]
    return plist(items)


def _language(headers: Message) -> bytes:
    """body-fld-lang: one string, or a list when Content-Language names several (RFC 3282)."""
    value = _header(headers, "content-language")
    tags = [t.strip() for t in value.split(b",") if t.strip()] if value is not None else []
    if not tags:
        return b"NIL"
    return string(tags[0]) if len(tags) == 1 else plist(string(t) for t in tags)


def _location(headers: Message) -> bytes:
    """body-fld-loc: Content-Location's URI (RFC 2557), folding white space removed."""
    value = _header(headers, "content-location")
    return string(b"".join(value.split())) if value is not None else b"NIL"


def _disposition(headers: Message) -> bytes:
    value = headers.get("content-disposition")
    if value is None:
        return b"NIL"
    kind = str(value).split(";", 1)[0].strip().upper()
    return plist([string(kind or None), _params(headers, "content-disposition")])


def bodystructure(part: Part, *, extended: bool = True) -> bytes:
    main, sub = _ctype_of(part)
    headers = part.headers
    if part.children:
        items = b"".join(bodystructure(child, extended=extended) for child in part.children)
        out = [items, string(sub)]
        if extended:
            out += [_params(headers), _disposition(headers), _language(headers), _location(headers)]
        return b"(" + b" ".join(out) + b")"
    if main == "MULTIPART":  # no parts found: describe it as an empty text part
        main, sub = "TEXT", "PLAIN"
    params = _params(headers)
    if params == b"NIL" and main == "TEXT":
        params = plist([string("CHARSET"), string("us-ascii")])
    encoding = (_header(headers, "content-transfer-encoding") or b"7bit").strip().upper()
    fields = [string(main), string(sub), params, string(_header(headers, "content-id")),
              string(_header(headers, "content-description")), string(encoding),
              str(len(part.body)).encode()]
    # Line ends, as Dovecot and UW c-client count: the CRLF before a boundary belongs to the
    # boundary (RFC 2046 §5.1.1), so a one-line part without its own line end has 0 lines.
    lines = str(part.body.count(b"\n")).encode()
    if part.message is not None:
        fields += [envelope(part.message.headers), bodystructure(part.message, extended=extended), lines]
    elif main == "TEXT":
        fields.append(lines)
    if extended:
        fields += [string(_header(headers, "content-md5")), _disposition(headers),
                   _language(headers), _location(headers)]
    return b"(" + b" ".join(fields) + b")"


# ------------------------------------------------------------------- sections
def header_fields(header: bytes, names: Sequence[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields, then the blank line."""
    wanted = {n.lower() for n in names}
    out = bytearray()
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out += line + b"\r\n"
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = (name in wanted) != exclude
        if keep:
            out += line + b"\r\n"
    return bytes(out) + b"\r\n"
