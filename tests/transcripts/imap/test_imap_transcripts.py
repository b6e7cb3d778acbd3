"""Run every IMAP *.dialog against the sans-IO core, fed whole, per line and per byte.

Line prefixes (see README.md): `@ name=value` (ImapSettings), `B: text` (a message in
INBOX, escaped, CRLF), `C:`/`R:` (client line / raw bytes), `S:` (expected server line),
`A: login|reject|reject temporary` (answer to Credentials), `T:` (STARTTLS handshake done).
All three feedings must give the same bytes (the pipelining and framing guarantee).
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.unit.imap.memory_backend import MemoryBackend

from mailroom.imap.events import (
    NEED_DATA,
    ConnectionClosed,
    Credentials,
    Event,
    Execute,
    ImapSettings,
)
from mailroom.imap.server import ServerConnection

HERE = Path(__file__).parent
DIALOGS = sorted(HERE.glob("*.dialog"))


@dataclass
class Dialog:
    settings: ImapSettings
    messages: list[bytes] = field(default_factory=list)
    segments: list[bytes] = field(default_factory=lambda: [b""])
    expected: bytes = b""
    answers: list[str] = field(default_factory=list)


def _unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("utf-8"))[0]


def load(path: Path) -> Dialog:
    options: dict[str, object] = {}
    dialog = Dialog(ImapSettings())
    kinds = {f.name: f.type for f in dataclasses.fields(ImapSettings)}
    for raw in path.read_text("utf-8").split("\n"):
        if not raw or raw.startswith("#"):
            continue
        tag, body = raw[:2], raw[2:].removeprefix(" ")
        if tag == "@ ":
            name, _, value = raw[2:].partition("=")
            kind = kinds[name.strip()]
            options[name.strip()] = ({"yes": True, "no": False}[value] if kind == "bool"
                                     else int(value) if kind == "int" else value)
        elif tag == "B:":
            dialog.messages.append(_unescape(body))
        elif tag == "C:":
            dialog.segments[-1] += body.encode("utf-8") + b"\r\n"
        elif tag == "R:":
            dialog.segments[-1] += _unescape(body)
        elif tag == "S:":
            dialog.expected += body.encode("utf-8") + b"\r\n"
        elif tag == "A:":
            dialog.answers.append(body)
        elif tag == "T:":
            dialog.segments.append(b"")
        else:
            raise ValueError(f"{path.name}: bad line {raw!r}")
    dialog.settings = ImapSettings(**options)  # type: ignore[arg-type]
    return dialog


def run(dialog: Dialog, chunker: Callable[[bytes], Iterator[bytes]]) -> bytes:
    backend = MemoryBackend()
    for data in dialog.messages:
        backend.boxes["INBOX"].add(data)
    conn = ServerConnection(dialog.settings)
    out = bytearray(conn.initiate())
    answers = iter(dialog.answers)
    closed = False

    def pump() -> None:
        nonlocal closed
        while not closed:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            if isinstance(event, ConnectionClosed):
                closed = True
            elif isinstance(event, Credentials):
                reply = next(answers)
                if reply == "login":
                    conn.accept_login(backend)
                else:
                    conn.reject_login(temporary=reply == "reject temporary")
            elif isinstance(event, Execute):
                conn.execute()
                assert conn.last_error is None, conn.last_error
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
    return bytes(out)


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
    outputs = [run(dialog, chunker) for chunker in (whole, per_line, per_byte)]
    assert outputs[0].decode("utf-8", "replace").splitlines() == dialog.expected.decode("utf-8").splitlines()
    assert outputs[0] == dialog.expected
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


def test_every_dialog_is_found() -> None:
    assert len(DIALOGS) >= 3
