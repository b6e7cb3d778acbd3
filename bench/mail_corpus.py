"""A deterministic, realistic Maildir for the mailbox benchmark (IMAP and POP3).

Why not N copies of one message: the servers' costs depend on what is in the mail —
ENVELOPE must parse and quote display names (RFC 2047 encoded words, quotes,
backslashes), To/Cc lists and In-Reply-To; BODY[] and RETR depend on sizes; POP3 must
dot-stuff lines that start with '.'. So each message gets its own headers and a size
of about 1-8 kB, some are multipart/alternative, some carry a small base64
attachment. Line ends are LF, as an MDA writes them, and file names are the ones
Dovecot writes (``<secs>.M<usecs>P<pid>.<host>,S=<size>,W=<crlf size>:2,<flags>``),
so both servers can take sizes from the name without opening the file. Most files are
in cur/ with a mix of flags; the newest few are still in new/. Each file's mtime is
its delivery time (Dovecot's INTERNALDATE for Maildir). The same seed gives the same
bytes on every run.
"""

from __future__ import annotations

import base64
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

HOST = "bench"  # the host part of the file names, as Dovecot would write `hostname`
START = 1_700_000_000  # first delivery (2023-11-14), then 5-15 minutes apart

FIRST = ["John", "Lisa", "Ana", "Bob", "Chen", "Priya", "Olga", "Kwame", "Marta", "Tom",
         "Fatima", "Igor", "Sofia", "Lars", "Noah", "Emma", "Yuki", "Omar", "Julia", "Pavel"]
LAST = ["Smith", "Meier", "Garcia", "Nakamura", "Okafor", "Kowalski", "Rossi", "Dubois",
        "Andersen", "Novak", "Silva", "Cohen", "Ivanova", "Brown", "Tanaka", "Haddad"]
# Display names that need RFC 2047 encoded words (ISO-8859-1 Q or UTF-8 B).
NON_ASCII = ["Jürgen Müller", "Zoë Brontë", "Søren Kierkegaard", "François Lefèvre",
             "Łukasz Żółć", "Ελένη Παπαδοπούλου", "山田 太郎", "José Núñez", "Ærøskøbing Kro"]
DOMAINS = ["example.com", "example.net", "mail.example.org", "lists.example.com",
           "corp.example", "uni.example.edu"]
WORDS = (
    "meeting", "report", "budget", "quarterly", "draft", "review", "invoice", "travel",
    "plan", "update", "server", "release", "notes", "minutes", "agenda", "schedule",
    "question", "proposal", "contract", "offer", "team", "lunch", "deadline", "project",
    "migration", "backup", "outage", "ticket", "design", "feedback", "slides", "photos"
)
SUBJECT_ODD = ['Re: "quoted" words', "Path C:\\temp\\logs", "100% done (really)",
               "[list] weekly digest #42", "Fwd: {braces} & <angles>", "Café menu 🍕"]
LOREM = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed",
    "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna",
    "aliqua", "ut", "enim", "ad", "minim", "veniam", "quis", "nostrud", "exercitation",
    "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo", "consequat"
)


@dataclass(frozen=True)
class Corpus:
    """What was written: counts and sizes, to check the servers' answers against."""

    path: Path  # the Maildir
    messages: int
    in_new: int
    bytes_lf: int  # sum of S= (file sizes)
    bytes_crlf: int  # sum of W= (RFC822.SIZE / POP3 sizes)
    seen: int
    flagged: int
    answered: int


