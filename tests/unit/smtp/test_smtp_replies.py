"""Reply.encode: the one-line shortcut sends what the general multi-line form sends."""

from __future__ import annotations

import pytest

from mailroom.smtp import replies
from mailroom.smtp.replies import Reply


def _general(reply: Reply) -> bytes:
    return "".join(line + "\r\n" for line in reply.lines()).encode("utf-8", "replace")


@pytest.mark.parametrize("reply", [
    replies.OK,
    replies.BYE,
    replies.START_MAIL_INPUT,
    replies.queued_as("ABCDEFGHJKMNPQRS"),
    replies.greeting("mail.example.org ESMTP mailroom"),
    replies.ehlo_ok("mail.example.org", ["PIPELINING", "SIZE 10240000", "8BITMIME"]),
    Reply(550, "5.1.1", "<jöhn@example.org>: Recipient address rejected: \ud800"),
    Reply(250, "", "carriage\rreturn"),
    Reply(421, "4.3.2", "two\nlines"),
])
def test_encode_matches_the_line_by_line_form(reply: Reply) -> None:
    assert reply.encode() == _general(reply)


def test_single_line_shapes() -> None:
    assert Reply(250, "2.0.0", "Ok").encode() == b"250 2.0.0 Ok\r\n"
    assert Reply(220, "", "mx ESMTP").encode() == b"220 mx ESMTP\r\n"
