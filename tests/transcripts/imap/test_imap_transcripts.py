"""Run every IMAP *.dialog against the sans-IO core, fed whole, per line and per byte.

All three feedings must give the same bytes and events (the pipelining and framing
guarantee). The format and the driver are shared (../dialog.py, ../README.md); IMAP adds
`B: text` lines, the messages of INBOX (escaped, CRLF) in an in-memory store, and
answers Credentials with `A: login|reject|reject temporary`; Execute runs on the store.
Each dialog is played three ways, which must all give its bytes: Execute run as in a
worker thread; tried inline first, as the adapter does; and tried inline on a store
whose message content is never cached, so inline attempts are abandoned midway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transcripts.dialog import Answers, Dialog, Mismatch, Session, find, play, unescape
from tests.unit.imap.memory_backend import DiskLikeMailbox, MemoryBackend, MemoryMailbox

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

    inline = False  # try execute(inline=True) first, as the adapter does
    mailbox_type: type[MemoryMailbox] = MemoryMailbox

    def __init__(self, dialog: Dialog) -> None:
        super().__init__(dialog)
        self.conn = ServerConnection(dialog.settings(ImapSettings))
        self.backend = MemoryBackend()
        self.backend.mailbox_type = self.mailbox_type
        for line in dialog.lines("B:"):
            self.backend.boxes["INBOX"].add(unescape(line.text))

    def answer(self, event: Event, answers: Answers) -> None:
        if isinstance(event, Execute):
            if not (self.inline and self.conn.execute(inline=True)):
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


class InlineImap(Imap):
    inline = True


class InlineUncachedImap(Imap):
    inline = True
    mailbox_type = DiskLikeMailbox


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
@pytest.mark.parametrize("session", [Imap, InlineImap, InlineUncachedImap], ids=["thread", "inline", "uncached"])
def test_dialog(path: Path, session: type[Imap]) -> None:
    play(path, session)


def test_every_dialog_is_found() -> None:
    assert len(DIALOGS) >= 3
