"""A mailbox moves between Debian's Dovecot 2.3 and mailroom, both ways, and both answer
IMAP FETCH alike for the same messages.

- Dovecot -> mailroom -> Dovecot: Dovecot builds a mailbox (mail delivered as files and
  synced, APPENDs, flags, keywords, an expunge in the middle and one at the end, nested
  folders, subscriptions, a POP3 session); mailroom then serves the same Maildir, with
  Dovecot's index files removed (only the Maildir was copied) or left in place, and must
  show the same folders, UIDVALIDITY, UIDNEXT, UIDs, flags, keywords, sizes, INTERNALDATEs
  over IMAP and the same messages and UIDLs over POP3. mailroom then changes the mailbox,
  and Dovecot, started again on it (with its now stale index in the second variant), must
  see exactly what mailroom showed.
- mailroom -> Dovecot -> mailroom: the same the other way, Dovecot starting with no index.
- FETCH parity: a corpus of awkward messages (tests/interop/fetch_corpus.py) in two
  identical Maildirs, one per server: ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE, header
  fields, parts, a partial TEXT and INTERNALDATE compared message by message.

Everything is observed through IMAP and POP3 (imaplib, poplib) on both servers, plus
doveadm for Dovecot's storage. mailroom's divergences are xfail(strict=True) tests whose
reasons say what is wrong; Dovecot's own departures from the RFCs are checked separately.
Skips with one line when Dovecot is absent or we are not root (Dovecot needs its users).
"""

from __future__ import annotations

import functools
import glob
import imaplib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.interop.dovecot_mail import (
    FETCH_ITEMS,
    JOHN,
    DovecotMail,
    MailroomServers,
    MailState,
    Value,
    dovecot_missing,
    fetch_corpus,
    fetch_items,
    imap_state,
    mailbox_path,
    mailroom_servers,
    ok,
    place_messages,
    pop3_listing,
)
from tests.interop.fetch_corpus import CORPUS, corpus_bytes
from tests.transcripts.dovecot_auth.peers import peer_base

from mailroom.mailstore.maildir import deliver_to_maildir

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

SKIP = dovecot_missing()
T0 = 1_700_000_000  # 14-Nov-2023 22:13:20 UTC: file times, so no INTERNALDATE is "now"

Listing = list[tuple[int, str, int]]  # POP3: (number, UIDL, size)
Snapshot = tuple[MailState, Listing]


# ------------------------------------------------------------------ building a mailbox
def message(n: int, subject: str) -> bytes:
    return (f"From: Sender {n} <sender{n}@example.net>\nTo: john@example.org\n"
            f"Subject: {subject}\nMessage-ID: <{subject.replace(' ', '.')}.{n}@example.net>\n"
            f"Date: Mon, 1 Jan 2024 10:{n:02d}:00 +0000\n\n"
            f"Body of {subject}.\nSecond line.\n").encode()


def append(client: imaplib.IMAP4, folder: str, flags: str, date: float, data: bytes) -> int:
    """APPEND; the new UID from APPENDUID (RFC 4315), which both servers send."""
    response = ok(client.append(folder, flags or None, date, data.replace(b"\n", b"\r\n")), f"APPEND {folder}")
    text = response[-1]
    assert isinstance(text, bytes) and b"APPENDUID" in text, response
    return int(text.split(b"APPENDUID ", 1)[1].split(b"]", 1)[0].split()[1])


def store(client: imaplib.IMAP4, uids: str, change: str, flags: str) -> None:
    ok(client.uid("STORE", uids, change, flags), f"UID STORE {uids} {change} {flags}")


def inbox_uids(client: imaplib.IMAP4) -> list[int]:
    """SELECT INBOX (a server syncs new/ then) and its UIDs."""
    ok(client.select("INBOX"), "SELECT INBOX")
    uids = []
    for items in fetch_items(ok(client.fetch("1:*", "(UID)"), "FETCH UID")).values():
        uid = items["UID"]
        assert isinstance(uid, str)
        uids.append(int(uid))
    return uids


