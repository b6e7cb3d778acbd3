"""mbsync (isync) against mailroom's IMAPS listener: a two-way sync of a Maildir.

Skips with a reason when mbsync is absent (`apt-get install -y isync`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.e2e.imap_fixture import HOST, JOHN, PASSWORD, ImapFixture, imap_server  # noqa: F401

pytestmark = pytest.mark.interop
MBSYNC = shutil.which("mbsync")


@pytest.mark.skipif(MBSYNC is None, reason="mbsync not installed (apt-get install -y isync)")
def test_mbsync_pulls_and_pushes(imap: ImapFixture, tmp_path: Path) -> None:
    assert MBSYNC is not None
    imap.deliver(b"From: a@example.com\r\nSubject: via mbsync\r\n\r\nbody\r\n")
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""IMAPAccount test
Host localhost
Port {imap.tls_port}
User {JOHN}
Pass {PASSWORD}
TLSType IMAPS
CertificateFile {imap.ca_file}

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
SyncState *
""")
    result = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
    if "TLSType" in result.stderr and "not recognized" in result.stderr:  # isync < 1.5 says SSLType
        config.write_text(config.read_text().replace("TLSType", "SSLType"))
        result = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    pulled = list((local / "INBOX" / "cur").iterdir()) + list((local / "INBOX" / "new").iterdir())
    assert len(pulled) == 1 and b"via mbsync" in pulled[0].read_bytes()
    for name in ("Sent", "Drafts", "Junk", "Trash"):
        assert (local / name).is_dir()
    # Push: a message written locally into Sent reaches the server's .Sent.
    (local / "Sent" / "cur" / "1700000000.1.local:2,S").write_bytes(b"Subject: pushed\n\nhi\n")
    result = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = list((imap.maildir / ".Sent" / "cur").iterdir())
    assert len(sent) == 1 and sent[0].name.endswith(":2,S")
