"""Where SASL mechanisms send a username and password to be checked.

The built-in backend asks the mailroom directory; issue 6 adds a client for a Dovecot
auth socket behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    ok: bool
    username: str = ""  # canonical name on success
    temporary: bool = False  # backend unavailable: 454 4.7.0, not 535
    reason: str = ""  # for logs only; never sent to the client


class AuthBackend(Protocol):
    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        service: str,
        remote_ip: str,
        local_ip: str = "",
        secured: bool = False,
    ) -> AuthOutcome: ...
