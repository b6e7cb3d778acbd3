"""The built-in AuthBackend: passwords checked against mailroom's directory.

Hash verification (Argon2, bcrypt, SHA-crypt) costs milliseconds of CPU by design,
so it runs in a worker thread and never stalls the event loop's other sessions.
"""

from __future__ import annotations

import asyncio

from mailroom.directory.base import Directory, DirectoryUnavailable
from mailroom.sasl.backend import AuthOutcome

MAX_USERNAME = 256  # longer names cannot be ISPmail emails (varchar(100)); refuse without a look-up
MAX_PASSWORD = 1024  # bound the work an attacker can ask the hash function to do


class DirectoryAuthBackend:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        service: str,
        remote_ip: str,
        local_ip: str = "",
        secured: bool = False,
    ) -> AuthOutcome:
        if (
            not username
            or len(username) > MAX_USERNAME
            or len(password) > MAX_PASSWORD
            or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in username)
        ):
            # Names with white space or control characters are never ISPmail emails; the
            # directory would otherwise match " john@example.org" to john after trimming.
            return AuthOutcome(False, reason="authentication failure")
        try:
            ok = await asyncio.to_thread(self.directory.verify_password, username, password)
            user = self.directory.get_user(username) if ok else None
        except DirectoryUnavailable as exc:
            return AuthOutcome(False, temporary=True, reason=str(exc))
        if not ok or user is None:
            return AuthOutcome(False, reason="authentication failure")
        # The stored address is the identity from now on (Maildir path, logs, Received).
        return AuthOutcome(True, username=user.email)
