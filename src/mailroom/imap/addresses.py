"""ENVELOPE address lists (RFC 3501 §7.4.2, §9) from raw header field values.

email.utils.getaddresses is built for sending mail, not for ENVELOPE: it drops group
markers, keeps the quotes of a quoted local part, reads comments into display names and
splits a source route into bogus addresses. This module reads RFC 5322 §3.4 address lists
(with the obsolete §4.4 syntax) the way Dovecot 2.3 (lib-mail/message-address.c) and UW
c-client do, so FETCH ENVELOPE matches what IMAP clients are used to:

* a group is a (NIL NIL "name" NIL) start marker, its members, and a (NIL NIL NIL NIL)
  end marker, also when the closing ";" is missing;
* a quoted local part loses its quotes and escapes: "john..doe"@x gives "john..doe";
* comments are CFWS, never part of a name; an addr-spec without a display name takes its
  last comment as the name (`a@b (Ann)`), as Dovecot and c-client do;
* a source route goes to the second (adl) field: "@relay.example,@gw.example";
* a missing local part or domain gives "MISSING_MAILBOX" / "MISSING_DOMAIN" (Dovecot's
  placeholders), never NIL, which would make the address a group marker; a route without
  its ":" gives Dovecot's "INVALID_ROUTE";
* display names: a quoted-string's content is kept exactly (escapes resolved), unquoted
  words (atoms, RFC 2047 encoded-words, which ENVELOPE returns undecoded) are joined by one
  space; 8-bit bytes (surrogateescape) come back unchanged.

Where Dovecot 2.3 gives up on malformed input, this reader keeps what it can: empty list
items are skipped (RFC 5322 §4.4), CFWS around the dots of obs-local-part and obs-domain is
allowed, junk after an address is skipped up to the next ",", words before an addr-spec
without angle brackets are its display name, and a broken angle-addr keeps the domain it
holds (Dovecot writes "SYNTAX_ERROR" over it).

Nothing raises and the work is linear in the input: one tokenizing pass (regexes with no
nested repetition) and index walks over the tokens. The common lists (`name <a@b>`,
`"quoted" <a@b>`, `a@b`) take a regex fast path that gives the same bytes.
"""

from __future__ import annotations

import re

from mailroom.imap.responses import string

__all__ = ["INVALID_ROUTE", "MISSING_DOMAIN", "MISSING_MAILBOX", "Address", "envelope_addresses", "parse"]

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"
INVALID_ROUTE = "INVALID_ROUTE"

# (name, adl, mailbox, host), each None for NIL. A group start is (None, None, name, None),
# a group end (None, None, None, None).
Address = tuple[str | None, str | None, str | None, str | None]
# (kind, text, preceded by white space or a comment). Kinds: "a" atom (dots included),
# "q" quoted-string (content, unescaped), "l" domain literal (as written), "c" comment
# (content, unescaped), or the special character itself: ) < > @ , ; : ]
_Token = tuple[str, str, bool]

