"""The guide's outgoing-mail cases through the real `mailroom serve`, with Debian's Postfix as the peer.

1. John authenticates on mailroom's submission port and writes to lisa@example.com; mailroom
   delivers over STARTTLS to a private Postfix that is example.com's MX (virtual Maildir).
2. A private Postfix relays INTO mailroom: mail injected with Postfix's own `sendmail -C DIR`
   for john@example.org lands in John's Maildir.
3. The MX answers 4xx, mailroom defers; after `postconf -e` + `postfix reload` and
   `mailroom queue flush` it is sent, and Postfix holds exactly one copy.
4. The MX answers 5xx at RCPT (unknown virtual user): John gets one multipart/report bounce.

Every Postfix gets its own directories under a 0711 temporary base (not pytest's 0700
tmp_path), loopback high ports, chroot off, its own maillog, and is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from tests.e2e.server import HOST, JOHN, PASSWORD, MailroomServer
from tests.transcripts.dovecot_auth.peers import PrivatePostfix, peer_base, peer_missing

pytestmark = [pytest.mark.interop]

Factory = Callable[..., MailroomServer]
WAIT = 20.0
LISA = "lisa@example.com"
GUIDE_MESSAGE = (
    b"From: john@example.org\r\nTo: lisa@example.com\r\nSubject: hi lisa\r\n"
    b"Message-ID: <guide-1@example.org>\r\n\r\nHello Lisa.\r\n"
)
# The MX needs the virtual(8) delivery agent, which the shared helper's master.cf lacks.
VIRTUAL_SERVICE = "virtual   unix  -       n       n       -       -       virtual\n"


@pytest.fixture(autouse=True)
def _need_postfix() -> None:
    reason = peer_missing("postfix")
    if reason:
        pytest.skip(reason)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Peer:
    """A PrivatePostfix plus the bits the tests read: its log, lisa's Maildir, postconf/reload."""

    def __init__(self, postfix: PrivatePostfix) -> None:
        self.pf = postfix

    @property
    def port(self) -> int:
        return self.pf.port

    def log(self) -> str:
        return self.pf.maillog.read_text(errors="replace") if self.pf.maillog.exists() else ""

    def maildir_files(self, local: str = "lisa") -> list[Path]:
        md = self.pf.base / "vmail" / "example.com" / local / "Maildir"
        return sorted(
            p for sub in ("new", "cur") if (md / sub).is_dir() for p in (md / sub).iterdir()
        )

    def postconf(self, **edits: str) -> None:
        args = [f"{k}={v}" for k, v in edits.items()]
        subprocess.run(["postconf", "-c", str(self.pf.etc), "-e", *args], check=True, timeout=30)

    def reload(self) -> None:
        before = self.log().count("reload -- version")
        result = self.pf.postfix("reload")
        assert result.returncode == 0, result.stdout
        wait_until(lambda: self.log().count("reload -- version") > before, "postfix reload")

    def sendmail(self, sender: str, rcpt: str, message: bytes) -> None:
        exe = shutil.which("sendmail") or "/usr/sbin/sendmail"
        subprocess.run(
            [exe, "-C", str(self.pf.etc), "-f", sender, "-i", rcpt],
            input=message, check=True, timeout=30, capture_output=True,
        )  # fmt: skip


def stop_postfix(pf: PrivatePostfix) -> None:
    """`postfix -c DIR stop`, then wait (bounded) until `postfix status` says it is gone.

    Not PrivatePostfix.stop(): it waits for master.pid to vanish, which Postfix never
    removes, so it always sleeps its full 10 s."""
    pf.postfix("stop")
    with contextlib.suppress(AssertionError):
        wait_until(lambda: pf.postfix("status").returncode != 0, "Postfix to stop", 10)
    if pf.postfix("status").returncode == 0:
        pf.postfix("abort")


