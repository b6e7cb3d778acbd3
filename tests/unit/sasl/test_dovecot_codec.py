"""The Dovecot auth codec against exchanges captured from the real Postfix 3.7 and Dovecot 2.3.

tests/transcripts/dovecot_auth/*.capture were recorded by capture.py from the real
programs. The server side must answer Postfix's lines exactly as Dovecot did (the
per-connection SPID/CUID/COOKIE values aside); the client side must word its lines
exactly as Postfix did and read Dovecot's answers. Every feeding (whole, per line,
per byte) must give the same result.
"""

from __future__ import annotations

import base64
import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroom.sasl import dovecot_codec as dc
from mailroom.wire.errors import LocalProtocolError, RemoteProtocolError

CAPTURES = Path(__file__).parents[2] / "transcripts" / "dovecot_auth"
FILES = sorted(CAPTURES.glob("*.capture"))
USERS = {"john@example.org": "summersun", "lisa@example.org": "springrain"}
CLOSED = "<closed>"
# Per-connection values a second run cannot reproduce.
VOLATILE = re.compile(r"^(SPID|CUID|COOKIE)\t.*$", re.M)
# Where mailroom deliberately answers differently from Dovecot, with the reason.
DEVIATIONS = {
    # PLAIN with an authzid that is not the user: mailroom refuses in the mechanism,
    # before a user is looked up, so it has no user= to name.
    ("dovecot_handshake_and_requests", "FAIL\t5\tuser=john@example.org"): "FAIL\t5",
}


@dataclass
class Capture:
    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # ("C"|"S", text without LF)

    def side(self, tag: str) -> list[str]:
        return [text for t, text in self.lines if t == tag]


def load(path: Path) -> Capture:
    capture = Capture(path.stem)
    for raw in path.read_text("utf-8").splitlines():
        if raw.startswith(("C: ", "S: ")):
            text = codecs.decode(raw[3:], "unicode_escape")
            capture.lines.append((raw[0], text))
    return capture


def wire(text: str) -> bytes:
    return text.encode("latin-1").decode("utf-8").encode("utf-8") + b"\n"


def feedings(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    yield "per line", [line + b"\n" for line in data.split(b"\n")[:-1]]
    yield "per byte", [data[i : i + 1] for i in range(len(data))]


def normalize(text: str) -> str:
    return VOLATILE.sub(r"\1\t*", text)


# -- server side: mailroom answers as Dovecot did --------------------------------------------


def run_server(capture: Capture, chunks: list[bytes]) -> tuple[list[str], bool]:
    """Drive a ServerConnection with a synchronous fake backend; returns (lines out, closed)."""
    temporary = "internal_failure" in capture.name
    conn = dc.ServerConnection("1", "1", "0" * 32)
    out = bytearray(conn.data_to_send())
    closed = False
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while not isinstance(event := conn.next_event(), dc._NeedData | dc.Closed):
                if isinstance(event, dc.ClientHandshake):
                    continue
                if isinstance(event, dc.MechanismFailed):
                    conn.fail(event.id)
                elif temporary:
                    conn.fail(event.id, event.username, temporary=True)
                elif USERS.get(event.username) == event.password:
                    conn.succeed(event.id, event.username)
                else:
                    conn.fail(event.id, event.username)
            out += conn.data_to_send()
    except RemoteProtocolError:
        closed = True
        out += conn.data_to_send()  # answers to the lines before the bad one still go out
    return out.decode("utf-8").split("\n")[:-1], closed


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_server_answers_like_dovecot(path: Path) -> None:
    capture = load(path)
    client = b"".join(wire(t) for t in capture.side("C"))
    expected = [s for s in capture.side("S") if s != CLOSED]
    expected = [DEVIATIONS.get((capture.name, s), s) for s in expected]
    should_close = CLOSED in capture.side("S")
    results = {name: run_server(capture, chunks) for name, chunks in feedings(client)}
    for name, (lines, closed) in results.items():
        assert [normalize(x) for x in lines] == [normalize(x) for x in expected], name
        assert closed == should_close, name


def test_server_handshake_is_dovecots() -> None:
    conn = dc.ServerConnection("42", "7", "ab" * 16)
    assert conn.data_to_send() == (
        b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
        b"SPID\t42\nCUID\t7\nCOOKIE\t" + b"ab" * 16 + b"\nDONE\n"
    )


def test_check_password_event_carries_postfix_fields() -> None:
    conn = dc.ServerConnection("1", "1", "0")
    conn.receive_data(
        b"VERSION\t1\t0\nCPID\t9\nAUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=10.0.0.1"
        b"\trip=192.0.2.7\tsecured\tresp=am9obkBleGFtcGxlLm9yZwBqb2huQGV4YW1wbGUub3JnAHN1bW1lcnN1bg==\n"
    )
    assert conn.next_event() == dc.ClientHandshake(1, 0, "9")
    event = conn.next_event()
    assert isinstance(event, dc.CheckPassword)
    assert (event.id, event.mechanism, event.username, event.password) == (
        1, "PLAIN", "john@example.org", "summersun",
    )  # fmt: skip
    assert (event.service, event.remote_ip, event.local_ip, event.secured) == (
        "smtp", "192.0.2.7", "10.0.0.1", True,
    )  # fmt: skip
    assert conn.next_event() is dc.NEED_DATA
    with pytest.raises(RemoteProtocolError):  # CONT while the password is being checked
        conn.receive_data(b"CONT\t1\tAAAA\n")
        conn.next_event()


def handshaken() -> dc.ServerConnection:
    conn = dc.ServerConnection("1", "1", "0")
    conn.receive_data(b"VERSION\t1\t0\nCPID\t1\n")
    assert isinstance(conn.next_event(), dc.ClientHandshake)
    conn.data_to_send()
    return conn


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe garbage\n",
        b"x" * (dc.MAX_LINE + 1),
        b"AUTH\n",
        b"AUTH\t1\n",
        b"AUTH\t99999999999\tPLAIN\tservice=smtp\n",
        b"AUTH\t-1\tPLAIN\tservice=smtp\n",
        b"AUTH\t\xd9\xa1\tPLAIN\tservice=smtp\n",  # a non-ASCII digit
        b"CONT\n",
        b"VERSION\t1\t0\n",  # a second handshake
        b"\n",
    ],
)
def test_hostile_input_is_a_remote_error(data: bytes) -> None:
    conn = handshaken()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_long_first_line_is_refused_early() -> None:
    conn = dc.ServerConnection("1", "1", "0")
    conn.receive_data(b"GET / HTTP/1.1 " + b"x" * dc.MAX_HANDSHAKE_LINE)
    with pytest.raises(RemoteProtocolError, match="handshake"):
        conn.next_event()


