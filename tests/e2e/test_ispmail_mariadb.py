"""Issue 7 acceptance: `mailroom serve` on a MariaDB database made by the ISPmail guide.

The database is created with the guide's own SQL (no quota column, a {SHA512-CRYPT}
hash from `doveadm pw`) in a scratch database of the machine's MariaDB; mailroom gets
nothing but `directory_url`. The outage test puts a TCP relay between mailroom and
MariaDB and cuts it, so the shared server itself is never stopped. Skips with a reason
when MariaDB is not running.
"""

from __future__ import annotations

import imaplib
import poplib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from mailroom.directory.engine import normalise_url
from tests.e2e.server import (
    GUIDE_AUTH_PLAIN,
    HOST,
    JOHN,
    PASSWORD,
    MailroomServer,
    RawSMTP,
    free_ports,
    mailroom_server_factory,  # noqa: F401  (fixture)
    port_accepts,
)
from tests.unit.directory.servers import (
    GUIDE_SHA512_CRYPT,
    MARIADB_URL,
    TcpProxy,
    create_guide_database,
    scratch_database,
    unreachable,
)

Factory = Callable[..., MailroomServer]
TEMPFAIL = "451 4.3.0"
# How long the server may take to notice the database is back (pool ping, no cache).
RECOVERY_SECONDS = 15.0