def _address(rng: random.Random, personal: bool = True) -> str:
    """``Name <local@domain>``, sometimes bare, sometimes an encoded or quoted name."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    addr = f"{first.lower()}.{last.lower()}{rng.randrange(100)}@{rng.choice(DOMAINS)}"
    r = rng.random()
    if not personal or r < 0.15:
        return addr
    if r < 0.35:
        name = rng.choice(NON_ASCII)
        charset = "iso-8859-1" if all(ord(c) < 256 for c in name) else "utf-8"
        return f"{Header(name, charset).encode()} <{addr}>"
    if r < 0.45:
        return f'"{last}, {first}" <{addr}>'  # a comma: the name must be quoted
    return f"{first} {last} <{addr}>"


def _subject(rng: random.Random) -> str:
    """Mostly plain words, with Re:/Fwd:, encoded words and IMAP-quoting troublemakers."""
    r = rng.random()
    if r < 0.08:
        return rng.choice(SUBJECT_ODD) if rng.random() < 0.5 else Header(
            f"Grüße zum {rng.choice(WORDS)} – {rng.randrange(1000)}", "utf-8").encode()
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
    prefix = rng.choice(["", "", "", "Re: ", "Re: Re: ", "Fwd: ", "AW: "])
    return prefix + words[0].upper() + words[1:]


def _text(rng: random.Random, size: int) -> str:
    """Wrapped lorem lines (≤ 72 chars) up to about ``size`` bytes; a few start with '.'."""
    lines: list[str] = []
    total = 0
    while total < size:
        if rng.random() < 0.03:
            line = rng.choice([".", "..", ".signature follows", "-- ", ""])
        else:
            n = rng.randint(4, 11)
            line = " ".join(rng.choice(LOREM) for _ in range(n)).capitalize() + "."
            line = line[:72]
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def _html(text: str) -> str:
    """The text part as minimal HTML (multipart/alternative's second part)."""
    paras = "".join(f"<p>{line}</p>\n" for line in text.splitlines() if line)
    return f"<html><body>\n{paras}</body></html>\n"


def _headers(rng: random.Random, i: int, when: datetime) -> list[str]:
    """From/To/Cc/Subject/Date/Message-ID (+ In-Reply-To, Received...) for message i."""
    mid = f"<{rng.getrandbits(64):016x}.{i}@{rng.choice(DOMAINS)}>"
    hops = [
        f"Received: from mx{rng.randrange(9)}.{rng.choice(DOMAINS)} "
        f"(mx.{rng.choice(DOMAINS)} [192.0.2.{rng.randrange(1, 255)}])\n"
        f"\tby mail.example.org (mailroom) with ESMTPS id {rng.getrandbits(40):010X}\n"
        f"\tfor <john@example.org>; {format_datetime(when)}"
        for _ in range(rng.randint(1, 3))
    ]
    to = ["John Doe <john@example.org>", *(_address(rng) for _ in range(rng.randint(0, 3)))]
    rng.shuffle(to)
    out = [f"Return-Path: <bounce-{i}@{rng.choice(DOMAINS)}>", *hops,
           f"From: {_address(rng)}", "To: " + ",\n\t".join(to)]
    if rng.random() < 0.3:
        out.append("Cc: " + ",\n\t".join(_address(rng) for _ in range(rng.randint(1, 4))))
    out += [f"Subject: {_subject(rng)}", f"Date: {format_datetime(when)}", f"Message-ID: {mid}"]
    if rng.random() < 0.3:
        parent = f"<{rng.getrandbits(64):016x}.{rng.randrange(max(i, 1))}@{rng.choice(DOMAINS)}>"
        out += [f"In-Reply-To: {parent}", f"References: {parent}"]
    if rng.random() < 0.5:
        out.append(f"X-Mailer: {rng.choice(['Thunderbird 115.5', 'Apple Mail (2.3731)', 'Mutt/2.2.9'])}")
    out.append("MIME-Version: 1.0")
    return out


def build_message(rng: random.Random, i: int, when: datetime) -> bytes:
    """One message, LF line ends, about 1-8 kB."""
    target = int(min(8000, max(1000, rng.lognormvariate(8.0, 0.5))))
    head = _headers(rng, i, when)
    kind = rng.random()
    boundary = f"=_bench_{rng.getrandbits(48):012x}"
    head_len = sum(len(h) + 1 for h in head) + 100
    if kind < 0.6:
        head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        body = _text(rng, max(200, target - head_len))
    elif kind < 0.9:
        text = _text(rng, max(150, (target - head_len) // 2 - 150))
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = (f"This is a multi-part message in MIME format.\n\n--{boundary}\n"
                f"Content-Type: text/plain; charset=utf-8\n\n{text}\n--{boundary}\n"
                f"Content-Type: text/html; charset=utf-8\n\n{_html(text)}\n--{boundary}--\n")
    else:
        blob = rng.randbytes(max(300, (target - head_len) // 2))
        b64 = base64.encodebytes(blob).decode()  # 76-char lines, LF
        text = _text(rng, max(150, target - head_len - len(b64) - 300))
        name = f"{rng.choice(WORDS)}-{i}.{rng.choice(['pdf', 'png', 'zip'])}"
        head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = (f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{text}\n--{boundary}\n"
                f'Content-Type: application/octet-stream; name="{name}"\n'
                f'Content-Disposition: attachment; filename="{name}"\n'
                f"Content-Transfer-Encoding: base64\n\n{b64}\n--{boundary}--\n")
    return ("\n".join(head) + "\n\n" + body).encode()


def _flags(rng: random.Random) -> str:
    """Maildir info flags in Dovecot's (alphabetical) order: mostly seen, some not."""
    r = rng.random()
    if r < 0.15:
        return ""
    if r < 0.23:
        return "RS"
    if r < 0.28:
        return "FS"
    if r < 0.30:
        return "F"
    return "S"


def generate(maildir: Path, count: int, seed: int, in_new: int = 20) -> Corpus:
    """Write ``count`` messages into ``maildir`` (cur/, new/, tmp/); no dovecot-uidlist.

    The last ``in_new`` messages go to new/ (not yet seen by any client).
    """
    rng = random.Random(seed)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    secs = START
    totals = {"lf": 0, "crlf": 0, "seen": 0, "flagged": 0, "answered": 0}
    in_new = min(in_new, count)
    for i in range(count):
        secs += rng.randint(300, 900)
        usecs = rng.randrange(1_000_000)
        when = datetime.fromtimestamp(secs, UTC)
        data = build_message(rng, i, when)
        size, vsize = len(data), len(data) + data.count(b"\n")
        base = f"{secs}.M{usecs}P{rng.randint(1000, 60000)}.{HOST},S={size},W={vsize}"
        if i >= count - in_new:
            path = maildir / "new" / base
        else:
            flags = _flags(rng)
            path = maildir / "cur" / f"{base}:2,{flags}"
            totals["seen"] += "S" in flags
            totals["flagged"] += "F" in flags
            totals["answered"] += "R" in flags
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (secs, secs))
        totals["lf"] += size
        totals["crlf"] += vsize
    return Corpus(maildir, count, in_new, totals["lf"], totals["crlf"],
                  totals["seen"], totals["flagged"], totals["answered"])
