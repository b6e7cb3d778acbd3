"""kill -9 under load: every message answered 250 is delivered exactly once after a restart.

interface.md: "A message answered `250` is on disk (fsynced); a crash after that loses nothing."
"""

from __future__ import annotations

import collections
import contextlib
import email
import smtplib
import threading
import time
import uuid
from collections.abc import Callable

from tests.e2e.server import HOST, JOHN, MailroomServer

THREADS = 10
PER_THREAD = 30
KILL_AFTER_ACKS = 80  # kill once this many 250s are in (of at most THREADS * PER_THREAD)
LOAD_TIMEOUT = 30.0
REDELIVERY_TIMEOUT = 30.0


def subjects_in_maildir(server: MailroomServer) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for path in server.maildir_files(JOHN):
        with open(path, "rb") as handle:
            head = handle.read(4096).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        msg = email.message_from_bytes(head + b"\r\n\r\n")
        seen[str(msg["Subject"])] += 1
    return seen


def test_kill9_under_load_loses_and_duplicates_nothing(
    mailroom_server_factory: Callable[..., MailroomServer],
) -> None:
    server = mailroom_server_factory()
    run = uuid.uuid4().hex[:8]
    acked: set[str] = set()
    attempted: set[str] = set()
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        try:
            s = smtplib.SMTP(HOST, server.smtp_port, timeout=10)
            s.ehlo("load.example.net")
        except OSError as exc:
            with lock:
                errors.append(f"thread {n}: connect: {exc!r}")
            return
        try:
            for i in range(PER_THREAD):
                if stop.is_set():
                    return
                subject = f"crash-{run}-{n}-{i}"
                body = (
                    f"From: <load{n}@example.net>\r\nTo: <{JOHN}>\r\nSubject: {subject}\r\n"
                    f"Message-ID: <{subject}.{uuid.uuid4().hex}@example.net>\r\n\r\n"
                    + "load test\r\n"
                    * 20
                )
                with lock:
                    attempted.add(subject)
                s.sendmail(f"load{n}@example.net", [JOHN], body)  # raises unless 250
                with lock:
                    acked.add(subject)
        except (OSError, smtplib.SMTPException):
            return  # the server died under us: expected after the kill
        finally:
            with contextlib.suppress(OSError):
                s.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + LOAD_TIMEOUT
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= KILL_AFTER_ACKS:
                break
        if not any(t.is_alive() for t in threads):
            break
        time.sleep(0.005)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "client threads hung after the kill"
    assert not errors, errors
    with lock:
        acked_now, attempted_now = set(acked), set(attempted)
    assert acked_now, f"no message was accepted before the kill:\n{server.stderr()[-3000:]}"

    server.start()  # same config dir, same ports: recovery, then the queue manager delivers
    deadline = time.monotonic() + REDELIVERY_TIMEOUT
    while True:
        seen = subjects_in_maildir(server)
        missing = acked_now - set(seen)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    server.settle(0.5)  # let a would-be duplicate show up
    seen = subjects_in_maildir(server)
    missing = sorted(acked_now - set(seen))
    dupes = {s: c for s, c in seen.items() if c > 1}
    strangers = sorted(set(seen) - attempted_now)
    report = (
        f"acked={len(acked_now)} attempted={len(attempted_now)} delivered={len(seen)}"
        f" queue={len(server.queue_files())}\nlog tail:\n{server.log()[-3000:]}"
    )
    assert not missing, f"lost {len(missing)} acknowledged messages, e.g. {missing[:5]}; {report}"
    assert not dupes, f"duplicated deliveries: {dupes}; {report}"
    assert not strangers, f"messages nobody sent: {strangers[:5]}; {report}"
