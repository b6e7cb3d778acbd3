"""Per-destination concurrency limits (Postfix's *_destination_concurrency_limit).

A destination is a (transport, next hop) pair: ("smtp", "example.com"), or
("smtp", "[relay.example.net]:587") with a relayhost. At most `limit(transport)`
deliveries to one destination are in flight at once; 0 means no limit.

A message that finds its destination full is not delivered to it and is not
counted as a failure: its recipients there stay due, and the message waits in
line (`park`). Each released slot is granted to the first message in line
(`claimed` until that message runs again), so a full destination with a thousand
waiting messages wakes one of them per freed slot, never all of them, and a
newcomer cannot take a slot promised to a waiter. A message that runs without
using its claim hands it on in `finish`, so a slot is never left idle while
someone waits.

All methods are called from the event loop's thread; nothing here blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

Destination = tuple[str, str]  # (transport name, next hop)


class DestinationSlots:
    def __init__(
        self,
        wake: Callable[[str], None],
        limits: Mapping[str, int] | None = None,
        default_limit: int = 0,
    ) -> None:
        self.wake = wake  # make a waiting message due now
        self.limits = dict(limits or {})
        self.default_limit = default_limit
        self._busy: dict[Destination, int] = {}
        self._waiters: dict[Destination, dict[str, None]] = {}  # insertion-ordered sets
        self._claims: dict[Destination, set[str]] = {}  # woken, slot reserved
        self._claimed_by: dict[str, set[Destination]] = {}
        self._waiting_on: dict[str, set[Destination]] = {}

    def limit(self, transport: str) -> int:
        return max(0, self.limits.get(transport, self.default_limit))

    def busy(self, dest: Destination) -> int:
        """Deliveries in flight to `dest` (tests, logs)."""
        return self._busy.get(dest, 0)

    def waiting(self, dest: Destination) -> list[str]:
        """Queue IDs waiting in line for `dest`, first first."""
        return list(self._waiters.get(dest, ()))

    def acquire(self, dest: Destination, qid: str) -> bool:
        """Take a slot for one delivery of `qid` to `dest`; False: full, `qid` waits in line."""
        limit = self.limit(dest[0])
        claims = self._claims.get(dest)
        if claims is not None and qid in claims:
            self._unclaim(dest, qid)
        elif limit and self._busy.get(dest, 0) + len(claims or ()) >= limit:
            self._waiters.setdefault(dest, {})[qid] = None  # keeps its place if already there
            self._waiting_on.setdefault(qid, set()).add(dest)
            return False
        else:
            self._drop_waiter(dest, qid)
        self._busy[dest] = self._busy.get(dest, 0) + 1
        return True

    def release(self, dest: Destination) -> None:
        """One delivery to `dest` is over: its slot goes to the next in line."""
        busy = self._busy.get(dest, 0) - 1
        if busy > 0:
            self._busy[dest] = busy
        else:
            self._busy.pop(dest, None)
        self._grant(dest)

    def finish(self, qid: str, blocked: Iterable[Destination]) -> bool:
        """`qid` ran; it still waits for the destinations in `blocked`.

        Returns True when it was granted a slot for one of those meanwhile (it must
        run again now). Claims it did not use pass on to the next in line, and it
        leaves the lines of destinations it no longer waits for.
        """
        blocked = set(blocked)
        rerun = False
        for dest in list(self._claimed_by.get(qid, ())):
            if dest in blocked:
                rerun = True  # the slot stays reserved for it
            else:
                self._unclaim(dest, qid)
                self._grant(dest)
        for dest in list(self._waiting_on.get(qid, ())):
            if dest not in blocked:
                self._drop_waiter(dest, qid)
        return rerun

    def forget(self, qid: str) -> None:
        """`qid` left the queue."""
        self.finish(qid, ())

    # -- internals ----------------------------------------------------------------------
    def _grant(self, dest: Destination) -> None:
        limit = self.limit(dest[0])
        line = self._waiters.get(dest)
        while line:
            claims = self._claims.setdefault(dest, set())
            if limit and self._busy.get(dest, 0) + len(claims) >= limit:
                break
            qid = next(iter(line))
            self._drop_waiter(dest, qid)
            claims.add(qid)
            self._claimed_by.setdefault(qid, set()).add(dest)
            self.wake(qid)
        if not self._claims.get(dest):
            self._claims.pop(dest, None)

    def _unclaim(self, dest: Destination, qid: str) -> None:
        claims = self._claims.get(dest)
        if claims is not None:
            claims.discard(qid)
            if not claims:
                del self._claims[dest]
        mine = self._claimed_by.get(qid)
        if mine is not None:
            mine.discard(dest)
            if not mine:
                del self._claimed_by[qid]

    def _drop_waiter(self, dest: Destination, qid: str) -> None:
        line = self._waiters.get(dest)
        if line is not None and qid in line:
            del line[qid]
            if not line:
                del self._waiters[dest]
        mine = self._waiting_on.get(qid)
        if mine is not None:
            mine.discard(dest)
            if not mine:
                del self._waiting_on[qid]
