"""The guide's `openssl s_client -starttls smtp` walkthrough against a real `mailroom serve`."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time

import pytest
from tests.e2e.server import GUIDE_AUTH_PLAIN, HOST, MailroomServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

FINAL_REPLY = re.compile(rb"^\d{3} ", re.MULTILINE)


class SClient:
    """`openssl s_client` as a person would type into it: one line, wait for the reply."""

    def __init__(self, server: MailroomServer, crlf: bool) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("openssl not installed")
        cmd = [
            openssl, "s_client", "-connect", f"{HOST}:{server.smtp_port}", "-starttls", "smtp",
            "-quiet", "-CAfile", str(server.cert), "-verify_return_error", "-verify_hostname", "localhost",
        ]  # fmt: skip
        if crlf:
            cmd.append("-crlf")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.out = b""
        self.transcript: list[str] = []

    def say(self, line: str, timeout: float = 10.0) -> str:
        """Type `line` + Enter; return the server's reply (up to its final line)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.transcript.append("C: " + line)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        start = len(self.out)
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not self._complete(self.out[start:]):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.out += chunk
        reply = self.out[start:].decode(errors="replace")
        self.transcript.append("S: " + reply.rstrip())
        return reply

    @staticmethod
    def _complete(data: bytes) -> bool:
        return any(
            FINAL_REPLY.match(line)
            for line in data.splitlines(keepends=True)
            if line.endswith(b"\n")
        )

    def finish(self, timeout: float = 10.0) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            pytest.fail(f"openssl s_client did not exit after QUIT:\n{self.dump()}")
        return code, self.proc.stderr.read().decode(errors="replace")

    def dump(self) -> str:
        return "\n".join(self.transcript)


@pytest.mark.parametrize("crlf", [False, True], ids=["typed-LF", "crlf"])
def test_guide_starttls_auth_dialog(mailroom_server: MailroomServer, crlf: bool) -> None:
    """Verbatim guide: `openssl s_client -connect ...:25 -starttls smtp`, then type
    `ehlo example.com`, the AUTH PLAIN string, `QUIT`. Without -crlf, s_client sends the
    lines as typed: LF-terminated."""
    c = SClient(mailroom_server, crlf)
    ehlo = c.say("ehlo example.com")
    assert "250-AUTH PLAIN LOGIN" in ehlo, c.dump()
    assert "STARTTLS" not in ehlo, c.dump()
    auth = c.say(f"AUTH PLAIN {GUIDE_AUTH_PLAIN}")
    assert "235 2.7.0 Authentication successful" in auth, c.dump()
    bye = c.say("QUIT")
    assert "221 2.0.0 Bye" in bye, c.dump()
    code, err = c.finish()
    assert "verify error" not in err, err
