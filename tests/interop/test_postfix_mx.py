"""SmtpTransport delivering to Debian's real Postfix (3.7) as the receiving MX.

A private Postfix instance on a loopback high port: its own config_directory,
queue_directory, data_directory and maillog_file, no chroot, virtual mailboxes for
example.com (bob only), STARTTLS with a trustme certificate, SMTPUTF8 off.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from mailroom.adapters.smtp_client import SmtpClientSettings, SmtpTransport
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.transport import DeliveryResult, Outcome

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not os.path.exists(POSTFIX), reason="postfix not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance must be started as root"),
]

START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0


@dataclass
class PostfixPeer:
    root: Path
    port: int

    @property
    def maildir(self) -> Path:
        return self.root / "vmail" / "example.com" / "bob" / "Maildir"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_cf(text: str, port: int) -> str:
    """One smtpd on 127.0.0.1:port, nothing else listening, chroot off everywhere."""
    out = []
    for line in text.splitlines():
        if re.match(r"^\S+\s+inet\s", line):
            if not re.match(r"^smtp\s+inet\s", line):
                out.append("#" + line)
                continue
            line = line.replace("smtp", f"127.0.0.1:{port}", 1)
        m = re.match(r"^(\S+\s+(?:inet|unix|unix-dgram|fifo|pass)\s+\S+\s+\S+\s+)(\S+)(.*)$", line)
        if m:
            line = m.group(1) + "n" + m.group(3)
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def postfix_peer() -> Iterator[PostfixPeer]:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and Postfix's daemons run as postfix.
    root = Path(tempfile.mkdtemp(prefix="mailroom-postfix-"))
    try:
        yield from _run_postfix(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_postfix(root: Path) -> Iterator[PostfixPeer]:
    conf = root / "conf"
    shutil.copytree("/etc/postfix", conf, symlinks=True)
    for sub in ("queue", "data", "vmail"):
        (root / sub).mkdir()
    shutil.chown(root / "data", "postfix")
    os.chmod(root / "vmail", 0o777)
    os.chmod(root, 0o755)
    ca = trustme.CA()
    ca.issue_cert("pfx.example").private_key_and_cert_chain_pem.write_to_path(str(root / "cert.pem"))
    port = _free_port()
    settings = {
        "queue_directory": root / "queue", "data_directory": root / "data",
        "maillog_file": root / "maillog", "maillog_file_prefixes": root,
        "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "myhostname": "pfx.example",
        "mydestination": "", "relayhost": "", "alias_maps": "", "alias_database": "",
        "mynetworks": "127.0.0.0/8", "compatibility_level": "3.6", "smtputf8_enable": "no",
        "virtual_mailbox_domains": "example.com", "virtual_mailbox_base": root / "vmail",
        "virtual_mailbox_maps": "inline:{bob@example.com=example.com/bob/Maildir/}",
        "virtual_uid_maps": "static:65534", "virtual_gid_maps": "static:65534",
        "smtpd_tls_security_level": "may", "smtpd_tls_chain_files": root / "cert.pem",
        "smtpd_tls_cert_file": "", "smtpd_tls_loglevel": "1", "smtpd_tls_key_file": "", "smtp_dns_support_level": "disabled",
    }
    subprocess.run([POSTCONF, "-c", str(conf), "-e", *(f"{k}={v}" for k, v in settings.items())], check=True)
    master = conf / "master.cf"
    master.write_text(_master_cf(master.read_text(), port))
    started = subprocess.run([POSTFIX, "-c", str(conf), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        log = root / "maillog"
        detail = started.stderr.strip() or (log.read_text(errors="replace")[-500:] if log.exists() else "")
        pytest.skip(f"private postfix did not start: {detail}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                subprocess.run([POSTFIX, "-c", str(conf), "stop"], capture_output=True)
                pytest.skip("private postfix is not listening")
            time.sleep(0.1)
    try:
        yield PostfixPeer(root, port)
    finally:
        subprocess.run([POSTFIX, "-c", str(conf), "stop"], capture_output=True)


def deliver(peer: PostfixPeer, env: Envelope, data: bytes) -> list[DeliveryResult]:
    settings = SmtpClientSettings(tls_level="encrypt",
                                  transport_maps=[f"inline:{{ example.com=smtp:[127.0.0.1]:{peer.port} }}"])

    class NoDns:  # every route here is a bracketed IP: DNS must not be asked
        async def a(self, name: str) -> list[str]:
            raise AssertionError(name)

        aaaa = mx = txt = a

    async def main() -> list[DeliveryResult]:
        transport = SmtpTransport(NoDns(), settings, "client.example.org")  # type: ignore[arg-type]
        return await transport.deliver(env, data, env.recipients)

    return asyncio.run(main())


def test_delivery_to_postfix_over_starttls(postfix_peer: PostfixPeer) -> None:
    env = Envelope("alice@example.org", [Recipient("bob@example.com", notify=("SUCCESS", "FAILURE")),
                                         Recipient("nobody@example.com")], envid="ENV-1", ret="HDRS")
    data = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: interop\r\n\r\n.starts with a dot\r\nbye\r\n"
    bob, nobody = deliver(postfix_peer, env, data)
    assert (bob.outcome, bob.dsn) == (Outcome.SENT, "2.0.0"), bob
    assert bob.relay == f"127.0.0.1[127.0.0.1]:{postfix_peer.port}"
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as \w+", bob.reason), bob.reason
    assert (nobody.outcome, nobody.dsn) == (Outcome.BOUNCED, "5.1.1"), nobody
    assert nobody.reason == ("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <nobody@example.com>: Recipient "
                             "address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)")
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    files: list[Path] = []
    while not files and time.monotonic() < deadline:
        files = list((postfix_peer.maildir / "new").glob("*")) if postfix_peer.maildir.exists() else []
        time.sleep(0.2)
    assert files, postfix_peer.log()
    body = files[0].read_bytes()
    assert b"\n.starts with a dot\n" in body  # dot-stuffing undone by the peer
    assert b"Subject: interop" in body
    log = postfix_peer.log()
    assert "TLS connection established from" in log
    # NOTIFY=SUCCESS reached Postfix: it made a success DSN for alice (RFC 3461 §4.1).
    assert "sender delivery status notification" in log, log


def test_smtputf8_message_to_postfix_without_smtputf8_bounces(postfix_peer: PostfixPeer) -> None:
    env = Envelope("jörg@example.org", [Recipient("bob@example.com")], smtputf8=True)
    (result,) = deliver(postfix_peer, env, b"Subject: x\r\n\r\nhi\r\n")
    assert (result.outcome, result.dsn) == (Outcome.BOUNCED, "5.6.7"), result
    assert result.reason == "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"