def test_pending_requests_are_bounded() -> None:
    conn = handshaken()
    conn.receive_data(
        b"".join(b"AUTH\t%d\tLOGIN\tservice=smtp\n" % i for i in range(1, dc.MAX_PENDING + 2))
    )
    with pytest.raises(RemoteProtocolError, match="too many"):
        while conn.next_event() is not dc.NEED_DATA:
            pass
    assert len(conn.pending) == dc.MAX_PENDING


def test_eof_mid_line_and_clean_eof() -> None:
    conn = handshaken()
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), dc.Closed)
    conn = handshaken()
    conn.receive_data(b"AUTH\t1")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_answering_twice_is_a_local_error() -> None:
    conn = handshaken()
    conn.receive_data(b"AUTH\t3\tPLAIN\tservice=smtp\tresp=AGEAYg==\n")
    event = conn.next_event()
    assert isinstance(event, dc.CheckPassword)
    conn.succeed(3, "a")
    with pytest.raises(LocalProtocolError):
        conn.fail(3)


def test_usernames_are_escaped_on_the_wire() -> None:
    conn = handshaken()
    conn.receive_data(
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + base64.b64encode(b"\0a\tb\0pw") + b"\n"
    )
    event = conn.next_event()
    assert isinstance(event, dc.CheckPassword) and event.username == "a\tb"
    conn.succeed(1, event.username)
    assert conn.data_to_send() == b"OK\t1\tuser=a\x01tb\n"


@pytest.mark.parametrize("text", ["", "plain", "a\tb", "\x01", "x\r\ny\x01t", "\x01\x01n"])
def test_escape_round_trip(text: str) -> None:
    escaped = dc.escape(text)
    assert not any(c in escaped for c in "\t\r\n")
    assert dc.unescape(escaped) == text


# -- client side: mailroom asks as Postfix did ----------------------------------------------


def replay_client(capture: Capture) -> list[dc.ClientEvent]:
    """Issue the capture's client lines through ClientConnection's API, feed the server's lines."""
    cpid = next(int(t.split("\t")[1]) for t in capture.side("C") if t.startswith("CPID"))
    conn = dc.ClientConnection(cpid)
    sent = bytearray(conn.data_to_send())
    events: list[dc.ClientEvent] = []
    for tag, text in capture.lines:
        if tag == "S":
            conn.receive_data(b"" if text == CLOSED else wire(text))
            while not isinstance(event := conn.next_event(), dc._NeedData):
                events.append(event)
                if isinstance(event, dc.Closed):
                    break
            continue
        fields = text.split("\t")
        if fields[0] == "AUTH":
            args = dict(f.partition("=")[::2] for f in fields[3:])
            flags = tuple(f for f in fields[4:] if f in ("nologin",))
            resp = args.get("resp")
            conn.auth(
                int(fields[1]),
                fields[2],
                args["service"],
                initial=base64.b64decode(resp) if resp is not None else None,
                local_ip=args.get("lip", ""),
                remote_ip=args.get("rip", ""),
                secured="secured" in args,
                extra=flags,
            )
        elif fields[0] == "CONT":
            conn.cont(int(fields[1]), base64.b64decode(fields[2]))
        sent += conn.data_to_send()
    assert sent.decode() == "".join(t + "\n" for t in capture.side("C")), capture.name
    return events