def build_mailbox(client: imaplib.IMAP4) -> None:
    """The same changes on either server, over IMAP; INBOX holds 3 delivered messages."""
    assert inbox_uids(client) == [1, 2, 3]
    assert append(client, "INBOX", r"(\Seen $Label1)", T0 + 4, message(4, "appended seen")) == 4
    assert append(client, "INBOX", r"(\Answered \Flagged Junk $Label1)", T0 + 5, message(5, "answered")) == 5
    assert append(client, "INBOX", r"(\Draft)", T0 + 6, message(6, "draft")) == 6
    assert append(client, "INBOX", "", T0 + 7, message(7, "to expunge last")) == 7
    store(client, "1", "+FLAGS", r"(\Seen)")
    store(client, "2", "+FLAGS", r"(\Deleted \Seen)")  # stays: \Deleted but not expunged
    store(client, "3,7", "+FLAGS", r"(\Deleted)")
    ok(client.uid("EXPUNGE", "3,7"), "UID EXPUNGE")  # RFC 4315: only these two
    store(client, "6", "+FLAGS", "($Forwarded)")  # a third keyword, added after the fact
    for folder in ("Archive", "Archive.2024", "Lists.mailroom"):  # "Lists" itself is no mailbox
        ok(client.create(folder), f"CREATE {folder}")
    ok(client.subscribe("Archive"), "SUBSCRIBE Archive")
    # Another order of first use: letter "a" is Junk here, $Label1 in INBOX.
    append(client, "Archive", "(Junk)", T0 + 10, message(10, "archived junk"))
    append(client, "Archive", r"(\Seen $Label1 Junk)", T0 + 11, message(11, "archived labelled"))
    append(client, "Archive", "", T0 + 12, message(12, "archived plain"))
    append(client, "Archive.2024", r"(\Flagged)", T0 + 13, message(13, "archived 2024"))
    append(client, "Lists.mailroom", "(NonJunk)", T0 + 14, message(14, "list mail"))
    # No CLOSE: it would expunge UID 2 (\Deleted); the caller's LOGOUT leaves it.


def pop3_session(server: DovecotMail | MailroomServers) -> None:
    """A POP3 client that downloads one message and leaves it on the server (RETR, QUIT)."""
    pop = server.pop3()
    try:
        pop3_listing(pop)
        pop.retr(4)  # INBOX's 4th message (UID 5): a server may set \Seen on it
    finally:
        pop.quit()


def change_mailbox(client: imaplib.IMAP4, new_uid: int, archive_next: int) -> None:
    """What the server that took over does next (the other one must see it): a flag change,
    an EXPUNGE of the \\Deleted message, an APPEND with a keyword new to the folder."""
    assert inbox_uids(client) == [1, 2, 4, 5, 6, new_uid]
    store(client, "1", "+FLAGS", r"(\Flagged $Label1)")
    store(client, "1", "-FLAGS", r"(\Seen)")
    ok(client.expunge(), "EXPUNGE")  # UID 2
    assert append(client, "Archive", "($Important)", T0 + 21, message(21, "archived later")) == archive_next


def sanity(state: MailState) -> None:
    """The scenario made what it claims (else a comparison could pass on an empty mailbox)."""
    inbox = state.folders["INBOX"]
    uids = sorted(inbox.messages)
    assert uids == [1, 2, 4, 5, 6] and inbox.uidnext == 8, (uids, inbox.uidnext)  # a gap; the last expunged
    everything = frozenset().union(*(m.flags for f in state.folders.values() for m in f.messages.values()))
    assert {"\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Label1", "Junk", "$Forwarded",
            "NonJunk"} <= everything, everything
    assert set(state.folders) == {"INBOX", "Archive", "Archive.2024", "Lists.mailroom", "Drafts", "Junk",
                                  "Sent", "Trash"}, state.folders
    assert all(state.folders[f].messages for f in ("Archive", "Archive.2024", "Lists.mailroom"))
    assert {"Archive", "Sent", "Trash"} <= state.subscribed


def remove_dovecot_indexes(maildir: Path) -> list[str]:
    """What a migration that copies only the Maildir leaves behind: none of Dovecot's index
    files (dovecot.index, .log, .cache, and the mailbox list index)."""
    removed = []
    for pattern in ("dovecot.index*", "dovecot.list.index*", ".*/dovecot.index*"):
        for path in glob.glob(str(maildir / pattern)):
            os.unlink(path)
            removed.append(os.path.relpath(path, maildir))
    return removed


