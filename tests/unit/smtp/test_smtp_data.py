"""DATA framing: only <CRLF>.<CRLF> ends a message (RFC 5321 §4.1.1.4), in any chunking."""

from __future__ import annotations

import pytest

from mailroom.smtp.data import DataReader, DataResult


def read(data: bytes, chunk: int = 0, limit: int = 0, forbid: bool = True) -> tuple[DataResult, bytes]:
    reader = DataReader(limit, forbid)
    pieces = [data] if not chunk else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for i, piece in enumerate(pieces):
        rest = reader.feed(piece)
        if rest is not None:
            assert reader.result is not None
            return reader.result, rest + b"".join(pieces[i + 1 :])
    raise AssertionError("no end of data found")


@pytest.mark.parametrize("chunk", [0, 1, 2, 3, 4, 5, 7])
def test_unstuffing_and_leftover(chunk: int) -> None:
    result, rest = read(b"a\r\n..b\r\n...\r\n.\r\nQUIT\r\n", chunk)
    assert result.message == b"a\r\n.b\r\n..\r\n"
    assert rest == b"QUIT\r\n"


def test_empty_message_ends_on_the_data_lines_crlf() -> None:
    result, rest = read(b".\r\nNOOP\r\n")
    assert result.message == b"" and rest == b"NOOP\r\n"


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n"]
)
@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_smuggling_variants_never_end_data(fake_end: bytes, chunk: int) -> None:
    data = b"x" + fake_end + b"MAIL FROM:<evil@example>\r\n.\r\n"
    allowed, rest = read(data, chunk, forbid=False)
    assert rest == b""
    assert b"MAIL FROM:<evil@example>" in allowed.message
    strict, _ = read(data, chunk, forbid=True)
    assert strict.bare_lf == (b"\n" in fake_end.replace(b"\r\n", b""))


def test_bare_lf_across_chunks_is_not_a_false_positive() -> None:
    result, _ = read(b"abc\r\ndef\r\n.\r\n", chunk=4)  # "\r" and "\n" land in different feeds
    assert not result.bare_lf and result.message == b"abc\r\ndef\r\n"


def test_bare_cr_passes_through() -> None:
    result, _ = read(b"a\rb\r\n.\r\n")
    assert result.message == b"a\rb\r\n" and not result.bare_lf


def test_size_limit_counts_everything_but_keeps_nothing() -> None:
    reader = DataReader(size_limit=10)
    assert reader.feed(b"0123456789abcdef\r\n" * 100) is None
    assert reader._chunks == []  # nothing beyond the limit is buffered
    assert reader.feed(b".\r\n") == b""
    assert reader.result == DataResult(b"", 1800, too_big=True, bare_lf=False)


def test_exactly_at_limit_is_accepted() -> None:
    result, _ = read(b"12345678\r\n.\r\n", limit=10)
    assert not result.too_big and result.size == 10


def test_large_message_in_network_sized_chunks() -> None:
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * 200_000 + b".stuffed\r\n"
    result, rest = read(body + b".\r\n", chunk=65536)
    assert rest == b""
    assert result.message == line * 200_000 + b"stuffed\r\n"


def test_feed_after_end_is_a_bug() -> None:
    reader = DataReader(0)
    assert reader.feed(b".\r\n") == b""
    with pytest.raises(ValueError):
        reader.feed(b"x")
