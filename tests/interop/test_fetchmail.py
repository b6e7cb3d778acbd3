"""fetchmail (Debian's) against the POP3 adapter: plain POP3 upgraded with STLS (RFC 2595).

getmail6 has no STLS for POP3 (only plain or implicit-TLS retrievers; see test_getmail.py
for POP3S), so fetchmail is the client that upgrades in-band here. fetchmail talks to the
server through a relay that keeps every byte the client sent, which is what an
eavesdropper on the plaintext port would see: the tests assert the password (and the
USER command) never crosses it in clear, not only that the login succeeded.

Needs `apt-get install -y fetchmail`; skips with a reason when it is absent.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.e2e.pop3_fixture import HOST, JOHN, PASSWORD, Pop3Fixture, pop3_server  # noqa: F401

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("fetchmail") is None,
                       reason="fetchmail not installed (apt-get install -y fetchmail)"),
]
RUN_TIMEOUT = 60  # the whole fetchmail run
FETCHMAIL_TIMEOUT = 20  # fetchmail's own per-read server timeout
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello

MESSAGES = [
    # Lines that need dot-stuffing on the wire, one of them the lone-dot terminator.
    b"From: alice@example.net\nTo: john@example.org\nSubject: one\n\n.first\n..second\n.\nlast\n",
    # Big enough to cross many TLS records and socket reads.
    b"Subject: two\n\n" + b"".join(b"line %05d %s\n" % (i, b"x" * 70) for i in range(5000)),
    b"Subject: three\nContent-Type: text/plain; charset=utf-8\n\ncaf\xc3\xa9 \xe2\x82\xac\n",
]


class Relay:
    """A TCP relay to the server that keeps what the client sent (the eavesdropper's view)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.client_bytes = bytearray()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with client, socket.create_connection((HOST, self.upstream_port), timeout=RUN_TIMEOUT) as server:
                client.settimeout(RUN_TIMEOUT)
                self._pump(client, server)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source, sink = key.fileobj, key.data
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                        if not data:
                            return  # either side closed: the session is over
                        if source is client:
                            self.client_bytes += data
                        sink.sendall(data)
                    except OSError:
                        return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(RUN_TIMEOUT)
        self._listener.close()


@pytest.fixture
def relay(pop3: Pop3Fixture) -> Iterator[Relay]:
    r = Relay(pop3.port)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def pop3_log() -> Iterator[list[str]]:
    """The adapter's log lines. A handler on the logger itself: setup_logging() (run by
    other in-process tests) turns off propagation to the root logger that caplog uses."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("mailroom.pop3")
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def fetchmail(home: Path, port: int, *, stls: bool, ca_file: Path) -> subprocess.CompletedProcess[str]:
    """One `fetchmail` poll of JOHN's maildrop; every message goes to its own file in home/out."""
    dest = home / "out"
    dest.mkdir(parents=True, exist_ok=True)
    if stls:
        # sslproto without --ssl = STLS on the plain port, TLS mandatory; sslcertck = fail on
        # any verification error. The certificate names localhost (and 127.0.0.1, which
        # fetchmail does not match against IP SANs), so name the host to expect.
        tls = f'sslproto "tls1.2+" sslcertck sslcertfile "{ca_file}" sslcommonname "localhost"'
    else:
        tls = "sslproto ''"  # no STLS even though the server offers it
    rc = home / "fetchmailrc"
    rc.write_text(
        "set invisible\n"  # no Received: header, so the delivered bytes are the message's
        f"poll {HOST} service {port} protocol pop3 timeout {FETCHMAIL_TIMEOUT}\n"
        f'  user "{JOHN}" password "{PASSWORD}"\n'
        f"  {tls}\n"
        "  nokeep no rewrite\n"
        # fetchmail expands %-escapes in the MDA, hence mktemp rather than date +%s.
        f"  mda \"/bin/sh -c 'cat > $(mktemp {dest}/msg.XXXXXX)'\"\n"
    )
    rc.chmod(0o600)  # fetchmail refuses a run control file others can read
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    return subprocess.run(
        ["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v", "-v",
         "-i", str(home / "fetchids"), "--pidfile", str(home / "fetchmail.pid")],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, env=env,
    )


def delivered(home: Path) -> list[bytes]:
    out = home / "out"
    return sorted((out / name).read_bytes().replace(b"\r\n", b"\n") for name in os.listdir(out))


def maildir_files(pop3: Pop3Fixture) -> list[str]:
    return os.listdir(pop3.maildir / "new") + os.listdir(pop3.maildir / "cur")


def test_fetchmail_stls_fetches_and_deletes_without_plaintext_password(
    pop3: Pop3Fixture, relay: Relay, pop3_log: list[str], tmp_path: Path,
) -> None:
    for message in MESSAGES:
        pop3.deliver(message)
    result = fetchmail(tmp_path / "fm", relay.port, stls=True, ca_file=pop3.ca_file)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "upgrade to TLS succeeded" in output, output
    assert f"{len(MESSAGES)} messages for {JOHN}" in output, output

    # Byte for byte (fetchmail hands the MDA LF line ends): dot-stuffing undone, 8-bit intact.
    assert delivered(tmp_path / "fm") == sorted(MESSAGES)
    # nokeep: fetchmail DELEs each message once delivered; the QUIT over TLS applies them.
    assert maildir_files(pop3) == []

    # The wire: CAPA, STLS, then only TLS records; no USER or PASS before the upgrade.
    sent = bytes(relay.client_bytes)
    plaintext, stls, encrypted = sent.partition(b"STLS\r\n")
    assert stls and plaintext == b"CAPA\r\n", sent[:200]
    assert encrypted[0] == TLS_HANDSHAKE, encrypted[:16]
    assert PASSWORD.encode() not in sent and JOHN.encode() not in sent and b"USER" not in sent
    # The server's side: one login, and it came over TLS after the handshake.
    assert pop3.auth.calls == [(JOHN, "pop3", True)]
    tls_at = next(i for i, line in enumerate(pop3_log) if line.startswith("TLS connection established"))
    login_at = next(i for i, line in enumerate(pop3_log) if line.startswith(f"Login: user=<{JOHN}>"))
    assert tls_at < login_at and pop3_log[login_at].endswith(", TLS"), pop3_log
    assert any(f"del={len(MESSAGES)}/{len(MESSAGES)}" in line for line in pop3_log), pop3_log


def test_fetchmail_without_stls_is_refused_before_the_password(
    pop3: Pop3Fixture, relay: Relay, tmp_path: Path,
) -> None:
    """disable_plaintext_auth (the default): USER before TLS gets -ERR [AUTH], so a client
    configured without STLS never gets as far as sending PASS."""
    pop3.deliver(MESSAGES[0])
    result = fetchmail(tmp_path / "fm", relay.port, stls=False, ca_file=pop3.ca_file)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output  # fetchmail's PS_AUTHFAIL
    assert "server offered STLS" in output, output  # and fetchmail was told not to use it
    assert f"POP3> USER {JOHN}" in output, output
    assert "POP3< -ERR [AUTH] Plaintext authentication disallowed" in output, output
    assert "POP3> PASS" not in output, output

    sent = bytes(relay.client_bytes)
    assert b"STLS" not in sent and f"USER {JOHN}\r\n".encode() in sent, sent
    assert PASSWORD.encode() not in sent and b"PASS" not in sent, sent
    assert pop3.auth.calls == []  # refused by the protocol core, never reached the backend
    assert delivered(tmp_path / "fm") == [] and len(maildir_files(pop3)) == 1


def test_fetchmail_stls_refuses_a_certificate_from_another_ca(
    pop3: Pop3Fixture, relay: Relay, tmp_path: Path,
) -> None:
    """The success above is not fetchmail skipping verification: a foreign CA fails."""
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    pop3.deliver(MESSAGES[0])
    result = fetchmail(tmp_path / "fm", relay.port, stls=True, ca_file=other_ca)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output  # fetchmail's PS_SOCKET
    assert "certificate verify failed" in output and "upgrade to TLS failed" in output, output

    sent = bytes(relay.client_bytes)
    plaintext, stls, encrypted = sent.partition(b"STLS\r\n")
    assert stls and plaintext == b"CAPA\r\n" and encrypted[0] == TLS_HANDSHAKE, sent[:200]
    assert PASSWORD.encode() not in sent and JOHN.encode() not in sent
    assert pop3.auth.calls == []
    assert delivered(tmp_path / "fm") == [] and len(maildir_files(pop3)) == 1
