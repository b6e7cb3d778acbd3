"""getmail6 (Debian's POP3 client) against the POP3 adapter: POP3S, UIDL memory, delete.

getmail6 has no STLS for POP3 (its retrievers are plain or implicit TLS), so STLS on the
pop3 listener is tested with fetchmail in test_fetchmail.py.

Needs `apt-get install -y getmail6`; skips with a reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.e2e.pop3_fixture import HOST, JOHN, PASSWORD, Pop3Fixture, pop3_server  # noqa: F401

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 not installed (apt-get install -y getmail6)"),
]
RUN_TIMEOUT = 60


def getmail(pop3: Pop3Fixture, home: Path, *, delete: bool) -> subprocess.CompletedProcess[str]:
    dest = home / "Mail" / "new"
    dest.mkdir(parents=True, exist_ok=True)
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3SSLRetriever\n"
        f"server = {HOST}\n"
        f"port = {pop3.tls_port}\n"
        f"username = {JOHN}\n"
        f"password = {PASSWORD}\n"
        f"ca_certs = {pop3.ca_file}\n"
        "ssl_cert_hostname = localhost\n"
        # getmail's Maildir destination refuses to run as root (CI containers): an external
        # MDA that stores each message in its own file works for any user.
        "[destination]\n"
        "type = MDA_external\n"
        "path = /bin/sh\n"
        f"arguments = (\"-c\", \"cat > {dest}/$(date +%s%N).$$\")\n"
        "allow_root_commands = true\n"
        "[options]\n"
        "read_all = false\n"
        f"delete = {'true' if delete else 'false'}\n"
        "verbose = 2\n"
    )
    return subprocess.run(
        ["getmail", "--getmaildir", str(home), "--rcfile", str(rc)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
    )


def fetched(home: Path) -> list[bytes]:
    new = home / "Mail" / "new"
    return sorted((new / name).read_bytes() for name in os.listdir(new))


def test_getmail_fetches_new_messages_only_then_deletes(pop3: Pop3Fixture, tmp_path: Path) -> None:
    home = tmp_path / "getmail"
    home.mkdir()
    pop3.deliver(b"Subject: one\n\n.first\n")
    pop3.deliver(b"Subject: two\n\nsecond\n")
    result = getmail(pop3, home, delete=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 messages" in result.stdout and "retrieved" in result.stdout, result.stdout
    bodies = fetched(home)
    assert len(bodies) == 2 and any(b.endswith(b"\n.first\n") for b in bodies)  # dot-stuffing undone

    # UIDL is stable across sessions: getmail's oldmail file says both were seen already.
    pop3.deliver(b"Subject: three\n\nthird\n")
    result = getmail(pop3, home, delete=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(fetched(home)) == 3, result.stdout
    assert "1 messages" in result.stdout and "2 skipped" in result.stdout, result.stdout

    # delete = true: getmail DELEs every message it has seen; they go at its clean QUIT.
    assert os.listdir(pop3.maildir / "cur") == []
    assert os.listdir(pop3.maildir / "new") == []
