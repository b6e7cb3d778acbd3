"""Postfix-like queue IDs: short, unique across processes, sortable by time, safe as file names.

An ID is 16 characters of Crockford base32 (digits and upper-case letters without
I, L, O, U, so it survives case-insensitive file systems and is easy to read aloud):
7 for the arrival second, 4 for the microsecond, 3 for the process id and 2 for a
per-process counter that starts at a random value. Two processes differ in the pid
part, two calls in one process in the counter, and the spool still refuses to
overwrite an existing ID, so a collision can only cost a retry, never a message.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import threading
import time
from collections.abc import Callable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
SECONDS_DIGITS = 7  # 35 bits: good until the year 3058
MICROS_DIGITS = 4  # 20 bits hold 0..999999
PID_DIGITS = 3  # 15 bits of the pid; the counter and time disambiguate the rest
COUNTER_DIGITS = 2  # 1024 IDs per process per microsecond
QUEUE_ID_LENGTH = SECONDS_DIGITS + MICROS_DIGITS + PID_DIGITS + COUNTER_DIGITS

_QUEUE_ID_RE = re.compile(rf"[{ALPHABET}]{{{QUEUE_ID_LENGTH}}}")


def _encode(value: int, digits: int) -> str:
    chars = []
    for _ in range(digits):
        value, rest = divmod(value, 32)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


# Two digits (10 bits) at a time: _PAIRS[v] == _encode(v, 2) for 0 <= v < 1024.
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)


class QueueIdGenerator:
    """Makes IDs; thread-safe, with clock and randomness injectable for tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        pid: int | None = None,
    ) -> None:
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        self._pid_part = _encode(self._pid, PID_DIGITS)
        start = (rng or random.SystemRandom()).randrange(32**COUNTER_DIGITS)
        self._counter = itertools.count(start)
        self._lock = threading.Lock()
        self._second: tuple[int, str] = (-1, "")  # the seconds part, made once per second

    def __call__(self) -> str:
        seconds, micros = divmod(round(self._clock() * 1_000_000), 1_000_000)
        with self._lock:
            n = next(self._counter)
        second = self._second  # one read: another thread may replace it meanwhile
        if second[0] != seconds:
            second = self._second = (seconds, _encode(seconds, SECONDS_DIGITS))
        # Same digits as _encode() of each part (MICROS_DIGITS = 4, COUNTER_DIGITS = 2).
        return (second[1] + _PAIRS[(micros >> 10) & 1023] + _PAIRS[micros & 1023]
                + self._pid_part + _PAIRS[n & 1023])


def is_queue_id(text: str) -> bool:
    """True if `text` has the shape of an ID; the spool checks this before building paths."""
    return _QUEUE_ID_RE.fullmatch(text) is not None


new_queue_id = QueueIdGenerator()
