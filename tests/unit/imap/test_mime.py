"""ENVELOPE as RFC 3501 §7.4.2 and §9 spell it, and as Dovecot writes it."""

from __future__ import annotations

from email.parser import BytesHeaderParser

from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom.imap import mime


def envelope_of(message: bytes) -> bytes:
    return mime.envelope(mime.parse(mime.to_crlf(message)).headers)


def test_address_lists_have_no_space_between_addresses() -> None:
    env = envelope_of(b"From: a@example.com\nTo: Bob <b@example.org>, c@example.net\n\nbody\n")
    assert b'(("Bob" NIL "b" "example.org")(NIL NIL "c" "example.net"))' in env  # "(" 1*address ")"


def test_raw_utf8_header_bytes_come_back_unchanged() -> None:
    subject = "Café menu 🍕".encode()
    env = envelope_of(b"From: a@example.com\nSubject: " + subject + b"\n\nbody\n")
    assert subject in env
    assert "\ufffd".encode() not in env


def test_missing_fields_are_nil_and_sender_reply_to_default_to_from() -> None:
    env = envelope_of(b"From: Ann <a@example.com>\n\nbody\n")
    ann = b'(("Ann" NIL "a" "example.com"))'
    assert env == b"(NIL NIL " + ann + b" " + ann + b" " + ann + b" NIL NIL NIL NIL NIL)"


def test_folded_subject_is_unfolded() -> None:
    env = envelope_of(b"From: a@example.com\nSubject: one\n two\n\nbody\n")
    assert b'"one two"' in env


INNER = (b"From: inner@example.com\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nInner part one.\r\n--b\r\n\r\nInner part two.\r\n--b--\r\n")
OUTER = b"From: outer@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + INNER


def test_part_1_of_a_message_rfc822_message_is_the_whole_encapsulated_message() -> None:
    """RFC 3501 §6.4.5: a non-multipart message has one part, its body; its sub-parts are
    those of the message it carries."""
    tree = mime.parse(OUTER)
    one = mime.find(tree, [1])
    assert one is tree and one.body == INNER
    assert one.message is not None and one.message.header.startswith(b"From: inner@")
    two = mime.find(tree, [1, 2])
    assert two is not None and two.body == b"Inner part two."
    assert mime.find(tree, [2]) is None


def test_a_text_part_has_no_sub_parts() -> None:
    tree = mime.parse(b"Subject: plain\r\n\r\nbody\r\n")
    assert mime.find(tree, [1]) is tree
    assert mime.find(tree, [1, 1]) is None
    assert mime.find(tree, [2]) is None


def test_rfc2231_sections_are_joined_and_kept_encoded_as_dovecot_does() -> None:
    assert mime.param_pairs("application/pdf; name*0*=UTF-8''%C3%BCber%20; name*1*=%32.pdf") == [
        ("name*", "UTF-8''%C3%BCber%20%32.pdf")]
    assert mime.param_pairs('a/b; name*0="one two "; name*1=three') == [("name", "one two three")]
    assert mime.param_pairs("a/b; x*0*=utf-8''%41; x*1=\"b c\"") == [("x*", "utf-8''%41b%20c")]


def test_parameters_survive_junk_and_unterminated_quotes_in_linear_time() -> None:
    assert mime.param_pairs('text/plain; bad; =x; charset="utf-8"; q="open; r=s') == [
        ("charset", "utf-8"), ("q", "open; r=s")]
    mime.param_pairs('a/b; q="' + ";" * 200_000)  # one pass: returns at once


def test_bodystructure_lines_language_and_location() -> None:
    part = mime.parse(b"Content-Type: text/plain\r\nContent-Language: de, en-GB\r\n"
                      b"Content-Location: http://example.com/\r\n  note.txt\r\n\r\none line")
    structure = mime.bodystructure(part)
    assert b' 8 0 NIL NIL ("de" "en-GB") "http://example.com/note.txt")' in structure


_HEADER_BITS = st.sampled_from([
    "Subject: hi", "From: a@example.com", "To: b@example.org,", " c@example.net", "\tfolded",
    "X-Empty:", ":no name", "From someone Mon Jan 1", "not a header", "Caf\u00e9: x", "S\u00fcbject: \u00fc",
    "Received: from x", "  ", "", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "Bad Name: x", "A:b:c",
    "V: a\vb", "Feed\f: x", "Sep: \x1cy", "Tab\tName: z", "\x1dGroup: g", "\tX: after", ":",
])
_ENDS = st.sampled_from(["\r\n", "\n", "\r"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(_HEADER_BITS, _ENDS), max_size=12), st.booleans())
def test_raw_fields_agree_with_the_email_package(lines: list[tuple[str, str]], blank: bool) -> None:
    header = "".join(text + end for text, end in lines) + ("\r\n" if blank else "")
    data = header.encode("utf-8")
    expected: dict[str, list[str]] = {}
    for key, value in BytesHeaderParser().parsebytes(data).raw_items():
        expected.setdefault(key.lower(), []).append(value)
    assert mime.raw_fields(data) == expected
    wanted = frozenset({"subject", "to", "x-empty"})
    assert mime.raw_fields(data, wanted) == {k: v for k, v in expected.items() if k in wanted}


def test_an_8bit_parameter_name_comes_back_as_its_bytes_not_a_failed_fetch() -> None:
    part = mime.parse(b"Content-Type: text/plain; ch\xe9rset=x\r\nContent-Disposition: inline; f\xfc=1\r\n\r\nbody\r\n")
    structure = mime.bodystructure(part)
    assert b"CH\xe9RSET" in structure and b"F\xfc" in structure


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from([b"a", b":", b" ", b"\r", b"\n", b"\r\n", b"\n\n", b"\t"]), max_size=30))
def test_crlf_header_is_the_header_of_the_crlf_message(chunks: list[bytes]) -> None:
    """ENVELOPE converts only the header; it must be byte for byte what converting it all gives."""
    data = b"".join(chunks)
    assert mime.crlf_header(data) == mime.split_header(mime.to_crlf(data))[0]