CLIENT_FILES = [p for p in FILES if p.stem.startswith("postfix_") or "internal_failure" in p.stem]


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.stem)
def test_client_speaks_like_postfix(path: Path) -> None:
    capture = load(path)
    events = replay_client(capture)
    handshake = events[0]
    assert isinstance(handshake, dc.ServerHandshake)
    assert handshake.mechanisms == {"PLAIN": ("plaintext",), "LOGIN": ("plaintext",)}
    assert (handshake.major, handshake.minor) == (1, 2) and handshake.cookie
    kinds = {"OK": dc.Success, "FAIL": dc.Failed, "CONT": dc.Continue}
    expected = [kinds[s.split("\t")[0]] for s in capture.side("S") if s.split("\t")[0] in kinds]
    assert [type(e) for e in events[1:]] == expected


def test_client_reads_dovecots_answers() -> None:
    capture = load(CAPTURES / "dovecot_handshake_and_requests.capture")
    conn = dc.ClientConnection(1)
    conn.receive_data("".join(s + "\n" for s in capture.side("S")).encode())
    assert isinstance(conn.next_event(), dc.ServerHandshake)
    conn.outstanding.update(range(1, 100))  # as if this client had sent the requests
    events = []
    while not isinstance(event := conn.next_event(), dc._NeedData):
        events.append(event)
    ok = [e.user for e in events if isinstance(e, dc.Success)]
    assert ok == ["john@example.org"] * 3
    bad64 = [e for e in events if isinstance(e, dc.Failed) and e.id == 6][0]
    assert bad64.reason == "Invalid base64 data in initial response" and not bad64.temporary
    wrong = [e for e in events if isinstance(e, dc.Failed) and e.id == 2][0]
    assert wrong.args == {"user": "john@example.org"} and not wrong.temporary


def test_client_sees_temporary_failure() -> None:
    capture = load(CAPTURES / "dovecot_internal_failure.capture")
    events = replay_client(capture)
    failed = events[-1]
    assert isinstance(failed, dc.Failed) and failed.temporary and failed.reason == "temp_fail"


def test_client_ignores_strays_and_bounds_the_handshake() -> None:
    conn = dc.ClientConnection(1)
    conn.receive_data(b"VERSION\t1\t2\nXYZZY\nMECH\tPLAIN\nDONE\nOK\t5\tuser=x\nBOGUS\t1\n")
    assert isinstance(conn.next_event(), dc.ServerHandshake)
    assert conn.next_event() is dc.NEED_DATA  # OK for an id never asked, unknown command
    endless = dc.ClientConnection(1)
    endless.receive_data(b"MECH\tX\n" * (dc.MAX_HANDSHAKE_LINES + 1))
    with pytest.raises(RemoteProtocolError, match="endless"):
        endless.next_event()
    wrong = dc.ClientConnection(1)
    wrong.receive_data(b"VERSION\t2\t0\n")
    with pytest.raises(RemoteProtocolError, match="version"):
        wrong.next_event()


def test_client_refuses_misuse() -> None:
    conn = dc.ClientConnection(1)
    with pytest.raises(LocalProtocolError):
        conn.auth(1, "PLAIN", "smtp")
    conn.receive_data(b"VERSION\t1\t2\nDONE\n")
    conn.next_event()
    conn.auth(1, "PLAIN", "smtp")
    with pytest.raises(LocalProtocolError):
        conn.auth(1, "PLAIN", "smtp")
    with pytest.raises(LocalProtocolError):
        conn.cont(2, b"x")



@pytest.mark.parametrize("line", ["VERSION\t1\t\u00b2\n", "VERSION\t\u0661\t0\n"])
def test_non_ascii_digits_in_version_are_a_protocol_error_not_a_crash(line: str) -> None:
    """'\u00b2'.isdigit() is True but int() refuses it: the handshake must fail cleanly."""
    from mailroom.sasl.dovecot_codec import ServerConnection
    from mailroom.wire.errors import RemoteProtocolError

    server = ServerConnection("1", "1", "0" * 32)
    server.receive_data(line.encode())
    with pytest.raises(RemoteProtocolError, match="malformed VERSION"):
        server.next_event()
