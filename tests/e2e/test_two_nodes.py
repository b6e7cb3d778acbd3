"""Issue 7 §4 acceptance: two `mailroom serve` nodes on one PostgreSQL directory and one mail root.

Each node has its own config dir, queue and data directory; both have `directory_url`
pointing at the same scratch PostgreSQL schema (made with `mailroom directory migrate`)
and `virtual_mailbox_base` pointing at the same directory. A user added through node A's
command line must be accepted by node B within `directory_cache_ttl`; messages delivered
concurrently through both nodes into one mailbox, while IMAP sessions on both nodes
sync, must get unique UIDs that both nodes agree on. Skips when PostgreSQL is down.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailroom.mailstore.uidlist import LOCK_NAME, read_uidlist
from tests.e2e.server import (
    CLI_TIMEOUT,
    HOST,
    JOHN,
    PASSWORD,
    MailroomServer,
    RawSMTP,
    free_ports,
    mailroom_server_factory,  # noqa: F401  (fixture)
)
from tests.unit.directory.servers import POSTGRESQL_URL, scratch_database, unreachable

Factory = Callable[..., MailroomServer]
CACHE_TTL = 1.0  # seconds; directory_cache_ttl on both nodes
PROPAGATION_LIMIT = CACHE_TTL + 4.0  # TTL plus a generous margin for a loaded CI machine
MESSAGES_PER_NODE = 100
SENDER_THREADS = 4  # per node
LISA = "lisa@example.org"


@dataclass
class Cluster:
    a: MailroomServer
    b: MailroomServer
    imaps: dict[str, int]  # node name -> IMAPS port
    mail_root: Path

    def nodes(self) -> list[tuple[str, MailroomServer]]:
        return [("A", self.a), ("B", self.b)]

    def maildir(self, address: str = JOHN) -> Path:
        local, domain = address.split("@")
        return self.mail_root / domain / local / "Maildir"

    def maildir_files(self, address: str = JOHN) -> list[Path]:
        files: list[Path] = []
        for sub in ("new", "cur"):
            d = self.maildir(address) / sub
            if d.is_dir():
                files.extend(p for p in d.iterdir() if p.is_file())
        return files

    def imap(self, node: str) -> imaplib.IMAP4_SSL:
        server = self.a if node == "A" else self.b
        client = imaplib.IMAP4_SSL(
            "localhost", self.imaps[node], ssl_context=server.ssl_context(), timeout=30
        )
        client.login(JOHN, PASSWORD)
        return client


def _cli_stdin(server: MailroomServer, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailroom", "-c", str(server.config_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


@pytest.fixture
def cluster(tmp_path: Path, mailroom_server_factory: Factory) -> Iterator[Cluster]:  # noqa: F811
    reason = unreachable(POSTGRESQL_URL)
    if reason:
        pytest.skip(reason)
    mail_root = tmp_path / "shared-vmail"
    mail_root.mkdir()
    with scratch_database(POSTGRESQL_URL, prefix="mailroom_two_nodes") as url:
        imaps: dict[str, int] = {}
        servers = []
        for node in ("A", "B"):
            (port,) = free_ports(1)
            imaps[node] = port
            servers.append(
                mailroom_server_factory(
                    _start=False,
                    directory_url=url,
                    directory_cache_ttl=f"{CACHE_TTL:g}s",
                    virtual_mailbox_base=str(mail_root),
                    imaps_listen=f"{HOST}:{port}",
                    mynetworks="",
                )
            )
        a, b = servers
        assert a.queue_dir != b.queue_dir
        migrate = a.cli("directory", "migrate")
        assert migrate.code == 0, migrate
        for args in (
            ("domain", "add", "example.org"),
            ("alias", "add", "postmaster@example.org", JOHN),
        ):
            result = a.cli(*args)
            assert result.code == 0, result
        added = _cli_stdin(a, "user", "add", JOHN, "--password-stdin", stdin=PASSWORD + "\n")
        assert added.returncode == 0, added
        a.start()
        b.start()
        yield Cluster(a, b, imaps, mail_root)
        # The factory stops both nodes (SIGTERM, exit 0) after this fixture is done;
        # stop them here already so no session holds the scratch schema when it is dropped.
        for server in (a, b):
            if server.running:
                assert server.terminate() == 0, server.stderr()[-3000:]


def _rcpt(port: int, rcpt: str) -> str:
    with RawSMTP(port) as smtp:
        assert smtp.greeting().startswith("220 ")
        smtp.ehlo()
        assert smtp.cmd_line("MAIL FROM:<someone@example.net>").startswith("250 ")
        reply = smtp.cmd_line(f"RCPT TO:<{rcpt}>")
        smtp.cmd_line("QUIT")
        return reply


def test_user_added_on_node_a_is_accepted_on_node_b_within_the_ttl(cluster: Cluster) -> None:
    # Both nodes have looked lisa up and been told "no such user" (and may cache that).
    for _, server in cluster.nodes():
        reply = _rcpt(server.smtp_port, LISA)
        assert reply.startswith("550 5.1.1"), reply
    added = _cli_stdin(cluster.a, "user", "add", LISA, "--password-stdin", stdin="lisapass\n")
    assert added.returncode == 0, added
    started = time.monotonic()
    replies = []
    while True:
        reply = _rcpt(cluster.b.smtp_port, LISA)
        replies.append(reply)
        if reply.startswith("250 "):
            break
        elapsed = time.monotonic() - started
        assert elapsed < PROPAGATION_LIMIT, (
            f"node B still refuses {LISA} {elapsed:.1f}s after it was added on node A"
            f" (directory_cache_ttl={CACHE_TTL:g}s); replies: {replies[-3:]}"
        )
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    print(f"node B accepted {LISA} {elapsed:.2f}s after `user add` on node A")
    assert _rcpt(cluster.a.smtp_port, LISA).startswith("250 ")


_UID_RE = re.compile(rb"UID (\d+)")
_MSGID_RE = re.compile(rb"Message-ID:\s*<([^>]+)>", re.IGNORECASE)


def _uid_to_message_id(client: imaplib.IMAP4_SSL) -> dict[int, str]:
    """UID -> Message-ID of every message in the selected mailbox (one UID FETCH)."""
    status, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert status == "OK", data
    result: dict[int, str] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue  # the closing ")" of each FETCH response
        uid_match = _UID_RE.search(item[0])
        msgid_match = _MSGID_RE.search(item[1])
        assert uid_match and msgid_match, item
        uid = int(uid_match.group(1))
        assert uid not in result, f"UID {uid} reported twice in one FETCH"
        result[uid] = msgid_match.group(1).decode()
    return result


def _uids(client: imaplib.IMAP4_SSL) -> list[int]:
    status, data = client.uid("FETCH", "1:*", "(UID)")
    assert status == "OK", data
    return [
        int(m.group(1))
        for line in data
        if isinstance(line, bytes)
        for m in [_UID_RE.search(line)]
        if m
    ]


def test_concurrent_delivery_through_both_nodes_gives_unique_agreed_uids(cluster: Cluster) -> None:
    total = 2 * MESSAGES_PER_NODE
    errors: list[str] = []
    sent: dict[str, str] = {}  # Message-ID -> node
    sent_lock = threading.Lock()

    def sender(node: str, server: MailroomServer, worker: int) -> None:
        try:
            with smtplib.SMTP(HOST, server.smtp_port, timeout=30) as smtp:
                for i in range(worker, MESSAGES_PER_NODE, SENDER_THREADS):
                    msgid = f"two-nodes-{node}-{i}@client.example.net"
                    body = (
                        f"From: someone@example.net\r\nTo: {JOHN}\r\nSubject: {node} {i}\r\n"
                        f"Message-ID: <{msgid}>\r\n\r\nvia node {node}\r\n"
                    )
                    smtp.sendmail("someone@example.net", [JOHN], body.encode())
                    with sent_lock:
                        sent[msgid] = node
        except Exception as exc:  # reported by the main thread
            errors.append(f"node {node} sender {worker}: {exc!r}")

    # IMAP sessions on both nodes that sync (NOOP, UID FETCH) while mail arrives, so UIDs
    # are assigned by both nodes' IMAP processes concurrently with new files landing.
    syncing = threading.Event()
    syncing.set()
    sync_rounds = {"A": 0, "B": 0}
    seen_during_delivery: dict[str, dict[int, str]] = {"A": {}, "B": {}}

    def syncer(node: str) -> None:
        try:
            client = cluster.imap(node)
            try:
                while syncing.is_set():
                    status, _ = client.select("INBOX")
                    assert status == "OK"
                    client.noop()
                    for uid, msgid in _uid_to_message_id(client).items():
                        earlier = seen_during_delivery[node].setdefault(uid, msgid)
                        assert earlier == msgid, f"UID {uid} was {earlier}, now {msgid}"
                    sync_rounds[node] += 1
                    time.sleep(0.02)
            finally:
                client.logout()
        except Exception as exc:
            errors.append(f"node {node} IMAP syncer: {exc!r}")

    syncers = [threading.Thread(target=syncer, args=(node,), daemon=True) for node in ("A", "B")]
    senders = [
        threading.Thread(target=sender, args=(node, server, w), daemon=True)
        for node, server in cluster.nodes()
        for w in range(SENDER_THREADS)
    ]
    for t in syncers + senders:
        t.start()
    for t in senders:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in senders), "SMTP senders did not finish within 120s"
    assert not errors, errors
    assert len(sent) == total

    deadline = time.monotonic() + 60
    while len(cluster.maildir_files()) < total:
        assert time.monotonic() < deadline, (
            f"{len(cluster.maildir_files())}/{total} messages in the shared Maildir after 60s;"
            f" queue A: {cluster.a.queue_files()}, queue B: {cluster.b.queue_files()}"
        )
        time.sleep(0.05)
    time.sleep(0.3)  # let each syncer finish a round that may include the last files
    syncing.clear()
    for t in syncers:
        t.join(timeout=60)
    assert not errors, errors
    assert sync_rounds["A"] > 0 and sync_rounds["B"] > 0, sync_rounds
    assert len(cluster.maildir_files()) == total, "a message was delivered twice"

    views: dict[str, dict[int, str]] = {}
    for node in ("A", "B"):
        client = cluster.imap(node)
        try:
            status, data = client.select("INBOX")
            assert status == "OK" and int(data[0]) == total, (node, status, data)
            uids = _uids(client)
            assert len(uids) == total and len(set(uids)) == total, (node, len(uids), len(set(uids)))
            views[node] = _uid_to_message_id(client)
        finally:
            client.logout()
        assert len(views[node]) == total
        assert sorted(views[node].values()) == sorted(sent), (
            f"node {node} does not see every message"
        )
        # A UID handed out while delivery was under way still names the same message.
        for uid, msgid in seen_during_delivery[node].items():
            assert views[node].get(uid) == msgid, (node, uid, msgid, views[node].get(uid))
    assert views["A"] == views["B"], "the two nodes map UIDs to different messages"
    # Dovecot's own files agree: one record per message, no lock left behind.
    uidlist = read_uidlist(cluster.maildir())
    assert uidlist is not None
    assert sorted(r.uid for r in uidlist.records.values()) == sorted(views["A"])
    assert uidlist.next_uid > max(views["A"])
    assert not (cluster.maildir() / LOCK_NAME).exists()
    print(f"{total} messages, UIDs {min(views['A'])}..{max(views['A'])}, sync rounds {sync_rounds}")
