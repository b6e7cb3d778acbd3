from __future__ import annotations

from datetime import UTC, datetime

from mailroom.queue.envelope import ClientInfo, Envelope, Recipient
from mailroom.queue.headers import delivery_headers, received_header

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC).timestamp()
TLS = ("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
       "server-signature RSA-PSS (2048 bits) server-digest SHA256)")


def env(client: ClientInfo, *rcpts: str) -> Envelope:
    return Envelope("john@example.org", [Recipient(r) for r in rcpts], client=client)


def test_received_header_full_shape_like_postfix() -> None:
    client = ClientInfo(helo="helo.name", hostname="hostname", address="1.2.3.4",
                        protocol="ESMTPSA", tls=TLS, sasl_username="john@example.org")
    text = received_header(env(client, "lisa@example.com"), "mail.example.org", "4Xyz123",
                           "lisa@example.com", NOW)
    assert text == (
        "Received: from helo.name (hostname [1.2.3.4])\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n"
        "\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n"
        "\t(Authenticated sender: john@example.org)\r\n"
        "\tby mail.example.org (mailroom) with ESMTPSA id 4Xyz123\r\n"
        "\tfor <lisa@example.com>; Fri, 27 Nov 2026 10:00:00 +0000 (UTC)\r\n"
    )


def test_received_header_plain_smtp_several_recipients() -> None:
    client = ClientInfo(helo="mx.example.net", hostname="unknown", address="192.0.2.7", protocol="ESMTP")
    text = received_header(env(client, "a@example.org", "b@example.org"), "mail.example.org",
                           "ABC", None, NOW)
    assert text == (
        "Received: from mx.example.net (unknown [192.0.2.7])\r\n"
        "\tby mail.example.org (mailroom) with ESMTP id ABC; Fri, 27 Nov 2026 10:00:00 +0000 (UTC)\r\n"
    )


def test_received_header_cannot_be_used_to_inject_headers() -> None:
    client = ClientInfo(helo="evil\r\nX-Injected: yes", hostname="h", address="192.0.2.7")
    text = received_header(env(client, "a@example.org"), "mx", "ABC", "a@example.org\r\nBcc: x", NOW)
    assert "X-Injected" in text and "\r\nX-Injected" not in text and "\r\nBcc" not in text


def test_local_submission_has_no_from_clause() -> None:
    text = received_header(env(ClientInfo(), "a@example.org"), "mx", "ABC", "a@example.org", NOW)
    assert text.startswith("Received: by mx (mailroom)\r\n\tid ABC\r\n\tfor <a@example.org>; ")


def test_delivery_headers() -> None:
    assert delivery_headers(env(ClientInfo()), "lisa@example.org") == (
        b"Return-Path: <john@example.org>\nDelivered-To: lisa@example.org\n")
    bounce = Envelope("", [])
    assert delivery_headers(bounce, "x@y").startswith(b"Return-Path: <>\n")
