"""Run every POP3 *.dialog against the sans-IO core, fed whole, per line and per byte.

The three feedings must produce byte-identical output and the same events: that is the
pipelining and framing guarantee (RFC 2449 PIPELINING) the adapter relies on.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroom.pop3.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    Event,
    MessageEntry,
    Pop3Settings,
    Retrieve,
    Update,
)
from mailroom.pop3.server import ServerConnection

HERE = Path(__file__).parent
DIALOGS = sorted(HERE.glob("*.dialog"))


@dataclass
class Dialog:
    settings: Pop3Settings
    maildrop: list[tuple[str, bytes]] = field(default_factory=list)
    segments: list[bytes] = field(default_factory=lambda: [b""])
    expected: bytes = b""
    answers: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)


def _unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("utf-8"))[0]


def _setting(name: str, value: str) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(Pop3Settings)}[name]
    if kind == "bool":
        return {"yes": True, "no": False}[value]
    return int(value) if kind == "int" else value


def load(path: Path) -> Dialog:
    options: dict[str, object] = {}
    dialog = Dialog(Pop3Settings())
    for raw in path.read_text("utf-8").split("\n"):
        if not raw or raw.startswith("#"):
            continue
        tag, body = raw[:2], raw[2:].removeprefix(" ")
        if tag == "@ ":
            name, _, value = raw[2:].partition("=")
            options[name.strip()] = _setting(name.strip(), value)
        elif tag == "B:":
            uidl, _, data = body.partition(" ")
            dialog.maildrop.append((uidl, _unescape(data)))
        elif tag == "C:":
            dialog.segments[-1] += body.encode("utf-8") + b"\r\n"
        elif tag == "R:":
            dialog.segments[-1] += _unescape(body)
        elif tag == "S:":
            dialog.expected += body.encode("utf-8") + b"\r\n"
        elif tag == "A:":
            dialog.answers.append(body)
        elif tag == "E:":
            name, _, text = body.partition(" ")
            dialog.events.append((name, text))
        elif tag == "T:":
            dialog.segments.append(b"")
        else:
            raise ValueError(f"{path.name}: bad line {raw!r}")
    dialog.settings = Pop3Settings(**options)  # type: ignore[arg-type]
    return dialog


def crlf_size(data: bytes) -> int:
    return len(data) + data.count(b"\n")


def answer(conn: ServerConnection, event: Event, reply: str, maildrop: list[tuple[str, bytes]]) -> None:
    if isinstance(event, Credentials):
        if reply == "login":
            conn.accept_login([MessageEntry(crlf_size(d), u) for u, d in maildrop])
        elif reply == "unavailable":
            conn.login_unavailable()
        else:
            assert reply.startswith("reject"), reply
            conn.reject_login(temporary=reply == "reject temporary")
    elif isinstance(event, Retrieve):
        if reply == "send":
            conn.send_message(maildrop[event.number - 1][1])
        else:
            assert reply == "gone", reply
            conn.message_unavailable()
    elif isinstance(event, Update):
        if reply == "accept":
            conn.accept()
        else:
            assert reply == "fail", reply
            conn.update_failed()
    else:  # pragma: no cover
        raise AssertionError(f"unexpected event {event!r}")


def run(dialog: Dialog, chunker: Callable[[bytes], Iterator[bytes]]) -> tuple[bytes, list[Event]]:
    """Drive the core like the asyncio adapter would, with a scripted fake adapter."""
    conn = ServerConnection(dialog.settings)
    out = bytearray(conn.initiate())
    answers = iter(dialog.answers)
    events: list[Event] = []

    def pump() -> None:
        while not (events and isinstance(events[-1], ConnectionClosed)):
            event = conn.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            events.append(event)
            if event.needs_reply:
                answer(conn, event, next(answers), dialog.maildrop)
            out.extend(conn.data_to_send())

    for i, segment in enumerate(dialog.segments):
        if i:
            conn.tls_started()
        for chunk in chunker(segment):
            conn.receive_data(chunk)
            pump()
    conn.receive_data(b"")
    pump()
    out.extend(conn.data_to_send())
    assert next(answers, None) is None, "dialog has unused A: answers"
    return bytes(out), events


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def per_line(data: bytes) -> Iterator[bytes]:
    yield from data.splitlines(keepends=True)


def per_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path) -> None:
    dialog = load(path)
    outcomes = [run(dialog, chunker) for chunker in (whole, per_line, per_byte)]
    output, events = outcomes[0]
    assert output.decode("utf-8").splitlines() == dialog.expected.decode("utf-8").splitlines()
    assert output == dialog.expected
    if dialog.events:
        names = [(type(e).__name__, repr(e)) for e in events]
        assert [n for n, _ in names] == [n for n, _ in dialog.events]
        for (_, shown), (_, text) in zip(names, dialog.events, strict=True):
            assert text in shown
    for other_output, other_events in outcomes[1:]:
        assert other_output == output
        assert [repr(e) for e in other_events] == [repr(e) for e in events]


def test_every_dialog_is_found() -> None:
    assert len(DIALOGS) >= 5
