"""Dovecot's auth protocol both ways: a real Postfix asks mailroom, mailroom asks a real Dovecot.

Three groups:
- mailroom's socket (DovecotAuthServer) against mailroom's client and hostile clients
  (no peers needed): garbage, endless lines, unknown commands, 1,000 connections;
- Debian's Postfix configured exactly as the ISPmail guide, with smtpd_sasl_path at
  mailroom's socket: 235 for john/summersun and relaying, 535 for a wrong password;
- DovecotAuthClient against Debian's Dovecot auth with passwd-file users.
Peer tests skip with one line when postfix/dovecot are absent (or not root).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import os
import smtplib
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.server import GUIDE_AUTH_PLAIN, JOHN, PASSWORD, MailroomServer, mailroom_cli
from tests.transcripts.dovecot_auth.peers import (
    PrivateDovecot,
    PrivatePostfix,
    peer_base,
    peer_missing,
)

from mailroom.adapters.dovecot_auth import DovecotAuthClient, DovecotAuthServer
from mailroom.config.settings import Config
from mailroom.directory.sql import open_directory
from mailroom.policy.anvil import Anvil
from mailroom.runtime.log import get_logger
from mailroom.sasl.backend import AuthOutcome
from mailroom.sasl.directory_backend import DirectoryAuthBackend

pytestmark = [pytest.mark.interop]

WRONG_PLAIN = base64.b64encode(f"\0{JOHN}\0wrong".encode()).decode()
HANDSHAKE = b"VERSION\t1\t0\nCPID\t4242\n"
DOVECOT_USERS = {"lisa@example.org": "springrain", JOHN: PASSWORD}


class MemoryBackend:
    """An AuthBackend over a dict, counting calls."""

    def __init__(self, users: dict[str, str], temporary: bool = False) -> None:
        self.users = users
        self.temporary = temporary
        self.calls: list[tuple[str, str, bool]] = []

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        service: str,
        remote_ip: str,
        local_ip: str = "",
        secured: bool = False,
    ) -> AuthOutcome:
        self.calls.append((username, service, secured))
        if self.temporary:
            return AuthOutcome(False, temporary=True, reason="directory down")
        if self.users.get(username) == password:
            return AuthOutcome(True, username=username)
        return AuthOutcome(False, reason="authentication failure")


@pytest.fixture
def auth_log() -> Iterator[list[str]]:
    """The auth service's log lines (the mailroom logger may not propagate to caplog)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = get_logger("auth")
    handler = Collect()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def handshaken(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(HANDSHAKE)
    while (await asyncio.wait_for(reader.readline(), 5)) != b"DONE\n":
        pass
    return reader, writer


async def closed_or_fail(reader: asyncio.StreamReader) -> bytes:
    """Read to EOF (a few seconds at most); what the server said before closing."""
    return await asyncio.wait_for(reader.read(), 5)


# -- mailroom's socket and mailroom's client ------------------------------------------------


def test_client_and_server_agree(tmp_path: Path, auth_log: list[str]) -> None:
    async def main() -> None:
        backend = MemoryBackend({JOHN: PASSWORD})
        server = DovecotAuthServer(tmp_path / "auth", 0o660, backend, failure_delay=0.2)
        await server.start()
        client = DovecotAuthClient(tmp_path / "auth")
        try:
            ok = await client.authenticate(
                JOHN, PASSWORD, service="smtp", remote_ip="192.0.2.7", secured=True
            )
            assert ok == AuthOutcome(True, username=JOHN)
            bad = await client.authenticate(JOHN, "wrong", service="imap", remote_ip="192.0.2.7")
            assert not bad.ok and not bad.temporary
            both = await asyncio.gather(
                *(client.authenticate(JOHN, PASSWORD if i % 2 else "x", service="pop3", remote_ip="192.0.2.8") for i in range(20))
            )  # fmt: skip
            assert [o.ok for o in both] == [bool(i % 2) for i in range(20)]
            assert backend.calls[0] == (JOHN, "smtp", True) and backend.calls[1][1:] == (
                "imap",
                False,
            )
        finally:
            await client.close()
            await server.stop()
        assert not (tmp_path / "auth").exists()

    asyncio.run(main())
    assert (
        "unknown[192.0.2.7]: SASL PLAIN authentication failed: authentication failure" in auth_log
    )


def test_failure_delay_holds_only_that_request(tmp_path: Path) -> None:
    async def main() -> None:
        server = DovecotAuthServer(
            tmp_path / "auth", 0o600, MemoryBackend({JOHN: PASSWORD}), failure_delay=1.5
        )
        await server.start()
        try:
            reader, writer = await handshaken(tmp_path / "auth")
            started = time.monotonic()
            writer.write(
                f"AUTH\t1\tPLAIN\tservice=smtp\tresp={WRONG_PLAIN}\n"
                f"AUTH\t2\tPLAIN\tservice=smtp\tresp={GUIDE_AUTH_PLAIN}\n".encode()
            )
            first = await asyncio.wait_for(reader.readline(), 5)
            assert first == f"OK\t2\tuser={JOHN}\n".encode() and time.monotonic() - started < 1.0
            second = await asyncio.wait_for(reader.readline(), 5)
            assert (
                second == f"FAIL\t1\tuser={JOHN}\n".encode() and time.monotonic() - started >= 1.4
            )
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(11, 256)) * 2,  # a TLS hello
        HANDSHAKE + b"x" * 100_000,  # an endless line
        HANDSHAKE + b"HELLO\tworld\n",  # an unknown command
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + GUIDE_AUTH_PLAIN.encode() + b"\n",  # no handshake
        HANDSHAKE + b"AUTH\t1\tCRAM-MD5\tservice=smtp\n",
        HANDSHAKE + b"AUTH\t1\tLOGIN\tservice=smtp\nAUTH\t1\tLOGIN\tservice=smtp\n",
    ],
    ids=[
        "tls-garbage",
        "endless-line",
        "unknown-command",
        "no-handshake",
        "unannounced-mech",
        "duplicate-id",
    ],
)
def test_hostile_client_is_closed(tmp_path: Path, data: bytes) -> None:
    async def main() -> None:
        server = DovecotAuthServer(tmp_path / "auth", 0o600, MemoryBackend({JOHN: PASSWORD}))
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "auth"))
            writer.write(data)
            said = await closed_or_fail(reader)
            assert said.startswith(b"VERSION\t1\t2\n") and b"\nOK\t" not in said
        finally:
            await server.stop()

    asyncio.run(main())


