"""Run every IMAP *.dialog against the sans-IO core, fed whole, per line and per byte.

All three feedings must give the same bytes and events (the pipelining and framing
guarantee). The format and the driver are shared (../dialog.py, ../README.md); IMAP adds
`B: text` lines, the messages of INBOX (escaped, CRLF) in an in-memory store, and
answers Credentials with `A: login|reject|reject temporary`; Execute runs on the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transcripts.dialog import Answers, Dialog, Mismatch, Session, find, play, unescape
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

DIALOGS = find(Path(__file__).parent)


class Imap(Session[ServerConnection, Event]):
    tags = frozenset({"B:"})
    event_type = Event
    closed_type = ConnectionClosed
    need_data = NEED_DATA

    def __init__(self, dialog: Dialog) -> None:
        super().__init__(dialog)
        self.conn = ServerConnection(dialog.settings(ImapSettings))
        self.backend = MemoryBackend()
        for line in dialog.lines("B:"):
            self.backend.boxes["INBOX"].add(unescape(line.text))

    def answer(self, event: Event, answers: Answers) -> None:
        if isinstance(event, Execute):
            self.conn.execute()
            if self.conn.last_error is not None:
                raise Mismatch(f"{self.dialog.name}: {event!r} failed: {self.conn.last_error!r}")
            return
        reply = answers.take(event)
        if isinstance(event, Credentials) and reply == "login":
            self.conn.accept_login(self.backend)
        elif isinstance(event, Credentials) and reply in ("reject", "reject temporary"):
            self.conn.reject_login(temporary=reply == "reject temporary")
        else:
            answers.wrong(event)


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path) -> None:
    play(path, Imap)


def test_every_dialog_is_found() -> None:
    assert len(DIALOGS) >= 3
