"""Run every *.dialog file against the sans-IO SMTP core, fed whole, per line and per byte.

The three feedings must produce byte-identical output and the same events: that is
the pipelining and framing guarantee (RFC 2920) the adapter relies on. The format and
the driver are shared with POP3 and IMAP (dialog.py); SMTP adds `M:` lines, the data
of the accepted messages, and answers events with `A: accept [QUEUEID]` or a reply.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transcripts.dialog import (
    Answers,
    Dialog,
    Mismatch,
    Outcome,
    Session,
    find,
    play,
    unescape,
)

from mailroom.smtp.commands import parse_reply_lines
from mailroom.smtp.events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    MessageReceived,
    ServerSettings,
)
from mailroom.smtp.server import ServerConnection

DIALOGS = find(Path(__file__).parent)


class Smtp(Session[ServerConnection, Event]):
    tags = frozenset({"M:"})
    event_type = Event
    closed_type = ConnectionClosed
    need_data = NEED_DATA

    def __init__(self, dialog: Dialog) -> None:
        super().__init__(dialog)
        self.conn = ServerConnection(dialog.settings(ServerSettings))

    def answer(self, event: Event, answers: Answers) -> None:
        answer = answers.take(event)
        if answer == "accept" or answer.startswith("accept "):
            self.conn.accept(queue_id=answer[7:] or None)
        else:
            self.conn.reply(parse_reply_lines([answer]))

    def check(self, outcome: Outcome[Event]) -> None:
        """The accepted messages' data are the M: lines, in order."""
        got = [e.data for e in outcome.events if isinstance(e, MessageReceived)]
        lines = self.dialog.lines("M:")
        for i, (line, data) in enumerate(zip(lines, got, strict=False)):
            if data != unescape(line.text):
                raise Mismatch(
                    f"{line.where}: message {i + 1} differs\n"
                    f"    expected {unescape(line.text)!r}\n    got {data!r}"
                )
        if len(got) != len(lines):
            raise Mismatch(
                f"{self.dialog.name}: {len(lines)} M: lines, but the core accepted {len(got)} messages"
            )


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path) -> None:
    play(path, Smtp)


def test_every_dialog_is_found() -> None:
    """Guard against a glob that silently matches nothing."""
    assert len(DIALOGS) >= 10