@pytest.fixture
def postfix_factory() -> Iterator[Callable[..., Peer]]:
    """`factory(**main_cf)` → a started private Postfix; every one is stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def factory(**settings: str) -> Peer:
            base = stack.enter_context(peer_base("mailroom-pfx-out-"))
            vmail = base / "vmail"
            vmail.mkdir()
            vmail.chmod(0o777)
            main = {
                "myhostname": "mx.example.com",  # not mailroom's name: no "loops back to myself"
                "mydomain": "example.com",
                "mydestination": "",
                "smtpd_sasl_auth_enable": "no",
                "smtpd_recipient_restrictions": "",
                "smtpd_tls_loglevel": "1",
                "smtp_tls_loglevel": "1",
                "smtputf8_enable": "no",
                "virtual_mailbox_domains": "example.com",
                "virtual_mailbox_base": str(vmail),
                "virtual_mailbox_maps": f"inline:{{ {LISA}=example.com/lisa/Maildir/ }}",
                "virtual_uid_maps": "static:65534",
                "virtual_gid_maps": "static:65534",
                **settings,
            }
            pf = PrivatePostfix(base, main)
            with open(pf.etc / "master.cf", "a") as f:
                f.write(VIRTUAL_SERVICE)
            stack.callback(stop_postfix, pf)
            try:
                pf.start()
            except RuntimeError as exc:
                pytest.skip(f"private postfix did not start: {str(exc).splitlines()[0]}")
            return Peer(pf)

        yield factory


def route_to(peer: Peer, **edits: str) -> dict[str, str]:
    return {
        "transport_maps": f"inline:{{ example.com=smtp:[127.0.0.1]:{peer.port} }}",
        "mynetworks": "",  # as in the guide: only SASL-authenticated users may relay
        **edits,
    }


def submit_as_john(server: MailroomServer, rcpt: str = LISA) -> None:
    with smtplib.SMTP(HOST, server.submission_port, timeout=20) as smtp:
        smtp.starttls(context=server.ssl_context())
        smtp.login(JOHN, PASSWORD)
        smtp.sendmail(JOHN, [rcpt], GUIDE_MESSAGE)


def log_lines(text: str, *fragments: str) -> list[str]:
    return [line for line in text.splitlines() if all(f in line for f in fragments)]


def parse(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_authenticated_submission_is_delivered_to_a_real_postfix_mx_over_starttls(
    mailroom_server_factory: Factory, postfix_factory: Callable[..., Peer]
) -> None:
    mx = postfix_factory()
    server = mailroom_server_factory(**route_to(mx))
    submit_as_john(server)
    wait_until(mx.maildir_files, "the message in lisa's Maildir at Postfix\n" + mx.log()[-1500:])
    (path,) = mx.maildir_files()
    message = parse(path)
    assert message["Subject"] == "hi lisa"
    assert message["Message-ID"] == "<guide-1@example.org>"
    received = message.get_all("Received") or []
    # Postfix on top: it got the message from mailroom over TLS; mailroom's own below it.
    assert "by mx.example.com (Postfix) with ESMTPS" in str(received[0]), received
    assert any("by mail.example.org (mailroom) with ESMTPSA" in str(r) for r in received), received
    assert message["Return-Path"] == "<john@example.org>"

    log = server.wait_for_log(lambda t: bool(log_lines(t, f"to=<{LISA}>", "status=sent")), WAIT)
    (line,) = log_lines(log, f"to=<{LISA}>", "status=sent")
    assert f"relay=127.0.0.1[127.0.0.1]:{mx.port}" in line, line
    assert re.search(r"delay=\d", line) and "dsn=2.0.0" in line, line
    queued = re.search(r"queued as (\w+)", line)
    assert queued, line
    wait_until(lambda: not server.queue_files(), "mailroom's queue to empty")

    wait_until(lambda: "delivered to maildir" in mx.log(), "Postfix's delivery log line")
    pf_log = mx.log()
    assert "TLS connection established from" in pf_log, pf_log
    # The queue ID mailroom logged is the one Postfix delivered to Lisa's Maildir.
    assert log_lines(
        pf_log, f"{queued.group(1)}: to=<{LISA}>", "status=sent (delivered to maildir)"
    ), pf_log


def test_real_postfix_relays_into_mailroom(
    mailroom_server_factory: Factory, postfix_factory: Callable[..., Peer]
) -> None:
    server = mailroom_server_factory()
    relay = postfix_factory(
        myhostname="relay.example.net",
        mydomain="example.net",
        smtp_tls_security_level="may",  # Debian's main.cf default: STARTTLS when offered
        transport_maps=f"inline:{{ example.org=smtp:[127.0.0.1]:{server.smtp_port} }}",
    )
    relay.sendmail(
        "lisa@example.net", JOHN,
        b"From: lisa@example.net\nTo: john@example.org\nSubject: via postfix\n\nHello John.\n",
    )  # fmt: skip
    server.wait_for_maildir(1, timeout=WAIT)
    (path,) = server.maildir_files()
    message = parse(path)
    assert message["Subject"] == "via postfix"
    assert message["Return-Path"] == "<lisa@example.net>"
    received = [str(r) for r in message.get_all("Received") or []]
    assert "by mail.example.org (mailroom) with ESMTPS" in received[0], received
    assert any("by relay.example.net (Postfix" in r for r in received), received
    assert message.get_content().strip() == "Hello John."

    wait_until(lambda: log_lines(relay.log(), f"to=<{JOHN}>", "status=sent"), "Postfix's sent line")
    pf_log = relay.log()
    (line,) = log_lines(pf_log, f"to=<{JOHN}>", "status=sent")
    assert f"relay=127.0.0.1[127.0.0.1]:{server.smtp_port}" in line and "dsn=2.0.0" in line, line
    assert "TLS connection established to 127.0.0.1[127.0.0.1]" in pf_log, pf_log
    assert log_lines(server.log(), "connect from", "127.0.0.1"), server.log()


def test_postfix_deferral_then_flush_delivers_exactly_once(
    mailroom_server_factory: Factory, postfix_factory: Callable[..., Peer]
) -> None:
    mx = postfix_factory(
        smtpd_recipient_restrictions="check_recipient_access inline:{ lisa@example.com=DEFER_IF_PERMIT }"
    )
    # No automatic retry in this test's time frame: only `queue flush` can deliver it.
    server = mailroom_server_factory(
        **route_to(mx, minimal_backoff_time="1h", maximal_backoff_time="2h")
    )
    submit_as_john(server)
    log = server.wait_for_log(lambda t: bool(log_lines(t, f"to=<{LISA}>", "status=deferred")), WAIT)
    (deferred,) = log_lines(log, f"to=<{LISA}>", "status=deferred")
    assert re.search(r"dsn=4\.\d+\.\d+", deferred) and "450 4.7.1" in deferred, deferred
    assert "NOQUEUE: reject: RCPT from" in mx.log() and "450 4.7.1" in mx.log(), mx.log()
    assert len(server.queue_files()) == 1
    assert mx.maildir_files() == []

    mx.postconf(smtpd_recipient_restrictions="")
    mx.reload()
    assert server.cli("queue", "flush").code == 0
    log = server.wait_for_log(lambda t: bool(log_lines(t, f"to=<{LISA}>", "status=sent")), WAIT)
    (sent,) = log_lines(log, f"to=<{LISA}>", "status=sent")
    assert "dsn=2.0.0" in sent, sent
    wait_until(mx.maildir_files, "the message at Postfix\n" + mx.log()[-1500:])
    wait_until(lambda: not server.queue_files(), "mailroom's queue to empty")
    time.sleep(1.0)  # a bounded pause: no second copy may follow
    assert len(mx.maildir_files()) == 1
    assert parse(mx.maildir_files()[0])["Message-ID"] == "<guide-1@example.org>"
    assert server.maildir_files() == []  # no bounce, no delay notice for John


def test_postfix_unknown_user_bounces_to_john(
    mailroom_server_factory: Factory, postfix_factory: Callable[..., Peer]
) -> None:
    mx = postfix_factory(virtual_mailbox_maps="inline:{ bob@example.com=example.com/bob/Maildir/ }")
    server = mailroom_server_factory(**route_to(mx))
    submit_as_john(server)
    server.wait_for_maildir(1, timeout=WAIT)
    time.sleep(1.0)  # a bounded pause: exactly one bounce
    (path,) = server.maildir_files()
    bounce = parse(path)
    assert bounce.get_content_type() == "multipart/report", bounce
    assert bounce.get_param("report-type") == "delivery-status"
    assert bounce["Return-Path"] == "<>"
    parts = list(bounce.iter_parts())
    status = next(p for p in parts if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; lisa@example.com" in text, text
    assert "Action: failed" in text, text
    assert "Status: 5.1.1" in text, text
    diag = re.search(r"Diagnostic-Code: (.*(?:\n[ \t].*)*)", text)
    assert diag, text
    diagnostic = re.sub(r"\s+", " ", diag.group(1))
    assert diagnostic.startswith("smtp; 550 5.1.1"), diagnostic
    assert "Recipient address rejected: User unknown in virtual mailbox table" in diagnostic, (
        diagnostic
    )
    log = server.log()
    (line,) = log_lines(log, f"to=<{LISA}>", "status=bounced")
    assert "dsn=5.1.1" in line and f"relay=127.0.0.1[127.0.0.1]:{mx.port}" in line, line
    assert "User unknown in virtual mailbox table" in mx.log(), mx.log()
    assert mx.maildir_files() == []
    wait_until(lambda: not server.queue_files(), "mailroom's queue to empty")