def snapshot(server: DovecotMail | MailroomServers) -> Snapshot:
    """The whole mailbox as IMAP shows it, and POP3's UIDL + LIST of INBOX; for Dovecot, also
    checked against what its storage says (doveadm) rather than its IMAP server."""
    with server.imap() as client:
        state = imap_state(client)
    pop = server.pop3()
    try:
        listing = pop3_listing(pop)
    finally:
        pop.quit()
    if isinstance(server, DovecotMail):
        storage = server.storage_state(sorted(state.folders))
        imap_view = {name: (f.uidvalidity, f.uidnext, {uid: m.flags for uid, m in f.messages.items()})
                     for name, f in state.folders.items()}
        assert storage == imap_view
    return state, listing


# ------------------------------------------------------------------ the moves
@dataclass
class Check:
    """One hand-over: what `taker` showed of the mailbox `giver` left."""

    taker: str
    seen: Snapshot
    giver: str
    expected: Snapshot

    @property
    def who(self) -> str:
        return f"{self.taker} after {self.giver}"


def dovecot_first(base: Path, *, keep_indexes: bool) -> list[Check]:
    """Dovecot builds the mailbox; mailroom takes over and changes it; Dovecot takes it back."""
    vmail = base / "vmail"
    dovecot = DovecotMail(base / "dovecot", vmail)
    maildir = dovecot.maildir
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n in (1, 2, 3):  # delivered by an MDA that knows nothing of Dovecot: no ,S= ,W= in the name
        path = maildir / "new" / f"{T0 + n}.M{n}P4242Q{n}.mx"
        path.write_bytes(message(n, f"delivered {n}"))
        os.utime(path, (T0 + n, T0 + n))

    with dovecot.running():
        with dovecot.imap() as client:
            build_mailbox(client)
        pop3_session(dovecot)
        before = snapshot(dovecot)
    sanity(before[0])
    if not keep_indexes:
        removed = remove_dovecot_indexes(maildir)
        assert {"dovecot.index.log", ".Archive/dovecot.index.log"} <= set(removed), removed

    with mailroom_servers(vmail) as mailroom:
        taken = snapshot(mailroom)
        # mailroom carries on from there, and no UID is given twice.
        path = deliver_to_maildir(maildir, message(20, "after the move"), hostname="mx")
        os.utime(path, (T0 + 20, T0 + 20))
        with mailroom.imap() as client:
            change_mailbox(client, before[0].folders["INBOX"].uidnext, before[0].folders["Archive"].uidnext)
        after = snapshot(mailroom)

    with dovecot.running():  # back, with its own (now stale) index when it was kept
        back = snapshot(dovecot)
    return [Check("mailroom", taken, "Dovecot", before), Check("Dovecot", back, "mailroom", after)]


def mailroom_first(base: Path) -> list[Check]:
    """mailroom builds the mailbox; Dovecot (with no index) takes over and changes it;
    mailroom takes it back."""
    vmail = base / "vmail"
    dovecot = DovecotMail(base / "dovecot", vmail)
    maildir = dovecot.maildir
    for n in (1, 2, 3):  # mailroom's local delivery
        path = deliver_to_maildir(maildir, message(n, f"delivered {n}"), hostname="mx",
                                  clock=functools.partial(float, T0 + n))
        os.utime(path, (T0 + n, T0 + n))

    with mailroom_servers(vmail) as mailroom:
        with mailroom.imap() as client:
            build_mailbox(client)
        pop3_session(mailroom)
        before = snapshot(mailroom)
    sanity(before[0])
    assert not glob.glob(str(maildir / "**" / "dovecot.index*"), recursive=True)  # none of Dovecot's

    with dovecot.running():
        taken = snapshot(dovecot)
        with dovecot.imap() as client:  # Dovecot carries on: a new message, then the changes
            uid = append(client, "INBOX", r"(\Seen NonJunk)", T0 + 20, message(20, "after the move"))
            assert uid == before[0].folders["INBOX"].uidnext
            change_mailbox(client, uid, before[0].folders["Archive"].uidnext)
        after = snapshot(dovecot)

    with mailroom_servers(vmail) as mailroom:
        back = snapshot(mailroom)
    return [Check("Dovecot", taken, "mailroom", before), Check("mailroom", back, "Dovecot", after)]


@pytest.fixture(scope="module", params=["dovecot-first-index-removed", "dovecot-first-index-kept",
                                        "mailroom-first"])