_GROUP_END: Address = (None, None, None, None)
_FOLD = re.compile(r"\r?\n")  # what mime._unfold removes
_WS_CHARS = " \t\r\n"  # RFC 5322 WSP and the line ends of a not yet unfolded value
_WS_RUN = re.compile(r"[ \t\r\n]+")
# Anything but white space and specials: controls and 8-bit (surrogateescape) bytes are
# taken as atext, dots are kept inside the atom ("J.", "first.last") and a stray backslash
# is text, so malformed input still gives words rather than errors.
_ATOM = re.compile(r'[^ \t\r\n()<>@,;:"\[\]]+')
# An unterminated quoted-string or domain literal runs to the end of the value: bounded
# work, where retrying from each later quote could be quadratic.
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)(?:"|\\?\Z)', re.DOTALL)
_LITERAL = re.compile(r"\[[^\]\\]*(?:\\.[^\]\\]*)*(?:\]|\\?\Z)", re.DOTALL)
_COMMENT_STOP = re.compile(r"[()\\]")
_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SPECIALS = ")<>@,;:]"
_GROUP_STOPS = ":@<>,;"  # a top-level item is a group if ":" comes first of these

# Fast path: one regex per item for lists made only of `name <a@b>`, `"quoted" <a@b>` and
# `a@b` (no comments, groups, escapes, routes or literals). A name is atoms separated by
# [ \t\r\n] (other white space, \s, is not in an atom here and sends the value to the full
# parser), so str.split() squeezes exactly what the tokenizer would. Possessive
# quantifiers leave no two ways to match a run of spaces: linear, where `name*?\s*<` is
# quadratic in a run of spaces with no "<" after it.
_F_ATOM = r'[^\s<>@,"()\\:;\[\]]++'
_F_ITEM = re.compile(
    rf'[ \t\r\n]*+(?:"([^"\\\r\n]*+)"[ \t\r\n]*+<({_F_ATOM})@({_F_ATOM})>'  # "quoted" <a@b>
    rf"|((?:{_F_ATOM}[ \t\r\n]*+)*+)<({_F_ATOM})@({_F_ATOM})>"  # plain name <a@b>
    rf"|({_F_ATOM})@({_F_ATOM}))"  # a@b
    r"[ \t\r\n]*+(?:,|\Z)")


def envelope_addresses(values: list[str]) -> bytes:
    """The ENVELOPE field for one header (all its occurrences, in order, as Dovecot joins
    them): NIL without an address, else "(" 1*address ")" with no space between addresses
    (RFC 3501 §9). Values are raw field values, 8-bit bytes as surrogateescape."""
    out = [_address(a) for a in parse(values)]
    return b"(" + b"".join(out) + b")" if out else b"NIL"


def parse(values: list[str]) -> list[Address]:
    """The addresses and group markers of the values, in order."""
    found: list[Address] = []
    for value in values:
        if "\n" in value:
            value = _FOLD.sub("", value)
        if "\x00" in value:  # not allowed in an IMAP string (RFC 3501 §9 CHAR8)
            value = value.replace("\x00", "\ufffd")
        fast = _fast(value)
        found += fast if fast is not None else _parse_tokens(_tokens(value))
    return found


def _nstring(value: str | None) -> bytes:
    return string(value)  # str: string() encodes with surrogateescape itself


def _address(a: Address) -> bytes:
    return b"(%s %s %s %s)" % (_nstring(a[0]), _nstring(a[1]), _nstring(a[2]), _nstring(a[3]))


def _fast(value: str) -> list[Address] | None:
    """The addresses of a simple list, or None when the value needs the full parser."""
    found: list[Address] = []
    pos, end = 0, len(value)
    match = _F_ITEM.match
    while pos < end:
        m = match(value, pos)
        if m is None:
            return None
        if m[2] is not None:
            found.append((m[1] or None, None, m[2], m[3]))
        elif m[5] is not None:
            found.append((" ".join(m[4].split()) or None, None, m[5], m[6]))
        else:
            found.append((None, None, m[7], m[8]))
        pos = m.end()
    return found


# ----------------------------------------------------------------------------- tokens
def _comment(value: str, pos: int) -> tuple[str, int]:
    """A comment's content (nested comments kept as written, quoted-pairs resolved) and
    the position after it; an unclosed comment runs to the end of the value."""
    depth, parts = 1, []
    start = at = pos + 1
    search = _COMMENT_STOP.search
    while True:
        m = search(value, at)
        if m is None:
            parts.append(value[start:])
            return "".join(parts), len(value)
        j = m.start()
        c = value[j]
        if c == "\\":
            parts.append(value[start:j])
            start, at = j + 1, j + 2
        elif c == "(":
            depth += 1
            at = j + 1
        else:
            depth -= 1
            if depth == 0:
                parts.append(value[start:j])
                return "".join(parts), j + 1
            at = j + 1


def _tokens(value: str) -> list[_Token]:
    """RFC 5322 §3.2 lexical tokens; white space only sets the next token's flag."""
    out: list[_Token] = []
    pos, end, space = 0, len(value), False
    while pos < end:
        c = value[pos]
        if c in _WS_CHARS:
            m = _WS_RUN.match(value, pos)
            pos = m.end() if m else pos + 1
            space = True
            continue
        if c == "(":
            text, pos = _comment(value, pos)
            out.append(("c", text, space))
            space = True
            continue
        if c == '"':
            m = _QUOTED.match(value, pos)
            if m is None:  # cannot happen: the pattern matches any rest of a value
                break
            text = m[1]
            if "\\" in text:
                text = _PAIR.sub(r"\1", text)
            out.append(("q", text, space))
            pos = m.end()
        elif c == "[":
            m = _LITERAL.match(value, pos)
            if m is None:
                break
            out.append(("l", m[0], space))
            pos = m.end()
        elif c in _SPECIALS:
            out.append((c, c, space))
            pos += 1
        else:
            m = _ATOM.match(value, pos)
            if m is None:
                break
            out.append(("a", m[0], space))
            pos = m.end()
        space = False
    return out


# ----------------------------------------------------------------------------- grammar
def _parse_tokens(tokens: list[_Token]) -> list[Address]:
    """address-list = (address *("," address)) / obs-addr-list; empty items are skipped
    (RFC 5322 §4.4), anything unreadable up to the next "," is skipped too."""
    found: list[Address] = []
    i, n = 0, len(tokens)
    while i < n:
        if tokens[i][0] == ",":
            i += 1
            continue
        j = i
        while j < n and tokens[j][0] not in _GROUP_STOPS:
            j += 1
        if j < n and tokens[j][0] == ":":
            i = _group(tokens, i, j, found)
        else:
            i = _mailbox(tokens, i, False, found)
    return found


def _group(tokens: list[_Token], i: int, colon: int, found: list[Address]) -> int:
    """group = display-name ":" [group-list] ";" [CFWS]: start marker, members, end
    marker; a missing ";" ends the group with the value. Returns the next "," index."""
    n = len(tokens)
    found.append((None, None, _phrase(tokens, i, colon) or "", None))  # "" is not NIL
    i = colon + 1
    while i < n:
        kind = tokens[i][0]
        if kind == ";":
            i += 1
            break
        if kind == ",":
            i += 1
            continue
        i = _mailbox(tokens, i, True, found)
    found.append(_GROUP_END)
    while i < n and tokens[i][0] != ",":
        i += 1
    return i


def _mailbox(tokens: list[_Token], i: int, in_group: bool, found: list[Address]) -> int:
    """mailbox = name-addr / addr-spec, from token i up to the next "," (or ";" in a
    group) outside a source route; appends at most one address and returns that index."""
    n = len(tokens)
    j, angle = i, -1
    route: str | None = None
    route_end = -1
    while j < n:
        kind = tokens[j][0]
        if kind == "," or (kind == ";" and in_group):
            break
        if kind == "<" and angle < 0:
            angle = j
            route, route_end = _route(tokens, j + 1, n)
            if route is not None:
                j = route_end
                continue
        j += 1
    if angle >= 0:  # name-addr = [display-name] angle-addr
        start = route_end if route is not None else angle + 1
        close = start
        while close < j and tokens[close][0] != ">":
            close += 1
        _, local, domain, _ = _addr_spec(tokens, start, close)
        found.append((_phrase(tokens, i, angle) or None, route, MISSING_MAILBOX if local is None else local,
                       domain or MISSING_DOMAIN))
        return j
    at, local, domain, local_start = _addr_spec(tokens, i, j)
    if at >= 0:  # addr-spec, maybe after words that can only be a display name
        name = _phrase(tokens, i, local_start) or _last_comment(tokens, local_start, j)
        found.append((name, None, MISSING_MAILBOX if local is None else local, domain or MISSING_DOMAIN))
        return j
    first = i
    while first < j and tokens[first][0] == "c":
        first += 1
    if first == j:  # only CFWS: an empty list item
        return j
    if local is not None and local_start == first:  # `local-only`: no domain
        found.append((_last_comment(tokens, local_start, j), None, local, MISSING_DOMAIN))
    else:  # words and no address at all (`a b c`): a name, as Dovecot reads it
        found.append((_phrase(tokens, i, j), None, MISSING_MAILBOX, MISSING_DOMAIN))
    return j


def _route(tokens: list[_Token], k: int, n: int) -> tuple[str | None, int]:
    """obs-route = obs-domain-list ":" right after "<": ("@a,@b", index after ":"); a
    domain list without its ":" gives Dovecot's ("INVALID_ROUTE", index where it stops),
    and anything else (None, -1)."""
    while k < n and tokens[k][0] == "c":
        k += 1
    if k >= n or tokens[k][0] != "@":
        return None, -1
    parts: list[str] = []
    while k < n and tokens[k][0] == "@":
        domain, k = _run_forward(tokens, k + 1, n)
        if domain is None:
            return INVALID_ROUTE, k
        parts.append("@" + domain)
        while k < n and tokens[k][0] in "c,":
            k += 1
    if k < n and tokens[k][0] == ":":
        return ",".join(parts), k + 1
    return INVALID_ROUTE, k


def _addr_spec(tokens: list[_Token], s: int, e: int) -> tuple[int, str | None, str | None, int]:
    """local-part "@" domain within tokens[s:e]: (index of "@" or -1, local part, domain,
    index where the local part starts). The local part is the dot-connected run of words
    right before the first "@" (or before e when there is none)."""
    at = s
    while at < e and tokens[at][0] != "@":
        at += 1
    local_start, local = _run_backward(tokens, s, at)
    if at == e:
        return -1, local, None, local_start
    domain, _ = _run_forward(tokens, at + 1, e)
    return at, local, domain, local_start


def _connected(left: _Token, right: _Token) -> bool:
    """obs-local-part / obs-domain: words joined by "." with optional CFWS around it."""
    return (left[0] == "a" and left[1].endswith(".")) or (right[0] == "a" and right[1].startswith("."))


def _run_backward(tokens: list[_Token], s: int, e: int) -> tuple[int, str | None]:
    """The local part ending just before index e: (its first index, its text or None)."""
    parts: list[str] = []
    right: _Token | None = None
    start = k = e
    while k > s:
        k -= 1
        token = tokens[k]
        if token[0] == "c":
            continue
        if token[0] not in "aq" or (right is not None and not _connected(token, right)):
            break
        parts.append(token[1])
        right, start = token, k
    return start, "".join(reversed(parts)) if parts else None


def _run_forward(tokens: list[_Token], k: int, e: int) -> tuple[str | None, int]:
    """The domain starting at index k: (its text or None, the index after it)."""
    parts: list[str] = []
    left: _Token | None = None
    end = k
    while k < e:
        token = tokens[k]
        k += 1
        if token[0] == "c":
            continue
        if token[0] not in "al" or (left is not None and not _connected(left, token)):
            break
        parts.append(token[1])
        left, end = token, k
    return ("".join(parts) if parts else None), end


def _phrase(tokens: list[_Token], i: int, j: int) -> str | None:
    """A display name: words joined by one space (a quoted-string's content as it is),
    stray specials kept where they stand, comments left out; None without any word."""
    parts: list[str] = []
    words = prev_word = False
    for k in range(i, j):
        kind, text, space = tokens[k]
        if kind == "c":
            continue
        word = kind in "aql"
        if parts and (space or (word and prev_word)):
            parts.append(" ")
        parts.append(text)
        prev_word = word
        words = words or word
    return "".join(parts) if words else None


def _last_comment(tokens: list[_Token], i: int, j: int) -> str | None:
    """The name of an addr-spec without a display name: its last comment, as Dovecot and
    c-client read `john@example.org (John at home)`."""
    for k in range(j - 1, i - 1, -1):
        if tokens[k][0] == "c":
            return tokens[k][1] or None
    return None
