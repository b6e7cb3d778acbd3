"""main.cf syntax: comments, continuation lines, expansion, and postconf -e editing."""

from __future__ import annotations

import pytest

from mailroom.config.maincf import ConfigError, edit_text, expand, parse_text

SAMPLE = """\
# comment at the top
myhostname = mail.example.org

smtpd_recipient_restrictions =
    permit_mynetworks
# a comment inside a continued value is ignored
    permit_sasl_authenticated,
    reject_unauth_destination
smtpd_banner = $myhostname ESMTP ${mail_name}
mail_name = mailroom
"""


def values(text: str) -> dict[str, str]:
    return {d.name: d.value for d in parse_text(text, "main.cf")}


def test_continuation_lines_join_with_spaces_and_skip_comments() -> None:
    parsed = values(SAMPLE)
    assert parsed["smtpd_recipient_restrictions"] == "permit_mynetworks permit_sasl_authenticated, reject_unauth_destination"


def test_line_numbers_point_at_the_first_line_of_a_definition() -> None:
    lines = {d.name: d.line for d in parse_text(SAMPLE, "main.cf")}
    assert lines == {"myhostname": 2, "smtpd_recipient_restrictions": 4, "smtpd_banner": 9, "mail_name": 10}


def test_later_definition_wins() -> None:
    assert values("a = 1\na = 2\n")["a"] == "2"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("no equals sign here\n", "line 1: missing '='"),
        ("  leading = continuation\n", "line 1: continuation line"),
        ("bad-name = 1\n", "bad parameter name"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_text(text, "/etc/mailroom/main.cf")
    assert str(info.value).startswith("/etc/mailroom/main.cf, line ")


def test_expansion_forms() -> None:
    table = {"a": "x", "b": "$a-${a}-$(a)", "empty": ""}
    assert expand("$b", table.get) == "x-x-x"
    assert expand("${a?set}${empty?set}", table.get) == "set"
    assert expand("${a:unset}${empty:unset}", table.get) == "unset"
    assert expand("[$unknown]", table.get) == "[]"


def test_expansion_loop_is_detected() -> None:
    table = {"a": "$b", "b": "x $a"}
    with pytest.raises(ConfigError, match="loop: a -> b -> a"):
        expand("$a", table.get)


def test_self_reference_loop() -> None:
    with pytest.raises(ConfigError, match="loop"):
        expand("$a", {"a": "${a}"}.get)


def test_edit_keeps_comments_and_order_replaces_continuations_and_appends_new() -> None:
    edited = edit_text(SAMPLE, {"smtpd_recipient_restrictions": "reject", "mynetworks": ""})
    lines = edited.splitlines()
    assert lines[0] == "# comment at the top"
    assert lines[3] == "smtpd_recipient_restrictions = reject"
    assert "    permit_mynetworks" not in lines
    assert "# a comment inside a continued value is ignored" in lines
    assert lines[-1] == "mynetworks = "
    assert values(edited)["mynetworks"] == ""
    assert values(edited)["smtpd_banner"] == "$myhostname ESMTP ${mail_name}"


def test_edit_drops_later_duplicates() -> None:
    edited = edit_text("a = 1\nb = 2\na = 3\n", {"a": "9"})
    assert edited == "a = 9\nb = 2\n"


def test_remove_with_none() -> None:
    assert edit_text("a = 1\n  cont\nb = 2\n", {"a": None}) == "b = 2\n"