def move(request: pytest.FixtureRequest) -> Iterator[list[Check]]:
    """Each way of moving runs once; the tests below judge different parts of what it saw.
    (Outside pytest's basetemp, which pytest may reset to 0700 at any time and so lock
    Dovecot's unprivileged processes out.)"""
    if SKIP:
        pytest.skip(SKIP)
    with peer_base("mailroom-dovecot-maildir-") as path:
        if request.param == "mailroom-first":
            yield mailroom_first(path)
        else:
            yield dovecot_first(path, keep_indexes=request.param.endswith("kept"))


def test_move_keeps_folders_uids_flags_keywords(move: list[Check]) -> None:
    """Folders (with their LIST attributes), subscriptions, UIDVALIDITY, UIDNEXT, UIDs, flags,
    keywords, RFC822.SIZE and INTERNALDATE are what the other server left, at each hand-over."""
    for check in move:
        state, want = check.seen[0], check.expected[0]
        assert sorted(state.folders) == sorted(want.folders), f"{check.who}: folders"
        for name, want_folder in want.folders.items():
            got = state.folders[name]
            assert (got.uidvalidity, got.uidnext) == (want_folder.uidvalidity, want_folder.uidnext), (
                f"{check.who}: {name} UIDVALIDITY/UIDNEXT")
            assert got.attributes == want_folder.attributes, f"{check.who}: {name} LIST attributes"
            assert sorted(got.messages) == sorted(want_folder.messages), f"{check.who}: {name} UIDs"
            for uid, message_state in want_folder.messages.items():
                assert got.messages[uid] == message_state, f"{check.who}: {name} UID {uid}"
        assert state.subscribed == want.subscribed, f"{check.who}: subscriptions"
    inbox = move[1].seen[0].folders["INBOX"]  # after both hand-overs: the changes arrived
    assert sorted(inbox.messages) == [1, 4, 5, 6, 8] and inbox.uidnext == 9
    assert inbox.messages[1].flags == {"\\Flagged", "$Label1"}


def test_move_keeps_pop3_messages(move: list[Check]) -> None:
    """POP3 LIST: the same messages in the same order with the same sizes, and UIDLs made of
    the same UID and UIDVALIDITY (compared without case here: see test_move_keeps_pop3_uidls)."""
    for check in move:
        seen = [(n, uidl.lower(), size) for n, uidl, size in check.seen[1]]
        expected = [(n, uidl.lower(), size) for n, uidl, size in check.expected[1]]
        assert seen == expected, check.who
        inbox = check.expected[0].folders["INBOX"]
        assert [int(uidl[:8], 16) for _, uidl, _ in check.seen[1]] == sorted(inbox.messages), check.who
        assert {int(uidl[8:], 16) for _, uidl, _ in check.seen[1]} == {inbox.uidvalidity}, check.who


def test_dovecot_uidl_is_lowercase_hex(move: list[Check]) -> None:
    """What Dovecot 2.3 really sends for pop3_uidl_format = %08Xu%08Xv (and mailroom must
    match): its %X modifier prints with "%llx" (lib/var-expand.c, m_str_hex), in lower case."""
    for check in move:
        for server, (state, listing) in ((check.taker, check.seen), (check.giver, check.expected)):
            if server == "Dovecot":
                inbox = state.folders["INBOX"]
                assert [u for _, u, _ in listing] == [f"{uid:08x}{inbox.uidvalidity:08x}" for uid in sorted(inbox.messages)]


def test_move_keeps_pop3_uidls(move: list[Check]) -> None:
    """A unique-id is an opaque string compared as it is (RFC 1939 §7): any difference after a
    move makes every POP3 client that leaves mail on the server download everything again."""
    for check in move:
        assert check.seen[1] == check.expected[1], check.who


def test_move_keeps_hierarchy_levels(move: list[Check]) -> None:
    """LIST "" "%" with Lists.mailroom but no Lists mailbox: levels that % matches are listed,
    \\Noselect when they are no mailbox (RFC 3501 §6.3.8), or a client walking the tree with %
    never finds Lists.mailroom."""
    for check in move:
        assert check.seen[0].top_level == check.expected[0].top_level, check.who


# ------------------------------------------------------------------ FETCH parity
Answers = tuple[dict[str, dict[str, Value]], dict[str, dict[str, Value]]]  # (Dovecot's, mailroom's)

