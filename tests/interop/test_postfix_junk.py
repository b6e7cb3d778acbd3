"""smtpd_junk_command_limit: the same NOOP/RSET/HELO floods against Debian's Postfix and mailroom.

Past the limit each junk command counts as an error: NOOP, RSET, VRFY and ETRN, as the
documentation says, and HELO and EHLO, as Postfix's command table also flags them; a
delivered message starts the count again; once the errors reach smtpd_hard_error_limit
the server says 421 right after its reply, before reading another command. Both run
with smtpd_junk_command_limit = 2 and smtpd_hard_error_limit = 3; the replies (queue
IDs aside) and the hang-up must be the same. The sans-IO core alone is tested in
tests/transcripts/junk_commands.dialog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.e2e.server import MailroomServer, free_ports
from tests.interop.test_postfix_bdat import Dialog, M, PostfixPeer, R, Step, play, private_postfix

pytestmark = [pytest.mark.interop]

LIMITS = {"smtpd_junk_command_limit": "2", "smtpd_hard_error_limit": "3"}
NOOP, RSET, HELO = b"NOOP\r\n", b"RSET\r\n", b"HELO client.example\r\n"
MESSAGE = b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n"

DIALOGS = [
    Dialog("noop_flood_ends_in_421", (
        *(Step(NOOP, 1) for _ in range(5)), Step(NOOP, 2),
    ), closes=True),
    Dialog("helo_and_rset_are_junk_too", (
        Step(HELO, 1), Step(RSET, 1), Step(HELO, 1), Step(NOOP, 1), Step(RSET, 1), Step(HELO, 2),
    ), closes=True),
    Dialog("a_delivery_starts_the_count_again", (
        Step(HELO, 1), *(Step(NOOP, 1) for _ in range(3)),
        Step(M, 1), Step(R, 1), Step(MESSAGE[0], 1), Step(MESSAGE[1], 1),
        *(Step(NOOP, 1) for _ in range(4)), Step(b"QUIT\r\n", 1),
    ), closes=True),
]  # fmt: skip


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixPeer]:
    yield from private_postfix("mailroom-pfx-junk-", LIMITS)


@pytest.fixture
def mailroom(mailroom_server_factory: Callable[..., MailroomServer]) -> MailroomServer:
    (dead_port,) = free_ports(1)
    return mailroom_server_factory(mynetworks="", relayhost=f"[127.0.0.1]:{dead_port}", **LIMITS)


@pytest.mark.parametrize("dialog", DIALOGS, ids=[d.name for d in DIALOGS])
def test_same_replies_as_postfix(postfix: PostfixPeer, mailroom: MailroomServer, dialog: Dialog) -> None:
    theirs, their_close = play(postfix.port, dialog)
    ours, our_close = play(mailroom.smtp_port, dialog)
    shown = "\n".join(f"{' | '.join(p):70.70}  {' | '.join(m)}" for p, m in zip(theirs, ours, strict=False))
    assert ours == theirs, f"replies differ (Postfix | mailroom):\n{shown}"
    assert our_close == their_close == dialog.closes