def test_silent_client_is_timed_out(tmp_path: Path) -> None:
    async def main() -> None:
        server = DovecotAuthServer(
            tmp_path / "auth", 0o600, MemoryBackend({}), handshake_timeout=0.3
        )
        await server.start()
        try:
            reader, _ = await asyncio.open_unix_connection(str(tmp_path / "auth"))
            assert (await closed_or_fail(reader)).endswith(b"DONE\n")
        finally:
            await server.stop()

    asyncio.run(main())


def test_thousand_connections_do_not_block_others(tmp_path: Path) -> None:
    async def main() -> None:
        backend = MemoryBackend({JOHN: PASSWORD})
        server = DovecotAuthServer(tmp_path / "auth", 0o600, backend, failure_delay=5.0)
        await server.start()
        path = str(tmp_path / "auth")
        hogs = []
        try:
            for i in range(1000):
                _, writer = await asyncio.open_unix_connection(path)
                # Half-lines, pending wrong passwords (held by the failure delay), idle sockets.
                kind = i % 3
                if kind == 0:
                    writer.write(HANDSHAKE + b"AUTH\t1\tPLAIN\tservice=smtp\tres")
                elif kind == 1:
                    writer.write(
                        HANDSHAKE
                        + f"AUTH\t1\tPLAIN\tservice=smtp\trip=10.0.0.{i % 250}\tresp={WRONG_PLAIN}\n".encode()
                    )
                hogs.append(writer)
            await asyncio.sleep(0.2)
            assert server.connections == 1000
            client = DovecotAuthClient(path, timeout=5)
            started = time.monotonic()
            outcome = await client.authenticate(
                JOHN, PASSWORD, service="smtp", remote_ip="192.0.2.1"
            )
            assert outcome.ok and time.monotonic() - started < 2.0
            await client.close()
        finally:
            for writer in hogs:
                writer.close()
            await server.stop()

    asyncio.run(main())