# A zone with a half-hour offset and summer time, so INTERNALDATE's zone is really compared
# (both servers print the file's mtime in the local zone: Dovecot imports TZ by default).
ZONE = "America/St_Johns"


@pytest.fixture(scope="module")
def answers() -> Iterator[Answers]:
    """(Dovecot's, mailroom's) answers: {corpus message: {FETCH item: value}}, each from its own
    identical copy of the corpus (same files, names and mtimes)."""
    if SKIP:
        pytest.skip(SKIP)
    saved = os.environ.get("TZ")
    if Path("/usr/share/zoneinfo", ZONE).exists():
        os.environ["TZ"] = ZONE
        time.tzset()
    try:
        with peer_base("mailroom-dovecot-fetch-") as path:
            messages = corpus_bytes()
            dovecot = DovecotMail(path / "dovecot", path / "dovecot-vmail")
            place_messages(dovecot.maildir, messages, T0)
            place_messages(mailbox_path(path / "mailroom-vmail", JOHN), messages, T0)
            with dovecot.running(), dovecot.imap() as client:
                from_dovecot = fetch_corpus(client, FETCH_ITEMS, SECTIONS)
            with mailroom_servers(path / "mailroom-vmail") as mailroom, mailroom.imap() as client:
                from_mailroom = fetch_corpus(client, FETCH_ITEMS, SECTIONS)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert sorted(from_dovecot) == sorted(from_mailroom) == sorted(CORPUS)
    yield from_dovecot, from_mailroom


def _fold(value: Value) -> Value:
    return value.lower() if isinstance(value, bytes) else value


def _params(value: Value) -> Value:
    """body-fld-param: attribute names are case-insensitive (RFC 2045 §5.1, RFC 2183 §2), and so
    is a charset value (RFC 2046 §4.1.2): those are folded. Other values are left alone (a file
    name or a boundary is case-sensitive). Dovecot writes a text part's charset as found in its
    BODYSTRUCTURE ("US-ASCII") but lower-cased in its BODY ("us-ascii") for the same message."""
    if not isinstance(value, list):
        return value
    out = [_fold(v) if i % 2 == 0 else v for i, v in enumerate(value)]
    for i in range(0, len(out) - 1, 2):
        if out[i] == b"charset":
            out[i + 1] = _fold(out[i + 1])
    return out


def _disposition(value: Value) -> Value:
    """body-fld-dsp: the disposition type is case-insensitive (RFC 2183 §2)."""
    if not isinstance(value, list) or len(value) != 2:
        return value
    return [_fold(value[0]), _params(value[1])]


def _language(value: Value) -> Value:
    """body-fld-lang is `nstring / "(" string *(SP string) ")"` (RFC 3501 §9): "en" and ("en")
    say the same. A single string is made a list of one; a string holding several tags is
    not split (that would hide a real difference)."""
    return [value] if isinstance(value, bytes) else value


def _extension(fields: list[Value], *, multipart: bool) -> list[Value]:
    """Extension data after the basic fields: [params (multipart only) / md5], dsp, lang, loc, ..."""
    out = list(fields)
    if out:
        out[0] = _params(out[0]) if multipart else out[0]
    if len(out) > 1:
        out[1] = _disposition(out[1])
    if len(out) > 2:
        out[2] = _language(out[2])
    return out


def normalize_body(value: Value) -> Value:
    """BODY / BODYSTRUCTURE with only what RFC 3501 §7.4.2 and MIME leave open evened out:
    the case of media types, subtypes, parameter names, transfer encodings and disposition
    types (all case-insensitive: RFC 2045 §5.1 and §6.1, RFC 2183 §2; Dovecot keeps the
    message's case and writes its defaults in lower case, mailroom upper-cases), and a single
    body language as a string or a list of one. Everything else is compared as sent."""
    assert isinstance(value, list) and value, value
    if isinstance(value[0], list):  # multipart: body+ subtype [ext...]
        count = next(i for i, v in enumerate(value) if not isinstance(v, list))
        parts = [normalize_body(v) for v in value[:count]]
        return [*parts, _fold(value[count]), *_extension(value[count + 1 :], multipart=True)]
    media, subtype = _fold(value[0]), _fold(value[1])
    out = [media, subtype, _params(value[2]), value[3], value[4], _fold(value[5]), value[6]]
    rest = value[7:]
    if (media, subtype) == (b"message", b"rfc822"):  # envelope body lines
        out += [rest[0], normalize_body(rest[1]), rest[2]]
        rest = rest[3:]
    elif media == b"text":  # lines
        out.append(rest[0])
        rest = rest[1:]
    return out + _extension(rest, multipart=False)


