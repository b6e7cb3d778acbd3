"""The IMAP core on the real Maildir backend, driven command by command (for store tests)."""

from __future__ import annotations

from pathlib import Path

from mailroom.imap.events import Credentials, Execute, ImapSettings
from mailroom.imap.server import ServerConnection
from mailroom.mailstore.imap_backend import MaildirBackend

USER = "john@example.org"


class Session:
    """Logged in as USER under `base` (virtual_mailbox_base); `say` runs one command line."""

    def __init__(self, base: Path) -> None:
        self.conn = ServerConnection(ImapSettings(plaintext_auth_requires_tls=False))
        self.conn.initiate()
        self.conn.receive_data(b"a LOGIN john x\r\n")
        assert isinstance(self.conn.next_event(), Credentials)
        self.backend = MaildirBackend.for_user(base, USER)
        self.conn.accept_login(self.backend)
        self.conn.data_to_send()

    def say(self, line: str) -> list[str]:
        self.conn.receive_data(line.encode() + b"\r\n")
        if isinstance(self.conn.next_event(), Execute):
            self.conn.execute()
        return self.conn.data_to_send().decode().splitlines()
