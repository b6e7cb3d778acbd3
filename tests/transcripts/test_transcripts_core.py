"""Run every *.dialog file against the sans-IO SMTP core, fed whole, per line and per byte.

The three feedings must produce byte-identical output and the same events: that is
the pipelining and framing guarantee (RFC 2920) the adapter relies on.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailroom.smtp.commands import parse_reply_lines
from mailroom.smtp.events import NEED_DATA, ConnectionClosed, Event, MessageReceived, ServerSettings
from mailroom.smtp.server import ServerConnection

HERE = Path(__file__).parent
DIALOGS = sorted(HERE.glob("*.dialog"))


@dataclass
class Dialog:
    settings: ServerSettings
    segments: list[bytes] = field(default_factory=lambda: [b""])  # split at T:
    expected: bytes = b""
    answers: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


def _unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("utf-8"))[0]


def _setting(name: str, value: str) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(ServerSettings)}[name]
    if kind == "bool":
        return {"yes": True, "no": False}[value]
    return int(value) if kind == "int" else value


def load(path: Path) -> Dialog:
    options: dict[str, object] = {}
    dialog = Dialog(ServerSettings())
    for raw in path.read_text("utf-8").split("\n"):
        if not raw or raw.startswith("#"):
            continue
        tag, body = raw[:2], raw[2:].removeprefix(" ")
        if tag == "@ ":
            name, _, value = raw[2:].partition("=")
            options[name.strip()] = _setting(name.strip(), value)
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
        elif tag == "M:":
            dialog.messages.append(_unescape(body))
        elif tag == "T:":
            dialog.segments.append(b"")
        else:
            raise ValueError(f"{path.name}: bad line {raw!r}")
    dialog.settings = ServerSettings(**options)  # type: ignore[arg-type]
    return dialog


@dataclass
class Outcome:
    output: bytes
    events: list[Event]
    messages: list[bytes]


def run(dialog: Dialog, chunker: Callable[[bytes], Iterator[bytes]]) -> Outcome:
    """Drive the core like the asyncio adapter would, with a scripted fake adapter."""
    conn = ServerConnection(dialog.settings)
    out = bytearray(conn.initiate())
    answers = iter(dialog.answers)
    events: list[Event] = []
    messages: list[bytes] = []

    def pump() -> None:
        while not (events and isinstance(events[-1], ConnectionClosed)):
            event = conn.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            events.append(event)
            if isinstance(event, MessageReceived):
                messages.append(event.data)
            if event.needs_reply:
                answer = next(answers)
                if answer == "accept" or answer.startswith("accept "):
                    conn.accept(queue_id=answer[7:] or None)
                else:
                    conn.reply(parse_reply_lines([answer]))
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
    return Outcome(bytes(out), events, messages)


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
    first = outcomes[0]
    assert first.output.decode("utf-8").splitlines() == dialog.expected.decode("utf-8").splitlines()
    assert first.output == dialog.expected
    assert first.messages == dialog.messages
    if dialog.events:
        names = [(type(e).__name__, repr(e)) for e in first.events]
        assert [n for n, _ in names] == [n for n, _ in dialog.events]
        for (_, shown), (_, text) in zip(names, dialog.events, strict=True):
            assert text in shown
    for other in outcomes[1:]:
        assert other.output == first.output
        assert [repr(e) for e in other.events] == [repr(e) for e in first.events]
        assert other.messages == first.messages


def test_every_dialog_is_found() -> None:
    """Guard against a glob that silently matches nothing."""
    assert len(DIALOGS) >= 10
