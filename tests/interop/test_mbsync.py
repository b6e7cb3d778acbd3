"""mbsync (isync) against mailroom's IMAPS listener: a two-way sync of a Maildir.

Skips with a reason when mbsync is absent (`apt-get install -y isync`).
"""

from __future__ import annotations

import imaplib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.e2e.imap_fixture import HOST, JOHN, PASSWORD, ImapFixture, imap_server  # noqa: F401

from mailroom.mailstore.store import MaildirStore

pytestmark = pytest.mark.interop
MBSYNC = shutil.which("mbsync")
SYNC_TIMEOUT = 60  # seconds for one mbsync run
N_INBOX, N_LISTS = 800, 200  # 1,000 messages: INBOX and a subfolder


def _configure(imap: ImapFixture, tmp_path: Path) -> tuple[Path, Path]:
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
    return local, config


def _sync(config: Path) -> None:
    assert MBSYNC is not None
    result = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True,
                            timeout=SYNC_TIMEOUT)
    if "TLSType" in result.stderr and "not recognized" in result.stderr:  # isync < 1.5 says SSLType
        config.write_text(config.read_text().replace("TLSType", "SSLType"))
        result = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True,
                                timeout=SYNC_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


def _local(folder: Path) -> dict[str, tuple[Path, str]]:
    """Subject -> (file, Maildir flags) of a local folder."""
    out: dict[str, tuple[Path, str]] = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            match = re.search(rb"^Subject: (.*?)\r?$", path.read_bytes(), re.MULTILINE)
            assert match is not None, path
            out[match.group(1).decode()] = (path, path.name.partition(":2,")[2])
    return out


def _server_flags(client: imaplib.IMAP4, folder: str) -> dict[str, set[str]]:
    """Subject -> IMAP flags of a server folder."""
    typ, _ = client.select(folder, readonly=True)
    assert typ == "OK"
    typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    out: dict[str, set[str]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
        assert flags is not None, item
        subject = item[1].decode().strip().removeprefix("Subject: ")
        out[subject] = set(flags.group(1).decode().split())
    return out


@pytest.mark.skipif(MBSYNC is None, reason="mbsync not installed (apt-get install -y isync)")
def test_mbsync_pulls_and_pushes(imap: ImapFixture, tmp_path: Path) -> None:
    imap.deliver(b"From: a@example.com\r\nSubject: via mbsync\r\n\r\nbody\r\n")
    local, config = _configure(imap, tmp_path)
    _sync(config)
    pulled = list((local / "INBOX" / "cur").iterdir()) + list((local / "INBOX" / "new").iterdir())
    assert len(pulled) == 1 and b"via mbsync" in pulled[0].read_bytes()
    for name in ("Sent", "Drafts", "Junk", "Trash"):
        assert (local / name).is_dir()
    # Push: a message written locally into Sent reaches the server's .Sent.
    (local / "Sent" / "cur" / "1700000000.1.local:2,S").write_bytes(b"Subject: pushed\n\nhi\n")
    _sync(config)
    sent = list((imap.maildir / ".Sent" / "cur").iterdir())
    assert len(sent) == 1 and sent[0].name.endswith(":2,S")


@pytest.mark.skipif(MBSYNC is None, reason="mbsync not installed (apt-get install -y isync)")
def test_mbsync_two_way_sync_of_a_thousand_messages(imap: ImapFixture, tmp_path: Path) -> None:
    store = MaildirStore.for_user(imap.service.mailbox_base, JOHN, hostname="mx")
    inbox, lists = store.folder(), store.folder("Lists", create=True)
    for i in range(N_INBOX):
        flags = {"\\Seen"} if i % 3 == 0 else set()
        flags |= {"\\Flagged"} if i % 10 == 0 else set()
        body = b"line\n" * (i % 50)
        inbox.append(f"From: a@example.com\nSubject: inbox {i}\n\n".encode() + body, flags=flags)
    for i in range(N_LISTS):
        lists.append(f"From: list@example.com\nSubject: list {i}\n\nhello\n".encode(),
                     flags={"\\Seen"} if i % 2 else set())
    local, config = _configure(imap, tmp_path)

    started = time.monotonic()
    _sync(config)  # server -> local
    pulled = time.monotonic() - started
    near_inbox, near_lists = _local(local / "INBOX"), _local(local / "Lists")
    assert len(near_inbox) == N_INBOX and len(near_lists) == N_LISTS
    assert near_inbox["inbox 30"][1] == "FS" and near_inbox["inbox 3"][1] == "S"
    assert near_inbox["inbox 10"][1] == "F" and near_inbox["inbox 1"][1] == ""
    assert near_lists["list 1"][1] == "S" and near_lists["list 0"][1] == ""

    # Local changes: read 1, 2, 4, 5; unflag 10, 20; flag list 0; a new message in Lists.
    def set_flags(entry: tuple[Path, str], flags: str) -> None:
        path = entry[0]
        base = path.name.partition(":2,")[0]
        path.rename(path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}")

    for i in (1, 2, 4, 5):
        set_flags(near_inbox[f"inbox {i}"], near_inbox[f"inbox {i}"][1] + "S")
    for i in (10, 20):
        set_flags(near_inbox[f"inbox {i}"], near_inbox[f"inbox {i}"][1].replace("F", ""))
    set_flags(near_lists["list 0"], "F")
    (local / "Lists" / "new" / "1700000000.42.local").write_bytes(b"Subject: written locally\n\nhi\n")
    started = time.monotonic()
    _sync(config)  # local -> server
    pushed = time.monotonic() - started

    client = imaplib.IMAP4_SSL(HOST, imap.tls_port, ssl_context=imap.client_context, timeout=30)
    client.login(JOHN, PASSWORD)
    far_inbox, far_lists = _server_flags(client, "INBOX"), _server_flags(client, "Lists")
    client.logout()
    assert len(far_inbox) == N_INBOX and len(far_lists) == N_LISTS + 1
    assert all("\\Seen" in far_inbox[f"inbox {i}"] for i in (1, 2, 4, 5))
    assert all("\\Flagged" not in far_inbox[f"inbox {i}"] for i in (10, 20))
    assert far_inbox["inbox 30"] == {"\\Seen", "\\Flagged"} and far_inbox["inbox 7"] == set()
    assert far_lists["list 0"] == {"\\Flagged"} and far_lists["list 1"] == {"\\Seen"}
    assert "written locally" in far_lists
    assert pulled + pushed < 80, f"mbsync took {pulled:.1f} s to pull, {pushed:.1f} s to push"
