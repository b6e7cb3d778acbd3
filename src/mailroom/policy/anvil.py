"""Per-client connection counts and rates, like Postfix's anvil(8).

Pure bookkeeping with an injected clock: the SMTP adapter asks before it greets
(`smtpd_client_connection_count_limit`, `smtpd_client_connection_rate_limit`) and
before each AUTH (`smtpd_client_auth_rate_limit`). Loopback and `mynetworks` exemptions
are the caller's choice, as Postfix's `smtpd_client_event_limit_exceptions`.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_TRACKED_CLIENTS = 100_000  # bound on memory: forget the oldest windows beyond this


class Anvil:
    def __init__(self, rate_window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_window = rate_window
        self.clock = clock
        self.connections: dict[str, int] = defaultdict(int)
        self._events: dict[tuple[str, str], deque[float]] = {}

    def connect(self, client: str) -> int:
        """Count a new connection; returns how many the client now has open."""
        self.connections[client] += 1
        return self.connections[client]

    def disconnect(self, client: str) -> None:
        left = self.connections.get(client, 0) - 1
        if left > 0:
            self.connections[client] = left
        else:
            self.connections.pop(client, None)

    def rate(self, kind: str, client: str) -> int:
        """Record one `kind` event (connect, auth) and return the count within the window."""
        now = self.clock()
        key = (kind, client)
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= MAX_TRACKED_CLIENTS:
                self._expire(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.rate_window:
            events.popleft()
        events.append(now)
        return len(events)

    def _expire(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.rate_window]:
            del self._events[key]
        while len(self._events) >= MAX_TRACKED_CLIENTS:
            del self._events[next(iter(self._events))]
