"""PLAIN and LOGIN step functions (RFC 4616, draft-murchison-sasl-login, RFC 4954 §4)."""

from __future__ import annotations

from base64 import b64encode

import pytest

from mailroom.sasl.mechanisms import Challenge, Credentials, Exchange, Failure, FailureKind


def b64(data: bytes) -> bytes:
    return b64encode(data)


def test_plain_initial_response() -> None:
    step = Exchange().start("plain", b64(b"\0john@example.org\0summersun"))
    assert step == Credentials("PLAIN", "", "john@example.org", "summersun")


def test_plain_without_initial_response_gets_empty_challenge() -> None:
    ex = Exchange()
    assert ex.start("PLAIN", None) == Challenge(b"")
    assert ex.step(b64(b"john\0john\0pw")) == Credentials("PLAIN", "john", "john", "pw")
    assert ex.done


def test_login_prompts() -> None:
    ex = Exchange()
    first = ex.start("LOGIN", None)
    assert isinstance(first, Challenge) and first.b64 == "VXNlcm5hbWU6"
    second = ex.step(b64(b"john@example.org"))
    assert isinstance(second, Challenge) and second.b64 == "UGFzc3dvcmQ6"
    assert ex.step(b64(b"summersun")) == Credentials("LOGIN", "", "john@example.org", "summersun")


def test_login_with_initial_username() -> None:
    ex = Exchange()
    assert ex.start("LOGIN", b64(b"john")) == Challenge(b"Password:")


@pytest.mark.parametrize(
    ("mechanism", "response", "kind"),
    [
        ("PLAIN", b"*", FailureKind.ABORTED),
        ("PLAIN", b"not base64!", FailureKind.DECODE),
        ("PLAIN", b"=", FailureKind.MALFORMED),
        ("PLAIN", b64(b"only\0two"), FailureKind.MALFORMED),
        ("PLAIN", b64(b"\0\0pw"), FailureKind.MALFORMED),
        ("PLAIN", b64(b"\0u\xff\0pw"), FailureKind.MALFORMED),
        ("PLAIN", b64(b"\0" + b"u" * 256 + b"\0pw"), FailureKind.MALFORMED),
        ("PLAIN", b64(b"admin\0john\0pw"), FailureKind.AUTHZID),
        ("LOGIN", b"*", FailureKind.ABORTED),
        ("LOGIN", b"=", FailureKind.MALFORMED),
        ("CRAM-MD5", b"", FailureKind.MECHANISM),
    ],
)
def test_failures(mechanism: str, response: bytes, kind: FailureKind) -> None:
    step = Exchange().start(mechanism, response)
    assert isinstance(step, Failure) and step.kind == kind


def test_cancel_during_login_password() -> None:
    ex = Exchange()
    ex.start("LOGIN", b64(b"john"))
    assert ex.step(b"*") == Failure(FailureKind.ABORTED)
    with pytest.raises(ValueError):
        ex.step(b"more")


def test_password_is_not_in_repr_of_the_event() -> None:
    from mailroom.smtp.events import AuthCredentials

    assert "summersun" not in repr(AuthCredentials("PLAIN", "", "john", "summersun"))
