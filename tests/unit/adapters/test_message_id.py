"""The log's message-id= value: the fast path must agree with Python's email parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.adapters.smtp import _message_id, _parsed_message_id


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody", "<a@b>"),
        (b"message-id:\r\n <folded@b>\r\nTo: y\r\n\r\n", "<folded@b>"),
        (b"Subject: no id\r\n\r\n", ""),
        (b"Subject: lf only\nMessage-ID: <lf@b>\n\nbody", "<lf@b>"),
    ],
)
def test_message_id_examples(head: bytes, expected: str) -> None:
    assert _message_id(head) == expected


header_line = st.one_of(
    st.from_regex(rb"\A(Message-ID|message-id|Subject|X-A): ?[ -~]{0,40}\Z"),
    st.from_regex(rb"\A[ \t][ -~]{0,20}\Z"),
)


@given(st.lists(header_line, min_size=1, max_size=8))
def test_fast_path_agrees_with_the_parser(lines: list[bytes]) -> None:
    head = b"\r\n".join(lines)
    assert _message_id(head + b"\r\n\r\nbody") == _parsed_message_id(head)