def normalize(item: str, value: Value) -> Value:
    if item in ("BODY", "BODYSTRUCTURE"):
        return normalize_body(value)
    if item == "INTERNALDATE" and isinstance(value, bytes) and value.startswith(b" "):
        # date-day-fixed = (SP DIGIT) / 2DIGIT (RFC 3501 §9): " 8-Jan-2025" (mailroom) and
        # "08-Jan-2025" (Dovecot) are the same date-time.
        return b"0" + value[1:]
    return value


# Where mailroom's answer differs from Dovecot's and mailroom is the one that is wrong (or,
# where RFC 3501 leaves the point open, departs from Dovecot and UW c-client, the reference
# implementation, which clients are built against). Each is an xfail(strict=True): it fails
# as soon as mailroom is fixed, so the entry can go.

MAILROOM_DIVERGES: dict[tuple[str, str], str] = {}  # none known now: every case found so far is fixed

# More sections than the eight items above, for the messages where numbering is interesting.
SECTIONS: dict[str, list[str]] = {
    "plain": ["BODY[HEADER]", "BODY[1.MIME]", "BODY[HEADER.FIELDS.NOT (SUBJECT FROM DATE)]",
              "BODY[1.1]", "BODY[1.TEXT]", "BODY[2]"],
    "rfc822_attached": ["BODY[1.MIME]", "BODY[2]", "BODY[2.MIME]", "BODY[2.HEADER]", "BODY[2.TEXT]",
                        "BODY[2.1]", "BODY[2.2]", "BODY[2.1.MIME]", "BODY[2.HEADER.FIELDS (SUBJECT)]"],
    "top_level_rfc822": ["BODY[HEADER]", "BODY[TEXT]", "BODY[1.MIME]", "BODY[1.HEADER]",
                         "BODY[1.TEXT]", "BODY[1.1]", "BODY[1.2]", "BODY[2]"],
    "nested": ["BODY[1.MIME]", "BODY[1.1]", "BODY[1.1.2]", "BODY[1.2.MIME]", "BODY[1.1.2.MIME]",
               "BODY[2.MIME]", "BODY[3]"],
    "attachment": ["BODY[2.MIME]", "BODY[3]", "BODY[3]<4.6>"],
    "no_body": ["BODY[HEADER]", "BODY[1.MIME]"],
    "alternative": ["BODY[1.MIME]", "BODY[2]"],
}
# Sections these messages do not have: RFC 3501 does not say what the answer is (an nstring:
# Dovecot sends "", mailroom NIL, Gmail NIL); either is taken as "nothing" here.
ABSENT = {("plain", "BODY[2]"), ("nested", "BODY[3]"), ("plain", "BODY[1.1]"), ("plain", "BODY[1.TEXT]"),
          ("top_level_rfc822", "BODY[2]")}


# Where Dovecot departs from the RFCs and mailroom does not: checked separately below.
DOVECOT_DIVERGES = {("long_folded", "ENVELOPE"), ("white_space", "ENVELOPE"),
                    ("no_subtype", "BODY"), ("no_subtype", "BODYSTRUCTURE")}


def _parity_cases() -> list[object]:
    cases: list[object] = []
    pairs = [(name, item) for name in CORPUS for item in FETCH_ITEMS]
    pairs += [(name, item) for name, items in SECTIONS.items() for item in items]
    for name, item in pairs:
        if (name, item) in DOVECOT_DIVERGES:
            continue
        reason = MAILROOM_DIVERGES.get((name, item))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(name, item, id=f"{name}-{item}", marks=marks))
    return cases


@pytest.mark.parametrize(("name", "item"), _parity_cases())
def test_fetch_parity(answers: Answers, name: str, item: str) -> None:
    """mailroom's FETCH answer for one corpus message and item is Dovecot's."""
    from_dovecot, from_mailroom = answers
    mailroom_says, dovecot_says = from_mailroom[name][item], from_dovecot[name][item]
    if (name, item) in ABSENT:
        assert mailroom_says in (None, b"") and dovecot_says in (None, b"")
        return
    assert normalize(item, mailroom_says) == normalize(item, dovecot_says)


