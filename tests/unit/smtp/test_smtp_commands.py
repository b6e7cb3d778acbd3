"""Command, path and ESMTP parameter parsing; client-side formatting and reply parsing."""

from __future__ import annotations

import pytest

from mailroom.smtp import replies
from mailroom.smtp.address import AddressError, parse_path
from mailroom.smtp.commands import (
    CommandError,
    MailParams,
    RcptParams,
    format_mail,
    format_rcpt,
    parse_command,
    parse_ehlo_keywords,
    parse_mail,
    parse_rcpt,
    parse_reply_lines,
    xtext_decode,
    xtext_encode,
)
from mailroom.wire.errors import RemoteProtocolError


def mail(arg: str, limit: int = 1000, utf8: bool = True) -> tuple[str, MailParams]:
    path, params = parse_mail(arg, message_size_limit=limit, smtputf8_enabled=utf8)
    return path.mailbox, params


def mail_error(arg: str, **kw: bool) -> replies.Reply:
    with pytest.raises(CommandError) as exc:
        parse_mail(arg, message_size_limit=1000, smtputf8_enabled=kw.get("utf8", True))
    return exc.value.reply


def test_verbs_are_case_insensitive() -> None:
    assert parse_command("ehlo  client.example ") == parse_command("EHLO client.example")


@pytest.mark.parametrize(
    "text",
    [
        "<a@example.org>",
        '<"john doe"@example.org>',
        '<"a\\"b"@example.org>',
        "<a.b+c@[192.0.2.1]>",
        "<a@[IPv6:2001:db8::1]>",
        "<@a.example,@b.example:u@d.example>",
        "<x-y@sub-domain.example>",
    ],
)
def test_valid_paths(text: str) -> None:
    path = parse_path(text, allow_utf8=False)
    assert str(path) == text


@pytest.mark.parametrize(
    "text",
    [
        "a@example.org",
        "<a@>",
        "<@example.org>",
        "<a..b@example.org>",
        "<.a@example.org>",
        "<a@-example.org>",
        "<a@example.org.>",
        "<a@[300.1.1.1]>",
        "<a@[tag:whatever]>",
        '<"unterminated@example.org>',
        "<a b@example.org>",
        f"<{'x' * 65}@example.org>",
        f"<a@{'x' * 64}.org>",
        "<@a.example u@d.example>",
    ],
)
def test_invalid_paths(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text, allow_utf8=False)


def test_path_length_limit_counts_octets() -> None:
    domain = ".".join(["x" * 60] * 4)  # 243 octets: a legal domain
    with pytest.raises(AddressError, match="path too long"):
        parse_path(f"<{'a' * 12}@{domain}>", allow_utf8=False)


def test_utf8_needs_smtputf8() -> None:
    with pytest.raises(AddressError) as exc:
        parse_path("<jörg@example.org>", allow_utf8=False)
    assert exc.value.utf8
    assert parse_path("<jörg@exämple.org>", allow_utf8=True).domain == "exämple.org"


def test_mail_params_typed() -> None:
    box, p = mail("FROM:<a@b.example> SIZE=999 BODY=7bit RET=FULL ENVID=a+2Bb SMTPUTF8 AUTH=<>")
    assert box == "a@b.example"
    assert p == MailParams(size=999, body_type="7BIT", smtputf8=True, ret="FULL", envid="a+b", auth="<>")


def test_null_sender_and_space_after_colon() -> None:
    assert mail("FROM: <>")[0] == ""


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("FROM:<a@b.example> SIZE=1001", replies.MESSAGE_TOO_BIG),
        ("FROM:<a@b.example> SIZE=1 SIZE=2", replies.BAD_SIZE),
        ("FROM:<a@b.example> SIZE=" + "9" * 21, replies.BAD_SIZE),
        ("FROM:<a@b.example> RET=FULL RET=HDRS", replies.BAD_RET),
        ("FROM:<a@b.example> ENVID=a=b", replies.BAD_ENVID),
        ("FROM:<a@b.example> ENVID=" + "x" * 101, replies.BAD_ENVID),
        ("FROM:<a@b.example> BODY=9BIT", replies.unsupported_option("BODY=9BIT")),
        ("FROM:<a@b.example> XFOO", replies.unsupported_option("XFOO")),
        ("FROM:<a@b.example> SIZE=", replies.BAD_SYNTAX),
        ("FROM:<a@b.example>junk", replies.MAIL_SYNTAX),
        ("FROM:<a@b", replies.MAIL_SYNTAX),
        ("<a@b.example>", replies.MAIL_SYNTAX),
        ("FROM:<a@b..example>", replies.BAD_SENDER),
        ("FROM:<ü@b.example>", replies.UTF8_NOT_DECLARED),
    ],
)
def test_mail_refusals(arg: str, expected: replies.Reply) -> None:
    assert mail_error(arg) == expected


