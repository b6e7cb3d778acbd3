"""Run every POP3 *.dialog against the sans-IO core, fed whole, per line and per byte.

The three feedings must produce byte-identical output and the same events: that is the
pipelining and framing guarantee (RFC 2449 PIPELINING) the adapter relies on. The format
and the driver are shared (../dialog.py); POP3 adds `B: UIDL text` lines, the maildrop,
and the answers of README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transcripts.dialog import Answers, Dialog, Session, find, play, unescape

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

DIALOGS = find(Path(__file__).parent)


def crlf_size(data: bytes) -> int:
    return len(data) + data.count(b"\n")


class Pop3(Session[ServerConnection, Event]):
    tags = frozenset({"B:"})
    event_type = Event
    closed_type = ConnectionClosed
    need_data = NEED_DATA

    def __init__(self, dialog: Dialog) -> None:
        super().__init__(dialog)
        self.conn = ServerConnection(dialog.settings(Pop3Settings))
        self.maildrop: list[tuple[str, bytes]] = []
        for line in dialog.lines("B:"):
            uidl, _, data = line.text.partition(" ")
            self.maildrop.append((uidl, unescape(data)))

    def answer(self, event: Event, answers: Answers) -> None:
        reply = answers.take(event)
        conn = self.conn
        if isinstance(event, Credentials) and reply == "login":
            conn.accept_login([MessageEntry(crlf_size(d), u) for u, d in self.maildrop])
        elif isinstance(event, Credentials) and reply == "unavailable":
            conn.login_unavailable()
        elif isinstance(event, Credentials) and reply in ("reject", "reject temporary"):
            conn.reject_login(temporary=reply == "reject temporary")
        elif isinstance(event, Retrieve) and reply == "send":
            conn.send_message(self.maildrop[event.number - 1][1])
        elif isinstance(event, Retrieve) and reply == "gone":
            conn.message_unavailable()
        elif isinstance(event, Update) and reply == "accept":
            conn.accept()
        elif isinstance(event, Update) and reply == "fail":
            conn.update_failed()
        else:
            answers.wrong(event)


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path) -> None:
    play(path, Pop3)


def test_every_dialog_is_found() -> None:
    assert len(DIALOGS) >= 5
