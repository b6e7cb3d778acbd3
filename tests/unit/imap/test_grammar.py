"""The IMAP grammar, sequence sets and the core's robustness against any bytes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.imap.memory_backend import MemoryBackend

import mailroom.imap
from mailroom.imap import grammar
from mailroom.imap.events import NEED_DATA, ConnectionClosed, Credentials, Execute, ImapSettings
from mailroom.imap.grammar import Command, CommandReader, Continue, Invalid
from mailroom.imap.sequence import SequenceError, format_set, parse_set, resolve_seq, resolve_uids
from mailroom.imap.server import ServerConnection


def read_all(data: bytes, limit: int = grammar.MAX_LITERAL) -> list[object]:
    reader = CommandReader()
    reader.literal_limit = limit
    reader.feed(data)
    out: list[object] = []
    while (item := reader.next()) is not None:
        out.append(item)
    return out


def test_atoms_quoted_lists_and_literals() -> None:
    items = read_all(b'a1 LOGIN "jo\\"hn" {3}\r\np w\r\n')
    assert items == [Continue(), Command("a1", "LOGIN", [b'jo"hn', b"p w"])]
    (cmd,) = read_all(b"t FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n")
    assert isinstance(cmd, Command)
    assert cmd.args == ["1:*", ["FLAGS", "BODY.PEEK[HEADER.FIELDS (From To)]<0.100>"]]
    (cmd,) = read_all(b"t uid fetch 1 (a (b {1+}\r\nx) c)\r\n")
    assert cmd == Command("t", "UID FETCH", ["1", ["a", ["b", b"x"], "c"]])


def test_limits() -> None:
    assert read_all(b"t LOGIN {9000}\r\n", limit=8192) == [Invalid("t", "[TOOBIG] Literal too large.")]
    long_line = b"t NOOP " + b"x" * (grammar.MAX_COMMAND + 10) + b"\r\nu NOOP\r\n"
    items = read_all(long_line)
    assert items == [Invalid("t", "Too long command line."), Command("u", "NOOP", [])]
    deep = b"t X " + b"(" * 100 + b")" * 100 + b"\r\n"
    assert read_all(deep) == [Invalid("t", "Too deeply nested.")]


def test_sequence_sets() -> None:
    assert resolve_seq(parse_set("1,3:2,*"), 5) == [1, 2, 3, 5]
    assert resolve_uids(parse_set("4:*"), [1, 2, 7, 9]) == [7, 9]
    assert resolve_uids(parse_set("100:*"), [1, 2]) == [2]  # RFC 3501: "*" is the highest UID
    assert resolve_uids(parse_set("1:4294967295"), []) == []
    assert format_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    for bad in ("", "0", "1:", "a", "1,,2", "4294967296", "01"):
        with pytest.raises(SequenceError):
            parse_set(bad)
    with pytest.raises(SequenceError):
        resolve_seq(parse_set("1:3"), 2)


def drive(data: bytes) -> bytes:
    conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False, max_bad_commands=10**6))
    backend = MemoryBackend()
    backend.boxes["INBOX"].add(b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n")
    out = bytearray(conn.initiate())
    conn.receive_data(data)
    conn.receive_data(b"")
    while True:
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            break
        if isinstance(event, Credentials):
            conn.accept_login(backend)
        elif isinstance(event, Execute):
            conn.execute()
            assert conn.last_error is None, repr(conn.last_error)
        out += conn.data_to_send()
    return bytes(out + conn.data_to_send())


PREFIX = b"a LOGIN u p\r\nb SELECT INBOX\r\n"
WORDS = st.sampled_from([b"FETCH", b"UID", b"SEARCH", b"STORE", b"1:*", b"*", b"(", b")", b"[", b"]",
                         b"BODY[1]", b"BODY.PEEK[HEADER.FIELDS (A)]<0.5>", b"{3}\r\nabc", b"{2+}\r\nab",
                         b'"q"', b"NOT", b"OR", b"\\Seen", b"+FLAGS", b"COPY", b"MOVE", b"INBOX", b"APPEND",
                         b"ENVELOPE", b"BODYSTRUCTURE", b"SINCE", b"1-Jan-2020", b"EXPUNGE", b"LIST", b"%", b" ",
                         b"\r\n", b"t ", b"\x00", b"\xff", b"IDLE", b"DONE"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    drive(data)
    drive(PREFIX + data)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=40))
def test_random_commands_never_raise(words: list[bytes]) -> None:
    drive(PREFIX + b"t " + b" ".join(words) + b"\r\n")


def test_core_imports_no_io() -> None:
    """No asyncio or ssl at all; socket only arrives with the stdlib email package (email.utils)."""
    code = ("import sys; import mailroom.imap.server, mailroom.imap.search, mailroom.imap.mime; "
            "bad = {'asyncio', 'ssl'} & set(sys.modules); print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    package = Path(mailroom.imap.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text("utf-8")
        assert not re.search(r"^\s*(import|from)\s+(asyncio|socket|ssl)\b", text, re.M), source.name
