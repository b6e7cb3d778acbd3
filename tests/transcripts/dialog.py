"""The .dialog format and the driver shared by the SMTP, POP3 and IMAP transcript tests.

A dialog is one session against a sans-IO core (format: README.md). `play()` runs it
three times, feeding the client's bytes whole, line by line and byte by byte, like an
adapter that reads whatever the socket gives: all three must send the bytes of the `S:`
lines and give the same events. That is the pipelining and framing guarantee the
adapters rely on.

What is left to each protocol is a `Session` subclass: how to build the core from the
dialog (its `@` settings and its own line prefixes, such as `B:`), how the fake adapter
answers the events that wait for one (`A:` lines, a store), and any extra check.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Mismatch(AssertionError):
    """The core did not do what the dialog says; the message says where (`file.dialog:N`)."""


COMMON_TAGS = frozenset({"@ ", "C:", "R:", "S:", "A:", "E:", "T:"})


class Core(Protocol):
    """The part of a sans-IO server core the driver uses (SMTP, POP3 and IMAP share it)."""

    def initiate(self) -> bytes: ...
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> object: ...
    def data_to_send(self) -> bytes: ...
    def tls_started(self) -> None: ...


class CoreEvent(Protocol):
    needs_reply: ClassVar[bool]


ConnT = TypeVar("ConnT", bound=Core)
EventT = TypeVar("EventT", bound=CoreEvent)
SettingsT = TypeVar("SettingsT", bound="DataclassInstance")


def unescape(text: str) -> bytes:
    """Python escapes (`\\r`, `\\n`, `\\x00`) to bytes, as in `R:`, `M:` and `B:` lines."""
    return codecs.escape_decode(text.encode("utf-8"))[0]


@dataclass(frozen=True)
class Line:
    """One line of a dialog file, without its prefix; `where` is `file.dialog:N`."""

    path: Path
    number: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.number}"


@dataclass
class Dialog:
    path: Path
    options: list[Line] = field(default_factory=list)  # `@ name=value`
    segments: list[bytes] = field(default_factory=lambda: [b""])  # client input, split at T:
    expected: list[Line] = field(default_factory=list)  # S:
    answers: list[Line] = field(default_factory=list)  # A:
    events: list[Line] = field(default_factory=list)  # E:
    tagged: dict[str, list[Line]] = field(default_factory=dict)  # the protocol's own prefixes

    @property
    def name(self) -> str:
        return self.path.name

    def lines(self, tag: str) -> list[Line]:
        """The lines with one of the protocol's own prefixes (e.g. "B:"), in order."""
        return self.tagged.get(tag, [])

    def settings(self, cls: type[SettingsT]) -> SettingsT:
        """The settings dataclass with the `@` lines' values: yes/no, integers or text."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for line in self.options:
            name, _, value = line.text.partition("=")
            name = name.strip()
            if name not in kinds:
                raise ValueError(f"{line.where}: {cls.__name__} has no field {name!r}")
            kind = kinds[name]
            if kind in ("bool", bool):
                if value not in ("yes", "no"):
                    raise ValueError(f"{line.where}: {name} takes yes or no, not {value!r}")
                values[name] = value == "yes"
            else:
                values[name] = int(value) if kind in ("int", int) else value
        return cls(**values)


def load(path: Path, tags: frozenset[str] = frozenset()) -> Dialog:
    """Parse a dialog; `tags` are the prefixes the protocol adds to the common ones."""
    dialog = Dialog(path)
    for number, raw in enumerate(path.read_text("utf-8").split("\n"), start=1):
        if not raw or raw.startswith("#"):
            continue
        tag = raw[:2]
        line = Line(path, number, raw[2:] if tag == "@ " else raw[2:].removeprefix(" "))
        if tag == "@ ":
            dialog.options.append(line)
        elif tag == "C:":
            dialog.segments[-1] += line.text.encode("utf-8") + b"\r\n"
        elif tag == "R:":
            dialog.segments[-1] += unescape(line.text)
        elif tag == "S:":
            dialog.expected.append(line)
        elif tag == "A:":
            dialog.answers.append(line)
        elif tag == "E:":
            dialog.events.append(line)
        elif tag == "T:":
            dialog.segments.append(b"")
        elif tag in tags:
            dialog.tagged.setdefault(tag, []).append(line)
        else:
            known = ", ".join(sorted(COMMON_TAGS | tags))
            raise ValueError(f"{path.name}:{number}: bad line {raw!r} (prefixes: {known}, #)")
    return dialog


class Answers:
    """The dialog's A: lines, handed out in order to the events that wait for one."""

    def __init__(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self._left = deque(dialog.answers)
        self.current: Line | None = None

    def take(self, event: object) -> str:
        if not self._left:
            where = self.current.where if self.current else self.dialog.name
            raise Mismatch(f"{where}: {event!r} waits for an answer, but no A: line is left")
        self.current = self._left.popleft()
        return self.current.text

    def wrong(self, event: object) -> NoReturn:
        """The A: line just taken cannot answer this event."""
        where = self.current.where if self.current else self.dialog.name
        text = self.current.text if self.current else ""
        raise Mismatch(f"{where}: A: {text!r} cannot answer {event!r}")

    def check_all_used(self) -> None:
        if self._left:
            first = self._left[0]
            raise Mismatch(f"{first.where}: A: {first.text!r} was never asked for")


@dataclass
class Outcome(Generic[EventT]):
    output: bytes
    events: list[EventT]


class Session(ABC, Generic[ConnT, EventT]):
    """One run of a dialog: the protocol's core and the fake adapter around it.

    A subclass sets `tags`, `event_type`, `closed_type` and `need_data`, builds
    `self.conn` in `__init__(dialog)` and answers the events that need a reply.
    """

    tags: ClassVar[frozenset[str]] = frozenset()  # the protocol's own line prefixes
    event_type: type[EventT]  # the core's Event base class
    closed_type: type[EventT]  # ConnectionClosed: the last event
    need_data: object  # the core's NEED_DATA
    conn: ConnT

    def __init__(self, dialog: Dialog) -> None:
        self.dialog = dialog

    @abstractmethod
    def answer(self, event: EventT, answers: Answers) -> None:
        """Answer an event with `needs_reply`, usually from `answers.take(event)`."""

    def check(self, outcome: Outcome[EventT]) -> None:
        """Protocol checks of a run's outcome beyond S: and E: lines (none by default)."""


@dataclass(frozen=True)
class Feeding:
    name: str
    chunks: Callable[[bytes], Iterator[bytes]]


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def per_line(data: bytes) -> Iterator[bytes]:
    yield from data.splitlines(keepends=True)


def per_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


FEEDINGS = (Feeding("whole", whole), Feeding("per line", per_line), Feeding("per byte", per_byte))


def run(session: Session[Any, EventT], feeding: Feeding) -> Outcome[EventT]:
    """Drive the core like the asyncio adapter would, with the session as the fake adapter."""
    conn = session.conn
    out = bytearray(conn.initiate())
    answers = Answers(session.dialog)
    events: list[EventT] = []

    def pump() -> None:
        while not (events and isinstance(events[-1], session.closed_type)):
            event = conn.next_event()
            if event is session.need_data:
                return
            assert isinstance(event, session.event_type), f"next_event() returned {event!r}"
            events.append(event)
            if event.needs_reply:
                session.answer(event, answers)
            out.extend(conn.data_to_send())

    for i, segment in enumerate(session.dialog.segments):
        if i:
            conn.tls_started()
        for chunk in feeding.chunks(segment):
            conn.receive_data(chunk)
            pump()
    conn.receive_data(b"")
    pump()
    out.extend(conn.data_to_send())
    answers.check_all_used()
    return Outcome(bytes(out), events)


def play(path: Path, session_type: type[Session[Any, Any]]) -> None:
    """The test of one dialog: fed each way, the core must send the S: lines, give the
    E: lines' events and those of the whole feeding, and pass the session's own check."""
    dialog = load(path, session_type.tags)
    first: Outcome[Any] | None = None
    failure = ""
    for feeding in FEEDINGS:
        try:
            session = session_type(dialog)
            outcome = run(session, feeding)
            check_output(dialog, outcome.output)
            check_events(dialog, outcome.events)
            if first is not None:
                check_same_events(first.events, outcome.events)
            session.check(outcome)
        except Mismatch as exc:
            failure = f"fed {feeding.name}: {exc}"
            break
        except Exception as exc:
            exc.add_note(f"(playing {dialog.name}, fed {feeding.name})")
            raise
        if first is None:
            first = outcome
    if failure:  # the message says where: no traceback through the driver
        pytest.fail(failure, pytrace=False)


def _split(data: bytes) -> list[bytes]:
    """Lines with their line ends (LF, as the server may end one badly), and any tail."""
    parts = data.split(b"\n")
    return [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _show(line: bytes) -> str:
    text = line.decode("utf-8", "backslashreplace")
    return repr(text.removesuffix("\r\n"))


def check_output(dialog: Dialog, output: bytes) -> None:
    """The server's bytes are the S: lines, each + CRLF; else say where they part."""
    expected = [line.text.encode("utf-8") + b"\r\n" for line in dialog.expected]
    got = _split(output)
    if got == expected:
        return
    i = 0
    while i < min(len(got), len(expected)) and got[i] == expected[i]:
        i += 1
    if i >= len(got):
        line = dialog.expected[i]
        headline = (
            f"{line.where}: the server sent nothing more, the dialog expects {_show(expected[i])}"
        )
    elif i >= len(expected):
        where = dialog.expected[-1].where if expected else dialog.name
        headline = f"{where}: after the last S: line the server also sent {_show(got[i])}"
    else:
        line = dialog.expected[i]
        headline = f"{line.where}: expected {_show(expected[i])}\n    got {_show(got[i])}"
    diff = difflib.unified_diff(
        [_show(e) for e in expected],
        [_show(g) for g in got],
        "S: lines",
        "server",
        n=2,
        lineterm="",
    )
    raise Mismatch(headline + "\n" + "\n".join(list(diff)[:40]))


def check_events(dialog: Dialog, events: list[Any]) -> None:
    """If the dialog has E: lines, they list every event: `E: Name [text in its repr]`."""
    if not dialog.events:
        return
    for i, event in enumerate(events):
        if i >= len(dialog.events):
            where = dialog.events[-1].where
            raise Mismatch(f"{where}: after the last E: line the core also gave {event!r}")
        line = dialog.events[i]
        name, _, text = line.text.partition(" ")
        if type(event).__name__ != name or text not in repr(event):
            raise Mismatch(f"{line.where}: expected event {line.text!r}\n    got {event!r}")
    if len(events) < len(dialog.events):
        line = dialog.events[len(events)]
        raise Mismatch(f"{line.where}: expected event {line.text!r}, the core gave no more")


def check_same_events(first: list[Any], events: list[Any]) -> None:
    """The events are those of the whole feeding (by repr)."""
    shown, first_shown = [repr(e) for e in events], [repr(e) for e in first]
    if shown == first_shown:
        return
    diff = difflib.unified_diff(first_shown, shown, "fed whole", "this feeding", n=2, lineterm="")
    raise Mismatch("the events differ from those fed whole:\n" + "\n".join(list(diff)[:40]))


def find(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dialog"))