def test_auth_rate_limit(tmp_path: Path, auth_log: list[str]) -> None:
    async def main() -> None:
        backend = MemoryBackend({JOHN: PASSWORD})
        server = DovecotAuthServer(
            tmp_path / "auth", 0o600, backend, failure_delay=0, anvil=Anvil(60.0), auth_rate_limit=2,
            rate_exempt=lambda ip: ip == "127.0.0.1",
        )  # fmt: skip
        await server.start()
        client = DovecotAuthClient(tmp_path / "auth")
        try:
            outcomes = [
                await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="192.0.2.9")
                for _ in range(3)
            ]
            assert [(o.ok, o.temporary) for o in outcomes] == [
                (True, False),
                (True, False),
                (False, True),
            ]
            exempt = [
                await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="127.0.0.1")
                for _ in range(3)
            ]
            assert all(o.ok for o in exempt)
            assert len(backend.calls) == 5
        finally:
            await client.close()
            await server.stop()

    asyncio.run(main())
    assert "AUTH command rate limit exceeded from unknown[192.0.2.9]" in auth_log


def test_socket_mode_owner_and_stale_socket(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "private" / "auth"
        first = DovecotAuthServer(
            path, 0o660, MemoryBackend({}), user=os.getuid(), group=os.getgid()
        )
        await first.start()
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        second = DovecotAuthServer(path, 0o600, MemoryBackend({}))  # replaces a stale socket
        await second.start()
        await first.stop()  # must not remove its successor's socket
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
        await second.stop()
        path.write_text("not a socket")
        with pytest.raises(OSError, match="not a socket"):
            await DovecotAuthServer(path, 0o600, MemoryBackend({})).start()

    asyncio.run(main())


def test_client_failures_are_temporary_and_one_line(tmp_path: Path) -> None:
    async def main() -> None:
        client = DovecotAuthClient(tmp_path / "missing", timeout=2)
        outcome = await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="192.0.2.1")
        assert not outcome.ok and outcome.temporary
        assert outcome.reason == f"{tmp_path / 'missing'}: No such file or directory"
        # The server goes away and comes back: the kept connection is replaced.
        server = DovecotAuthServer(tmp_path / "auth", 0o600, MemoryBackend({JOHN: PASSWORD}))
        await server.start()
        client = DovecotAuthClient(tmp_path / "auth", timeout=2)
        assert (await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="")).ok
        await server.stop()
        server = DovecotAuthServer(tmp_path / "auth", 0o600, MemoryBackend({JOHN: PASSWORD}))
        await server.start()
        assert (await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="")).ok
        await client.close()
        await server.stop()
        # A server that never answers: a timeout, not a hang.
        silent = await asyncio.start_unix_server(lambda r, w: None, path=str(tmp_path / "silent"))
        client = DovecotAuthClient(tmp_path / "silent", timeout=0.5)
        outcome = await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="")
        assert outcome.temporary and "no answer" in outcome.reason and "\n" not in outcome.reason
        await client.close()
        silent.close()

    asyncio.run(main())


# -- Debian's Postfix against mailroom's socket --------------------------------------------


