"""RFC 3030 BDAT in the sans-IO SMTP core: what the dialogs do not show.

The replies are Debian Postfix 3.7.11's (recorded in tests/interop/test_postfix_bdat.py);
the properties below check that chunk framing does not depend on how the bytes arrive
and that a message sent with BDAT is the one DATA would have given.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.properties.test_smtp_core_properties import SESSION_PIECES, drive, split

from mailroom.smtp import replies
from mailroom.smtp.bdat import MAX_CHUNK, BdatArgs, ChunkedMessage, parse_bdat
from mailroom.smtp.events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    MessageReceived,
    ServerSettings,
)
from mailroom.smtp.server import ServerConnection

SETTINGS = ServerSettings(hostname="mx.example.org", banner="mx.example.org ESMTP mailroom")
OPEN = b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<john@example.org>\r\n"
OPENED = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"


def run(data: bytes, settings: ServerSettings = SETTINGS, *, eof: bool = False) -> tuple[list[Event], bytes]:
    """Feed data, accept every event (queue id Q1), return the events and the replies after EHLO."""
    conn = ServerConnection(settings)
    conn.initiate()
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        assert isinstance(event, Event)
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
        if isinstance(event, MessageReceived):
            conn.accept(queue_id="Q1")
        elif event.needs_reply:
            conn.accept()
    out = conn.data_to_send()
    return events, out[out.index(b"250 CHUNKING\r\n") + 14 :]


# -- the command's argument -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "parsed"),
    [
        ("5", BdatArgs(5, False)),
        ("0 LAST", BdatArgs(0, True)),
        ("005 last", BdatArgs(5, True)),
        (" 5  LAST ", BdatArgs(5, True)),
        ("5\tLaSt", BdatArgs(5, True)),
        (str(MAX_CHUNK), BdatArgs(MAX_CHUNK, False)),
    ],
)
def test_bdat_arguments_postfix_accepts(arg: str, parsed: BdatArgs) -> None:
    assert parse_bdat(arg) == parsed


@pytest.mark.parametrize(
    "arg",
    ["", " ", "x", "5 FOO", "-1", "+5", "5x", "0x5", "5 LAST X", "LAST", "５", "²",
     str(MAX_CHUNK + 1), "99999999999999999999"],
)  # fmt: skip
def test_bdat_arguments_postfix_refuses(arg: str) -> None:
    assert parse_bdat(arg) is None


@pytest.mark.parametrize(
    "line",
    [b"BDAT", b"BDAT ", b"BDAT x", b"BDAT 5 FOO", b"BDAT -1", b"BDAT 99999999999999999999",
     b"BDAT 5 \xff", b"bdat\t"],
)  # fmt: skip
def test_bad_bdat_syntax_ends_the_session_and_nothing_after_it_is_read(line: bytes) -> None:
    events, out = run(OPEN + line + b"\r\nRSET\r\nMAIL FROM:<evil@example.net>\r\n")
    assert out == OPENED + b"521 5.5.4 Syntax: BDAT count [LAST]\r\n"
    assert [type(e).__name__ for e in events] == ["Helo", "MailFrom", "RcptTo", "ConnectionClosed"]
    assert events[-1] == ConnectionClosed("BDAT syntax error")


def test_tab_after_the_verb_and_an_overlong_line_are_still_bdat() -> None:
    """A BDAT line is framed by its count whatever else is odd about it: no chunk byte
    may ever be read as a command."""
    line = b"BDAT\t4" + b" " * 3000 + b"LAST\r\n"
    events, out = run(OPEN + line + b"ab\r\n")
    assert out == OPENED + b"250 2.0.0 Ok: 4 bytes queued as Q1\r\n"
    assert isinstance(events[-1], MessageReceived) and events[-1].data == b"ab\r\n"


def test_the_largest_count_is_read_not_refused() -> None:
    events, out = run(OPEN + f"BDAT {MAX_CHUNK}\r\n".encode() + b"QUIT\r\n" * 100)
    assert out == OPENED  # still reading the chunk: the QUITs are chunk data
    assert not any(isinstance(e, ConnectionClosed) for e in events)


# -- the transfer ---------------------------------------------------------------------


def test_accept_words_the_reply_with_the_queued_size() -> None:
    events, out = run(OPEN + b"BDAT 3\r\nabcBDAT 2 LAST\r\nde")
    message = events[-1]
    assert isinstance(message, MessageReceived) and message.chunked
    assert message.data == b"abcde\r\n"
    assert message.envelope().size == 7
    assert out == OPENED + b"250 2.0.0 Ok: 3 bytes\r\n250 2.0.0 Ok: 7 bytes queued as Q1\r\n"
    assert replies.queued_as("Q1", 7) == replies.Reply(250, "2.0.0", "Ok: 7 bytes queued as Q1")


def test_empty_message() -> None:
    events, out = run(OPEN + b"BDAT 0 LAST\r\n")
    assert out == OPENED + b"250 2.0.0 Ok: 0 bytes queued as Q1\r\n"
    assert isinstance(events[-1], MessageReceived) and events[-1].data == b""


def test_data_message_is_still_worded_without_a_size() -> None:
    events, out = run(OPEN + b"DATA\r\nhi\r\n.\r\n")
    assert isinstance(events[-1], MessageReceived) and not events[-1].chunked
    assert out.endswith(b"250 2.0.0 Ok: queued as Q1\r\n")


def test_in_transaction_from_the_first_chunk_to_last() -> None:
    conn = ServerConnection(SETTINGS)
    conn.initiate()
    conn.receive_data(b"BDAT 4\r\nab")  # refused (no MAIL), but a transfer is open
    assert conn.next_event() is NEED_DATA
    assert conn.in_transaction
    conn.receive_data(b"cd")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(b"503 5.5.1 Error: need RCPT command\r\n")
    assert conn.in_transaction  # the refused transfer waits for LAST
    conn.receive_data(b"BDAT 0 LAST\r\n")
    assert conn.next_event() is NEED_DATA
    assert not conn.in_transaction


def test_eof_in_the_middle_of_a_chunk_queues_nothing() -> None:
    events, out = run(OPEN + b"BDAT 10\r\n01234", eof=True)
    assert out == OPENED
    assert events[-1] == ConnectionClosed("lost connection after BDAT")
    assert not any(isinstance(e, MessageReceived) for e in events)


def test_refused_chunk_is_consumed_as_it_arrives_and_never_kept() -> None:
    """A chunk refused by its count (over message_size_limit) is read and dropped
    piece by piece: the core holds none of it, however large."""
    conn = ServerConnection(ServerSettings(message_size_limit=1000))
    conn.initiate()
    conn.receive_data(OPEN + b"BDAT 5000000\r\n")
    while conn.next_event() is not NEED_DATA:
        conn.accept()
    piece = b"MAIL FROM:<x@y>\r\n" * 1000
    sent = 0
    while sent + len(piece) <= 5000000:
        conn.receive_data(piece)
        assert conn.next_event() is NEED_DATA
        sent += len(piece)
        assert conn.buffered == 0
        assert conn._chunk is not None and conn._chunk.sink is None
    conn.receive_data(b"x" * (5000000 - sent) + b"NOOP\r\n")
    while conn.next_event() is not NEED_DATA:
        conn.accept()
    out = conn.data_to_send()
    assert out.endswith(b"552 5.3.4 Chunk exceeds message size limit\r\n250 2.0.0 Ok\r\n")


def test_accepted_chunks_stop_being_kept_after_a_forbidden_bare_lf() -> None:
    message = ChunkedMessage(forbid_bare_newline=True)
    message.append(b"a\r")
    message.append(b"\nb")
    assert not message.bare_lf
    message.append(b"\nc" * 1000)
    assert message.bare_lf and not message._data
    message.append(b"more")
    assert not message._data and message.size == 2 + 2 + 2000 + 4


def test_errors_count_and_the_hard_limit_ends_a_discarding_session() -> None:
    settings = ServerSettings(hard_error_limit=3)
    _, out = run(b"EHLO c\r\nBDAT 1\r\nxBDAT 1\r\nxBDAT 1\r\nxBDAT 1\r\nx", settings)
    assert out == (
        b"503 5.5.1 Error: need RCPT command\r\n"
        b"551 5.0.0 Discarded 1 bytes after earlier error\r\n"
        b"551 5.0.0 Discarded 1 bytes after earlier error\r\n"
        b"421 4.7.0 localhost Error: too many errors\r\n"
    )


def test_a_delivered_message_resets_the_error_count() -> None:
    conn = ServerConnection(SETTINGS)
    conn.initiate()
    conn.receive_data(b"EHLO c\r\nBDAT 1\r\nxRSET\r\n" + OPEN[16:] + b"BDAT 1 LAST\r\nx")
    while not isinstance(event := conn.next_event(), MessageReceived):
        assert event is not NEED_DATA
        conn.accept()
    assert conn.error_count == 1
    conn.accept(queue_id="Q1")
    assert conn.error_count == 0


# -- properties -------------------------------------------------------------------------

BDAT_PIECES = [
    b"BDAT 5\r\nhello",
    b"BDAT 3\r\n\r\n.",
    b"BDAT 1\r\n\r",
    b"BDAT 2\r\n\nx",
    b"BDAT 7 LAST\r\nab\r\n.\r\n",
    b"BDAT 18 LAST\r\nMAIL FROM:<e@x.y>\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 0\r\n",
    b"bdat 001 last\r\nz",
    b"BDAT 300\r\n" + b"x" * 300,  # over the 200-octet limit of the property settings
    b"BDAT 6\r\nQUIT\r\n",
    b"BDAT x\r\n",
]
bdat_session = st.lists(st.sampled_from(SESSION_PIECES + BDAT_PIECES), min_size=1, max_size=25).map(
    b"".join
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bdat_session, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_split_of_a_bdat_session_gives_the_same_replies_and_messages(
    data: bytes, cuts: list[int]
) -> None:
    if b"STARTTLS" in data:  # the rest of STARTTLS's read is dropped by design
        cuts = []
    whole = drive([data])
    assert drive(split(data, cuts)) == whole
    if b"STARTTLS" not in data:
        assert drive([data[i : i + 1] for i in range(len(data))]) == whole


line_text = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
content = st.lists(st.one_of(line_text, st.just(b"."), st.just(b"..x")), max_size=12).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)


def one_message(stream: bytes) -> bytes:
    events, _ = run(OPEN + stream, ServerSettings(message_size_limit=0))
    (message,) = [e for e in events if isinstance(e, MessageReceived)]
    return message.data


@settings(max_examples=300, deadline=None)
@given(content, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_bdat_in_any_chunks_gives_the_message_data_gives(body: bytes, cuts: list[int]) -> None:
    chunks = split(body, cuts)  # no empty chunk: "BDAT 0" without LAST is refused
    stream = b"".join(b"BDAT %d\r\n%s" % (len(c), c) for c in chunks) + b"BDAT 0 LAST\r\n"
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line) for line in body.splitlines(keepends=True)
    )
    assert one_message(stream) == body == one_message(b"DATA\r\n" + stuffed + b".\r\n")


def test_many_tiny_chunks_cost_their_bytes_not_an_object_each() -> None:
    message = ChunkedMessage(forbid_bare_newline=True)
    for _ in range(100_000):
        message.append(b"xy")
    assert isinstance(message._data, bytearray) and len(message._data) == 200_000
    assert message.message() == b"xy" * 100_000 + b"\r\n"


def test_an_overlong_bdat_line_closes_the_session_before_its_chunk_is_read() -> None:
    """Padding a BDAT line past the line limit must not turn its chunk into commands."""
    conn = ServerConnection(ServerSettings())
    conn.initiate()
    conn.receive_data(b"BDAT 40" + b" " * 20_000 + b"\r\nMAIL FROM:<smuggled@example.com>\r\n")
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed)
    assert conn.data_to_send().startswith(b"521 5.5.4 Syntax: BDAT count [LAST]")


def test_a_count_of_thousands_of_digits_is_bad_syntax_not_an_error() -> None:
    assert parse_bdat("1" * 5000) is None
    assert parse_bdat("0" * 5000 + "7 LAST") == BdatArgs(7, True)