def _doveadm_hash() -> str:
    """The guide's way to make a hash; the recorded output of the same command without it."""
    doveadm = shutil.which("doveadm")
    if doveadm is None:
        return GUIDE_SHA512_CRYPT
    out = subprocess.run(
        [doveadm, "pw", "-s", "SHA512-CRYPT", "-p", PASSWORD],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert out.startswith("{SHA512-CRYPT}$6$"), out
    return out


@pytest.fixture
def guide_database() -> Iterator[str]:
    reason = unreachable(MARIADB_URL)
    if reason:
        pytest.skip(reason)
    with scratch_database(MARIADB_URL, prefix="mailroom_ispmail") as url:
        create_guide_database(url, _doveadm_hash())
        yield url


def _deliver(port: int, rcpt: str = JOHN, subject: str = "guide") -> str:
    """One message over the MX port; returns the reply to RCPT (and checks DATA when 250)."""
    with RawSMTP(port) as smtp:
        assert smtp.greeting().startswith("220 ")
        smtp.ehlo()
        assert smtp.cmd_line("MAIL FROM:<lisa@example.com>").startswith("250 ")
        reply = smtp.cmd_line(f"RCPT TO:<{rcpt}>")
        if reply.startswith("250 "):
            assert smtp.cmd_line("DATA").startswith("354 ")
            smtp.send(f"Subject: {subject}\r\n\r\nfrom an ISPmail database\r\n.\r\n")
            assert smtp.reply_line().startswith("250 "), smtp.dump()
        smtp.cmd_line("QUIT")
        return reply


def _auth(server: MailroomServer) -> str:
    with RawSMTP(server.submission_port) as smtp:
        smtp.greeting()
        smtp.ehlo()
        smtp.starttls(server.ssl_context())
        smtp.ehlo()
        return smtp.cmd_line(f"AUTH PLAIN {GUIDE_AUTH_PLAIN}")


def test_guide_database_serves_smtp_and_imap_unchanged(
    guide_database: str,
    mailroom_server_factory: Factory,  # noqa: F811
) -> None:
    (imaps_port,) = free_ports(1)
    server = mailroom_server_factory(
        directory_url=guide_database, mynetworks="", imaps_listen=f"{HOST}:{imaps_port}"
    )
    assert _auth(server).startswith("235 2.7.0"), server.log()[-2000:]
    assert _deliver(server.smtp_port).startswith("250 ")
    assert _deliver(server.smtp_port, "postmaster@example.org", "alias").startswith("250 ")
    reply = _deliver(server.smtp_port, "nobody@example.org")
    assert reply.startswith("550 5.1.1"), reply
    messages = server.wait_for_maildir(2)
    assert len(messages) == 2
    imap = imaplib.IMAP4_SSL("localhost", imaps_port, ssl_context=server.ssl_context(), timeout=20)
    imap.login(JOHN, PASSWORD)  # the guide's {SHA512-CRYPT} hash, through IMAP too
    assert imap.select("INBOX") == ("OK", [b"2"])
    imap.logout()
    # The CLI works on the same database, and `directory migrate` adopts it in place.
    check = server.cli("directory", "check")
    assert check.code == 0 and "SHA512-CRYPT 1" in check.out, check
    migrate = server.cli("directory", "migrate")
    assert migrate.code == 0 and "from revision none" in migrate.out, migrate
    assert _auth(server).startswith("235 2.7.0")


def test_database_outage_gives_temporary_failures_then_heals(
    guide_database: str,
    mailroom_server_factory: Factory,  # noqa: F811
) -> None:
    target = normalise_url(guide_database)
    proxy = TcpProxy(target.host or HOST, target.port or 3306)
    (pop3s_port,) = free_ports(1)
    try:
        server = mailroom_server_factory(
            directory_url=proxy.url_for(guide_database),
            directory_cache_ttl="0",  # every look-up reaches the database
            mynetworks="",
            pop3s_listen=f"{HOST}:{pop3s_port}",
        )
        assert _deliver(server.smtp_port).startswith("250 ")
        server.wait_for_maildir(1)

        proxy.cut()  # MariaDB "stops"
        started = time.monotonic()
        reply = _deliver(server.smtp_port)
        assert reply.startswith(TEMPFAIL), reply
        assert time.monotonic() - started < RECOVERY_SECONDS, "a down database must not hang SMTP"
        auth = _auth(server)
        assert auth.startswith("454 4.7.0"), auth
        assert port_accepts(pop3s_port)
        pop = poplib.POP3_SSL(HOST, pop3s_port, timeout=20, context=server.ssl_context())
        try:
            pop.user(JOHN)
            with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
                pop.pass_(PASSWORD)
        finally:
            pop.close()

        proxy.restore()  # and comes back: no restart, no reload
        deadline = time.monotonic() + RECOVERY_SECONDS
        while (reply := _deliver(server.smtp_port, subject="after")).startswith(TEMPFAIL):
            assert time.monotonic() < deadline, (
                "service did not resume after the database came back"
            )
            time.sleep(0.2)
        assert reply.startswith("250 "), reply
        assert _auth(server).startswith("235 2.7.0")
        server.wait_for_maildir(2)
    finally:
        proxy.close()


def test_serve_starts_while_the_database_is_down_then_heals(
    guide_database: str,
    mailroom_server_factory: Factory,  # noqa: F811
) -> None:
    """As Postfix with its SQL maps down: start, defer, recover without a restart."""
    target = normalise_url(guide_database)
    proxy = TcpProxy(target.host or HOST, target.port or 3306)
    proxy.cut()  # MariaDB is not up yet when mailroom starts (boot order, a failover)
    try:
        server = mailroom_server_factory(
            directory_url=proxy.url_for(guide_database), directory_cache_ttl="0", mynetworks="")
        assert "answering with temporary errors until it is back" in server.log()
        reply = _deliver(server.smtp_port)
        assert reply.startswith(TEMPFAIL), reply
        assert _auth(server).startswith("454 4.7.0")
        proxy.restore()
        deadline = time.monotonic() + RECOVERY_SECONDS
        while (reply := _deliver(server.smtp_port)).startswith(TEMPFAIL):
            assert time.monotonic() < deadline, "service did not resume after the database came up"
            time.sleep(0.2)
        assert reply.startswith("250 "), reply
        assert _auth(server).startswith("235 2.7.0")
        server.wait_for_maildir(1)
    finally:
        proxy.close()