def _smtp_auth(port: int, *commands: str) -> list[tuple[int, str]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        assert not smtp.has_extn("auth")  # smtpd_tls_auth_only = yes: no AUTH in plaintext
        smtp.starttls(context=ctx)
        smtp.ehlo("client.example.net")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        for command in commands:
            if command == "DATA":
                code, text = smtp.data(b"Subject: relayed by Postfix for john\r\n\r\nhello\r\n")
            else:
                smtp.putcmd(command)
                code, text = smtp.getreply()
            replies.append((code, text.decode()))
    return replies


@pytest.fixture
def peers_dir() -> Iterator[Path]:
    with peer_base() as base:
        yield base


@pytest.fixture
def demo_directory(tmp_path: Path) -> Iterator[DirectoryAuthBackend]:
    """The directory of `mailroom init --demo` (john@example.org / summersun)."""
    config_dir = tmp_path / "mailroom"
    assert mailroom_cli("-c", str(config_dir), "init", "--demo").code == 0
    directory = open_directory(Config.load(config_dir).expanded("directory_url"))
    yield DirectoryAuthBackend(directory)
    directory.close()


def test_postfix_authenticates_against_mailroom(
    peers_dir: Path, demo_directory: DirectoryAuthBackend, auth_log: list[str]
) -> None:
    reason = peer_missing("postfix")
    if reason:
        pytest.skip(reason)
    postfix = PrivatePostfix(peers_dir / "postfix", {})

    async def main() -> None:
        # The guide's smtpd_sasl_path = private/auth, owned by postfix as Dovecot's
        # `unix_listener /var/spool/postfix/private/auth { mode = 0660 user = postfix }`.
        server = DovecotAuthServer(
            postfix.private / "auth",
            0o660,
            demo_directory,
            user="postfix",
            group="postfix",
            failure_delay=0.5,
        )
        await server.start()
        await asyncio.to_thread(postfix.start)
        try:
            ok = await asyncio.to_thread(
                _smtp_auth, postfix.port, f"AUTH PLAIN {GUIDE_AUTH_PLAIN}",
                f"MAIL FROM:<{JOHN}>", "RCPT TO:<lisa@example.com>", "DATA",
            )  # fmt: skip
            assert ok[0] == (235, "2.7.0 Authentication successful"), ok
            assert ok[1][0] == 250 and ok[2] == (250, "2.1.5 Ok"), ok
            assert ok[3][0] == 250 and ok[3][1].startswith("2.0.0 Ok: queued as "), ok
            bad = await asyncio.to_thread(
                _smtp_auth,
                postfix.port,
                f"AUTH PLAIN {WRONG_PLAIN}",
                f"MAIL FROM:<{JOHN}>",
                "RCPT TO:<lisa@example.com>",
            )
            assert bad[0] == (535, "5.7.8 Error: authentication failed: (reason unavailable)"), bad
            assert bad[2][0] in (454, 554) and "Relay access denied" in bad[2][1], bad
            login = await asyncio.to_thread(
                _smtp_auth, postfix.port, "AUTH LOGIN",
                base64.b64encode(JOHN.encode()).decode(), base64.b64encode(PASSWORD.encode()).decode(),
            )  # fmt: skip
            assert login == [
                (334, "VXNlcm5hbWU6"),
                (334, "UGFzc3dvcmQ6"),
                (235, "2.7.0 Authentication successful"),
            ]
        finally:
            await asyncio.to_thread(postfix.stop)
            await server.stop()

    asyncio.run(main())
    maillog = postfix.maillog.read_text()
    assert "sasl_method=PLAIN, sasl_username=john@example.org" in maillog, maillog[-2000:]
    assert (
        "unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure" in auth_log
    )


def _wired(name: str) -> bool:
    from mailroom.runtime import services

    return name in inspect.getsource(services)


def test_postfix_against_mailroom_serve_auth_listen(tmp_path: Path, peers_dir: Path) -> None:
    """The same through `mailroom serve` with auth_listen (once services.py starts it)."""
    reason = peer_missing("postfix") or (
        "" if _wired("DovecotAuthServer") else "auth_listen not wired into mailroom serve yet"
    )
    if reason:
        pytest.skip(reason)
    postfix = PrivatePostfix(peers_dir / "postfix", {})
    socket_path = postfix.private / "auth"
    server = MailroomServer(tmp_path / "mailroom", {
        "auth_listen": str(socket_path), "auth_listen_user": "postfix", "auth_listen_group": "postfix",
    })  # fmt: skip
    server.start()
    try:
        postfix.start()
        ok = _smtp_auth(
            postfix.port,
            f"AUTH PLAIN {GUIDE_AUTH_PLAIN}",
            f"MAIL FROM:<{JOHN}>",
            "RCPT TO:<lisa@example.com>",
        )
        assert ok[0] == (235, "2.7.0 Authentication successful") and ok[2] == (250, "2.1.5 Ok"), ok
        bad = _smtp_auth(postfix.port, f"AUTH PLAIN {WRONG_PLAIN}")
        assert bad[0][0] == 535, bad
    finally:
        postfix.stop()
        assert server.terminate() == 0


# -- mailroom against Debian's Dovecot ------------------------------------------------------


@pytest.fixture
def dovecot(peers_dir: Path) -> Iterator[PrivateDovecot]:
    reason = peer_missing("dovecot")
    if reason:
        pytest.skip(reason)
    peer = PrivateDovecot(peers_dir / "dovecot", DOVECOT_USERS, failure_delay="1s")
    peer.start()
    yield peer
    peer.stop()


def test_client_against_real_dovecot(dovecot: PrivateDovecot) -> None:
    async def main() -> None:
        client = DovecotAuthClient(dovecot.socket, timeout=20)
        try:
            lisa = await client.authenticate(
                "lisa@example.org",
                "springrain",
                service="smtp",
                remote_ip="127.0.0.1",
                secured=True,
            )
            assert lisa == AuthOutcome(True, username="lisa@example.org")
            wrong = await client.authenticate(
                "lisa@example.org", "wrong", service="imap", remote_ip="127.0.0.2"
            )
            assert not wrong.ok and not wrong.temporary  # after auth_failure_delay
            unknown = await client.authenticate(
                "nobody@example.org", "x", service="pop3", remote_ip="127.0.0.3"
            )
            assert not unknown.ok and not unknown.temporary
            many = await asyncio.gather(
                *(
                    client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="127.0.0.1")
                    for _ in range(10)
                )
            )
            assert all(o.ok for o in many), many
        finally:
            await client.close()

    asyncio.run(main())


