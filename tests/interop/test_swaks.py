"""The guide's checks with swaks, the Swiss Army Knife for SMTP, against `mailroom serve`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest
from tests.e2e.server import HOST, JOHN, PASSWORD, MailroomServer, free_ports

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed"),
]

Factory = Callable[..., MailroomServer]


def swaks(server: MailroomServer, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("swaks")
    if exe is None:
        pytest.skip("swaks not installed")
    return subprocess.run(
        [
            exe,
            "--server",
            f"{HOST}:{server.smtp_port}",
            "--timeout",
            "10",
            "--helo",
            "client.example.net",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def server(mailroom_server_factory: Factory) -> MailroomServer:
    """`postconf -e mynetworks=` as in the guide; outbound mail goes to a dead loopback port."""
    (dead_port,) = free_ports(1)
    return mailroom_server_factory(mynetworks="", relayhost=f"[127.0.0.1]:{dead_port}")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_authenticated_relay(server: MailroomServer, mech: str) -> None:
    r = swaks(
        server, "-tls", "--auth", mech, "--auth-user", JOHN, "--auth-password", PASSWORD,
        "--from", JOHN, "--to", "lisa@example.com",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0 Authentication successful" in r.stdout, r.stdout
    assert "250 2.0.0 Ok: queued as " in r.stdout, r.stdout
    assert any(b"lisa@example.com" in p.read_bytes() for p in server.queue_files()), (
        server.queue_files()
    )


def test_unauthenticated_relay_denied(server: MailroomServer) -> None:
    r = swaks(server, "--from", "someone@example.net", "--to", "lisa@example.com")
    assert r.returncode != 0, r.stdout
    assert "554 5.7.1 <lisa@example.com>: Relay access denied" in r.stdout, r.stdout


def test_plaintext_auth_not_offered(server: MailroomServer) -> None:
    r = swaks(
        server, "--auth", "PLAIN", "--auth-user", JOHN, "--auth-password", PASSWORD, "--to", JOHN
    )
    assert r.returncode != 0, r.stdout
    assert "235 " not in r.stdout, r.stdout


def test_inbound_to_john_delivered(server: MailroomServer) -> None:
    r = swaks(
        server, "--from", "someone@example.net", "--to", JOHN, "--header", "Subject: swaks inbound"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    server.wait_for_maildir(1)
    (msg,) = server.messages()
    assert msg["Subject"] == "swaks inbound"
    assert msg["Return-Path"] == "<someone@example.net>"