def test_smtputf8_param_needs_the_feature() -> None:
    assert mail_error("FROM:<a@b.example> SMTPUTF8", utf8=False) == replies.unsupported_option("SMTPUTF8")


def test_rcpt_params_and_postmaster() -> None:
    path, p = parse_rcpt("TO:<POSTMASTER> NOTIFY=never", smtputf8=False)
    assert path.mailbox == "POSTMASTER" and p.notify == ("NEVER",)
    path, p = parse_rcpt("TO:<a@b.example> ORCPT=rfc822;a+2Bx@b.example NOTIFY=DELAY", smtputf8=False)
    assert p == RcptParams(("DELAY",), "rfc822;a+x@b.example")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("TO:<a@b.example> NOTIFY=NEVER,DELAY", replies.BAD_NOTIFY),
        ("TO:<a@b.example> NOTIFY=DELAY,DELAY", replies.BAD_NOTIFY),
        ("TO:<a@b.example> NOTIFY=SOMETIMES", replies.BAD_NOTIFY),
        ("TO:<a@b.example> ORCPT=rfc822;a+ZZ", replies.BAD_ORCPT),
        ("TO:<a@b.example> ORCPT=;a@b", replies.BAD_ORCPT),
        ("TO:<a@b.example> SIZE=1", replies.unsupported_option("SIZE=1")),
        ("TO:<>", replies.BAD_RECIPIENT),
        ("TO:<postmaster@>", replies.BAD_RECIPIENT),
        ("FROM:<a@b.example>", replies.RCPT_SYNTAX),
    ],
)
def test_rcpt_refusals(arg: str, expected: replies.Reply) -> None:
    with pytest.raises(CommandError) as exc:
        parse_rcpt(arg, smtputf8=False)
    assert exc.value.reply == expected


def test_xtext_round_trip() -> None:
    for text in ["plain", "a+b=c", "späce and ümlaut", "\x01ctl"]:
        assert xtext_decode(xtext_encode(text)) == text
    assert xtext_encode("a+b=c") == "a+2Bb+3Dc"


def test_client_formatting_parses_back() -> None:
    line = format_mail("a@b.example", MailParams(size=5, body_type="8BITMIME", ret="HDRS", envid="id=1"))
    path, params = parse_mail(line.decode()[5:].rstrip("\r\n"), message_size_limit=0, smtputf8_enabled=True)
    assert path.mailbox == "a@b.example" and params.envid == "id=1" and params.size == 5
    line = format_rcpt("c@d.example", RcptParams(("SUCCESS", "FAILURE"), "rfc822;c+1@d.example"))
    _, rp = parse_rcpt(line.decode()[5:].rstrip("\r\n"), smtputf8=False)
    assert rp == RcptParams(("SUCCESS", "FAILURE"), "rfc822;c+1@d.example")


def test_parse_reply_lines() -> None:
    ehlo = parse_reply_lines([b"250-mx.example\r\n", b"250-SIZE 1000\r\n", b"250 AUTH PLAIN LOGIN\r\n"])
    assert ehlo.code == 250 and ehlo.enhanced == ""
    assert parse_ehlo_keywords(ehlo) == {"SIZE": "1000", "AUTH": "PLAIN LOGIN"}
    queued = parse_reply_lines(["250 2.0.0 Ok: queued as ABC"])
    assert queued == replies.queued_as("ABC")
    assert parse_reply_lines(["334 "]) == replies.challenge("")
    assert parse_reply_lines(b"".join(replies.MESSAGE_TOO_BIG.encode().splitlines(True)).splitlines()) == replies.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    "lines", [[], ["250 a", "250 b"], ["250-a"], ["250-a", "251 b"], ["hello"], ["099 x"]]
)
def test_parse_reply_lines_rejects_garbage(lines: list[str]) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_reply_lines(lines)