def test_client_survives_dovecot_restart(dovecot: PrivateDovecot) -> None:
    async def main() -> None:
        client = DovecotAuthClient(dovecot.socket, timeout=20)
        assert (await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="127.0.0.1")).ok
        await asyncio.to_thread(dovecot.stop)
        # Dovecot's auth process may outlive its master a moment: any answer, but no hang.
        down = await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="127.0.0.1")
        assert down.ok or down.temporary
        await asyncio.to_thread(dovecot.start)
        assert (await client.authenticate(JOHN, PASSWORD, service="smtp", remote_ip="127.0.0.1")).ok
        await client.close()

    asyncio.run(main())


def test_mailroom_smtp_asks_real_dovecot(tmp_path: Path, dovecot: PrivateDovecot) -> None:
    """smtpd_sasl_type = dovecot: lisa exists only in Dovecot's passwd-file, not in mailroom's directory."""
    if not _wired("DovecotAuthClient"):
        pytest.skip("smtpd_sasl_type = dovecot not wired into mailroom serve yet")
    server = MailroomServer(tmp_path / "mailroom", {
        "mynetworks": "", "smtpd_sasl_type": "dovecot", "smtpd_sasl_path": str(dovecot.socket),
    })  # fmt: skip
    server.start()
    try:
        lisa = base64.b64encode(b"\0lisa@example.org\0springrain").decode()
        wrong = base64.b64encode(b"\0lisa@example.org\0wrong").decode()
        ctx = server.ssl_context()
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
            smtp.starttls(context=ctx)
            smtp.ehlo("client.example.net")
            assert smtp.docmd("AUTH", f"PLAIN {wrong}")[0] == 535
            assert smtp.docmd("AUTH", f"PLAIN {lisa}") == (235, b"2.7.0 Authentication successful")
    finally:
        with contextlib.suppress(Exception):
            assert server.terminate() == 0
