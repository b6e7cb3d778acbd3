"""Record the Dovecot auth protocol as the real programs speak it, into *.capture fixtures.

Run as root on Debian with postfix and dovecot-core installed:

    .venv/bin/python -m tests.transcripts.dovecot_auth.capture

1. postfix_*.capture: a private Postfix (the guide's smtpd_sasl_* settings) talks to a
   private Dovecot auth (passwd-file) through a recording proxy at private/auth, while
   smtplib drives SMTP sessions. Both programs are real; nothing is typed from memory.
2. dovecot_*.capture: lines sent straight to Dovecot's auth socket (the odd and hostile
   inputs Postfix never sends) and what Dovecot answered.

File format: `C:` client line, `S:` server line, each with Python escapes (`\\t`),
without the trailing LF; `#` comments; `# smtp:` comments carry the SMTP replies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import smtplib
import socket
import ssl
import sys
import time
from pathlib import Path

from tests.transcripts.dovecot_auth.peers import (
    PrivateDovecot,
    PrivatePostfix,
    RecordingProxy,
    peer_base,
)

HERE = Path(__file__).parent
USERS = {"john@example.org": "summersun", "lisa@example.org": "springrain"}
GUIDE_AUTH_PLAIN = "am9obkBleGFtcGxlLm9yZwBqb2huQGV4YW1wbGUub3JnAHN1bW1lcnN1bg=="
WRONG_PLAIN = base64.b64encode(b"\0john@example.org\0wrong").decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def escape(line: bytes) -> str:
    text = line.removesuffix(b"\n").decode("latin-1")
    return text.encode("unicode_escape").decode("ascii")


def write_capture(
    name: str, header: list[str], lines: list[tuple[str, bytes]], notes: list[str]
) -> None:
    out = [f"# {h}" for h in header]
    out += [f"{tag}: {escape(line)}" for tag, line in lines]
    out += [f"# smtp: {n}" for n in notes]
    (HERE / f"{name}.capture").write_text("\n".join(out) + "\n")
    print(f"wrote {name}.capture ({len(lines)} lines)")


def smtp_session(port: int, steps: list[str]) -> list[str]:
    """STARTTLS, EHLO, then each raw command; returns every reply as `code text`."""
    notes: list[str] = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.net")
        s.starttls(context=ctx)
        s.ehlo("client.example.net")
        notes.append("EHLO: " + " ".join(sorted(s.esmtp_features)))
        for step in steps:
            if step == "DATA":
                code, text = s.data(b"Subject: capture\r\n\r\nhello\r\n")
            else:
                s.putcmd(step)
                code, text = s.getreply()
            notes.append(f"{step} -> {code} {text.decode()}")
        s.quit()
    return notes


POSTFIX_SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "postfix_plain_ok_relay": (
        "AUTH PLAIN with the guide's string, then relay to lisa@example.com",
        [
            f"AUTH PLAIN {GUIDE_AUTH_PLAIN}",
            "MAIL FROM:<john@example.org>",
            "RCPT TO:<lisa@example.com>",
            "DATA",
        ],
    ),
    "postfix_plain_wrong_password": (
        "AUTH PLAIN with a wrong password, then an unauthenticated relay attempt",
        [f"AUTH PLAIN {WRONG_PLAIN}", "MAIL FROM:<john@example.org>", "RCPT TO:<lisa@example.com>"],
    ),
    "postfix_login_ok": (
        "AUTH LOGIN: username and password in CONT round trips",
        ["AUTH LOGIN", b64("john@example.org"), b64("summersun")],
    ),
    "postfix_login_wrong_password": (
        "AUTH LOGIN with a wrong password",
        ["AUTH LOGIN", b64("john@example.org"), b64("wrong")],
    ),
    "postfix_plain_no_initial_response": (
        "AUTH PLAIN without an initial response: an empty CONT first",
        ["AUTH PLAIN", GUIDE_AUTH_PLAIN],
    ),
    "postfix_unknown_user_then_retry": (
        "an unknown user fails, a second AUTH on the same session succeeds",
        [
            f"AUTH PLAIN {base64.b64encode(b'nobody@example.org' + bytes(1) + b'nobody@example.org' + bytes(1) + b'x').decode()}",
            f"AUTH PLAIN {GUIDE_AUTH_PLAIN}",
        ],
    ),
    "postfix_login_cancel": (
        "AUTH LOGIN cancelled with '*' after the username",
        ["AUTH LOGIN", b64("john@example.org"), "*"],
    ),
}


async def capture_postfix(base: Path) -> None:
    dovecot = PrivateDovecot(base / "dovecot", USERS)
    # max_use = 1: one smtpd process, hence one auth connection, per SMTP session.
    postfix = PrivatePostfix(base / "postfix", {"max_use": "1"})
    dovecot.start()
    proxy = RecordingProxy(postfix.private / "auth", dovecot.socket, owner="postfix")
    await proxy.start()
    postfix.start()
    try:
        version = "Postfix 3.7 smtpd <-> Dovecot 2.3 auth, via a recording proxy (capture.py)"
        for name, (what, steps) in POSTFIX_SCENARIOS.items():
            before = len(proxy.sessions)
            notes = await asyncio.to_thread(smtp_session, postfix.port, steps)
            deadline = time.monotonic() + 5
            while len(proxy.sessions) == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            lines = [line for session in proxy.sessions[before:] for line in session]
            write_capture(name, [version, what], lines, notes)
    finally:
        postfix.stop()
        await proxy.stop()
        dovecot.stop()
    print((postfix.maillog).read_text()[-3000:])


PID = os.getpid()
HANDSHAKE = ["VERSION\t1\t0", f"CPID\t{PID}"]  # what Postfix 3.7 sends
OTHER_IDENTITY = base64.b64encode(b"other@example.org\0john@example.org\0summersun").decode()

# Each scenario: the client lines; a line ending in a request waits for Dovecot's answer.
# Failing requests use distinct rip= values so Dovecot's per-IP auth penalty stays out.
DOVECOT_SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "dovecot_handshake_and_requests": (
        "Postfix's handshake, then several requests on one connection (ids, OK, FAIL, CONT)",
        [
            *HANDSHAKE,
            f"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\tresp={GUIDE_AUTH_PLAIN}",
            f"AUTH\t2\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.2\tsecured\tresp={WRONG_PLAIN}",
            "AUTH\t3\tLOGIN\tservice=imap\tlip=127.0.0.1\trip=127.0.0.1\tsecured",
            f"CONT\t3\t{b64('john@example.org')}",
            f"CONT\t3\t{b64('summersun')}",
            "AUTH\t4\tPLAIN\tservice=pop3\tlip=127.0.0.1\trip=127.0.0.3\tsecured\tresp=",
            f"AUTH\t5\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.4\tresp={OTHER_IDENTITY}",
            "AUTH\t6\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.5\tresp=!!notbase64!!",
            "AUTH\t7\tLOGIN\tservice=smtp\tnologin\trip=127.0.0.6",
            "CONT\t7\t*",
            "CONT\t99\tAAAA",
            "AUTH\t8\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.1",
            f"CONT\t8\t{GUIDE_AUTH_PLAIN}",
        ],
    ),
    "dovecot_unsupported_mechanism": (
        "a mechanism the server did not announce",
        [*HANDSHAKE, "AUTH\t5\tCRAM-MD5\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1"],
    ),
    "dovecot_missing_service": (
        "AUTH without service=",
        [*HANDSHAKE, f"AUTH\t1\tPLAIN\tresp={GUIDE_AUTH_PLAIN}"],
    ),
    "dovecot_unknown_command": (
        "an unknown command after the handshake",
        [*HANDSHAKE, "HELLO\tworld"],
    ),
    "dovecot_auth_before_cpid": (
        "AUTH without the CPID line first",
        ["VERSION\t1\t0", f"AUTH\t1\tPLAIN\tservice=smtp\tresp={GUIDE_AUTH_PLAIN}"],
    ),
    "dovecot_wrong_major_version": (
        "a client speaking major version 2",
        ["VERSION\t2\t0", f"CPID\t{PID}"],
    ),
    "dovecot_duplicate_id": (
        "two requests with the same id in flight (LOGIN waiting for CONT)",
        [*HANDSHAKE, "AUTH\t1\tLOGIN\tservice=smtp", "AUTH\t1\tLOGIN\tservice=smtp"],
    ),
    "dovecot_bad_id": (
        "a request id that is not a number",
        [*HANDSHAKE, f"AUTH\tx1\tPLAIN\tservice=smtp\tresp={GUIDE_AUTH_PLAIN}"],
    ),
    "dovecot_escaped_fields": (
        "tab-escaped values (\\001 escapes) in a request",
        [
            *HANDSHAKE,
            f"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tsession=a\001tb\001nc\tresp={GUIDE_AUTH_PLAIN}",
        ],
    ),
}

REPLY_TIMEOUT = 20.0  # Dovecot delays failures (auth_failure_delay, per-IP penalty)


def talk_to_dovecot(path: Path, lines: list[str]) -> list[tuple[str, bytes]]:
    """Send the lines one by one; after AUTH/CONT wait for the answer (or until it closes)."""
    record: list[tuple[str, bytes]] = []
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        buffer = b""

        def read(until_reply: bool) -> bool:
            """Collect lines; True while the connection is open."""
            nonlocal buffer
            deadline = time.monotonic() + (REPLY_TIMEOUT if until_reply else 0.5)
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    return True
                if not chunk:
                    return False
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    record.append(("S", line + b"\n"))
                    if until_reply and line.split(b"\t", 1)[0] in (b"OK", b"FAIL", b"CONT"):
                        deadline = time.monotonic() + 0.3  # anything else right behind it
            return True

        open_ = read(False)
        for line in lines:
            if not open_:
                break
            with contextlib.suppress(OSError):
                s.sendall(line.encode("latin-1") + b"\n")
            record.append(("C", line.encode("latin-1") + b"\n"))
            open_ = read(line.startswith(("AUTH", "CONT")))
        if not open_:
            record.append(("S", b"<closed>\n"))
    return record


def capture_dovecot(base: Path) -> None:
    dovecot = PrivateDovecot(base / "dovecot-direct", USERS)
    dovecot.start()
    try:
        for name, (what, lines) in DOVECOT_SCENARIOS.items():
            write_capture(
                name,
                ["Dovecot 2.3 auth, lines sent by capture.py", what],
                talk_to_dovecot(dovecot.socket, lines),
                [],
            )
        print(dovecot.log.read_text()[-3000:])
    finally:
        dovecot.stop()
    # A passdb Dovecot cannot read: its answer to a backend failure (temporary).
    broken = PrivateDovecot(base / "dovecot-broken", USERS)
    (broken.base / "users").chmod(0)
    broken.start()
    try:
        lines = [
            *HANDSHAKE,
            f"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\tresp={GUIDE_AUTH_PLAIN}",
        ]
        write_capture(
            "dovecot_internal_failure",
            [
                "Dovecot 2.3 auth, lines sent by capture.py",
                "the passdb is unreadable (a temporary failure)",
            ],
            talk_to_dovecot(broken.socket, lines),
            [],
        )
    finally:
        broken.stop()


def main() -> int:
    with peer_base("dovecot-capture-") as base:
        capture_dovecot(base)
        if "--dovecot-only" not in sys.argv:
            asyncio.run(capture_postfix(base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