def test_each_case_is_listed_once() -> None:
    """The lists above agree with each other and with the corpus (no case twice, none stale)."""
    pairs = [(n, i) for n in CORPUS for i in FETCH_ITEMS] + [(n, i) for n, v in SECTIONS.items() for i in v]
    assert len(pairs) == len(set(pairs))
    assert not DOVECOT_DIVERGES & set(MAILROOM_DIVERGES)
    assert set(MAILROOM_DIVERGES) | DOVECOT_DIVERGES | ABSENT <= set(pairs)


def _for_humans(value: Value) -> Value:
    """Dovecot 2.3's imap_append_string_for_humans (lib-imap/imap-quote.c), which it applies to
    the ENVELOPE subject and personal names: CR, LF and TAB become spaces, runs of spaces
    become one, and leading and trailing spaces go."""
    if not isinstance(value, bytes):
        return value
    return re.sub(rb"[ \t\r\n]+", b" ", value).strip(b" ")


def _unfolded_subject(name: str) -> bytes:
    """The Subject field's value, unfolded as RFC 5322 §2.2.3 says: each CRLF before WSP removed,
    nothing else (the white space after the colon is not part of the value, for both servers)."""
    header = corpus_bytes()[name].split(b"\n\n", 1)[0]
    field = re.search(rb"^Subject:(.*(?:\n[ \t].*)*)", header, re.MULTILINE)
    assert field is not None
    return field.group(1).replace(b"\n", b"").lstrip(b" \t")


@pytest.mark.parametrize("name", ["long_folded", "white_space"])
def test_envelope_keeps_white_space_dovecot_squeezes(answers: Answers, name: str) -> None:
    """Subject and display names with runs of spaces and TABs (after a fold, inside a quoted
    display name): RFC 3501 §7.4.2 gives the header field's value, unfolded by removing each
    CRLF before WSP (RFC 5322 §2.2.3), and a quoted-string's content as it is: mailroom does
    that. Dovecot 2.3 rewrites these two fields "for humans" (TABs to spaces, runs squeezed,
    ends trimmed) and sends "runs of spaces and a tab" for "runs   of    spaces<TAB>and a tab  ".
    Apart from that, the two envelopes are identical."""
    from_dovecot, from_mailroom = answers
    mailroom_envelope, dovecot_envelope = from_mailroom[name]["ENVELOPE"], from_dovecot[name]["ENVELOPE"]
    assert isinstance(mailroom_envelope, list) and isinstance(dovecot_envelope, list)
    subject = _unfolded_subject(name)
    assert mailroom_envelope[1] == subject and re.search(rb"  |\t", subject)
    assert dovecot_envelope[1] != subject
    squeezed = list(mailroom_envelope)
    squeezed[1] = _for_humans(squeezed[1])
    for field in range(2, 8):  # from, sender, reply-to, to, cc, bcc: personal names
        addresses = squeezed[field]
        if isinstance(addresses, list):
            squeezed[field] = [[_for_humans(a[0]), *a[1:]] if isinstance(a, list) else a for a in addresses]
    assert squeezed == dovecot_envelope


def test_content_type_without_subtype_is_text_plain(answers: Answers) -> None:
    """`Content-Type: text` (no subtype) is syntactically invalid; RFC 2045 §5.2 recommends the
    default, text/plain; charset=us-ascii, for an invalid Content-Type: mailroom says
    ("text" "plain" ...). Dovecot sends the subtype as "" (an empty body-fld-subtype, RFC 3501
    §7.4.2, which names no media type). The rest of both structures is the same."""
    from_dovecot, from_mailroom = answers
    for item in ("BODY", "BODYSTRUCTURE"):
        mailroom_says = normalize(item, from_mailroom["no_subtype"][item])
        dovecot_says = normalize(item, from_dovecot["no_subtype"][item])
        assert isinstance(mailroom_says, list) and isinstance(dovecot_says, list)
        assert mailroom_says[:3] == [b"text", b"plain", [b"charset", b"us-ascii"]]
        assert dovecot_says[:2] == [b"text", b""]
        assert mailroom_says[2:] == dovecot_says[2:]
