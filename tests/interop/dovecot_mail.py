"""A private Dovecot 2.3 serving IMAP and POP3 on a Maildir tree, mailroom's IMAP and POP3
servers on the same kind of tree, an IMAP response parser (imaplib hands FETCH data over
raw) and the mailbox snapshots and FETCH corpus runs that compare what both servers say.

Used by tests/interop/test_dovecot_maildir.py. Both servers find the one user
(john@example.org / summersun) at `<vmail>/example.org/john/Maildir`, the ISPmail layout
(`virtual_mailbox_base` for mailroom; `home = <vmail>/%d/%n` and `mail_location =
maildir:~/Maildir` for Dovecot).

Ownership: Dovecot refuses to touch mail as root ("userdb returned 0 as uid" from imap,
whatever first_valid_uid says), so its mail processes run as `nobody`, and the tree is
handed over with `chown -R` before each Dovecot phase, as a real migration copies the
Maildirs to the vmail user. mailroom runs in this (root) process and reads anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import poplib
import pwd
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, cast

from tests.e2e.pop3_fixture import HOST, JOHN, PASSWORD, FakeAuth
from tests.transcripts.dovecot_auth.peers import allow_traverse, free_port, peer_missing, wait_for

from mailroom.adapters.imap import ImapService, start_imap_listeners
from mailroom.adapters.pop3 import Pop3Service, start_pop3_listeners
from mailroom.config.types import ListenAddress
from mailroom.mailstore.maildir import mailbox_path

__all__ = [
    "FETCH_ITEMS", "HOST", "JOHN", "PASSWORD", "TIMEOUT", "DovecotMail", "FolderState", "MailState",
    "MailroomServers", "MessageState", "Value", "dovecot_missing", "fetch_corpus", "fetch_items",
    "hand_to_dovecot", "imap_state", "mailbox_path", "mailroom_servers", "ok", "parse_response",
    "place_messages", "pop3_listing",
]  # fmt: skip

TIMEOUT = 10.0  # every socket operation and every subprocess
MAIL_USER = "nobody"  # Dovecot's mail processes run as this user (see the module docstring)
# `doveadm stop` sends SIGTERM to the master, which logs it as a warning.
_EXPECTED_WARNING = re.compile(r"master: Warning: Killed with signal 15 ")
SPECIAL_USE = {"Drafts": "\\Drafts", "Junk": "\\Junk", "Sent": "\\Sent", "Trash": "\\Trash"}


def dovecot_missing() -> str:
    """A one-line skip reason when Debian's Dovecot (with imapd and pop3d) cannot run here."""
    reason = peer_missing("dovecot", "doveadm")
    if reason:
        return reason
    for binary in ("imap", "pop3", "imap-login", "pop3-login"):
        if not Path("/usr/lib/dovecot", binary).exists():
            return f"/usr/lib/dovecot/{binary} missing (apt-get install dovecot-imapd dovecot-pop3d)"
    try:
        pwd.getpwnam(MAIL_USER)
    except KeyError:
        return f"no {MAIL_USER} user for Dovecot's mail processes"
    return ""


def hand_to_dovecot(vmail: Path) -> None:
    """chown -R the mail tree to Dovecot's mail user (what `rsync --chown=vmail:vmail` does)."""
    entry = pwd.getpwnam(MAIL_USER)
    for root, dirs, files in os.walk(vmail):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(vmail, entry.pw_uid, entry.pw_gid)


class _LoggedIn:
    """John's IMAP and POP3 sessions on whichever server has these ports."""

    imap_port: int
    pop3_port: int

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(HOST, self.imap_port, timeout=TIMEOUT)
        client.login(JOHN, PASSWORD)
        return client

    def pop3(self) -> poplib.POP3:
        client = poplib.POP3(HOST, self.pop3_port, timeout=TIMEOUT)
        client.user(JOHN)
        client.pass_(PASSWORD)
        return client


class DovecotMail(_LoggedIn):
    """`dovecot -c <base>/dovecot.conf`: imap and pop3 on 127.0.0.1 high ports, plaintext
    logins allowed (loopback only, ssl = no), one passwd-file user, the mail as `nobody`.

    The four special-use folders are `auto = subscribe`, as in the ISPmail guide, because
    mailroom creates and subscribes the same four at first login: with them on both sides a
    folder list can be compared as it is.
    """

    def __init__(self, base: Path, vmail: Path) -> None:
        self.base = base
        self.vmail = vmail
        base.mkdir(parents=True, exist_ok=True)
        vmail.mkdir(parents=True, exist_ok=True)
        allow_traverse(vmail)
        self.conf = base / "dovecot.conf"
        self.log = base / "dovecot.log"
        self.imap_port = free_port()
        self.pop3_port = free_port()
        entry = pwd.getpwnam(MAIL_USER)
        (base / "users").write_text(f"{JOHN}:{{PLAIN}}{PASSWORD}::::::\n")
        mailboxes = "".join(
            f"  mailbox {name} {{\n    auto = subscribe\n    special_use = {use}\n  }}\n"
            for name, use in SPECIAL_USE.items()
        )
        self.conf.write_text(f"""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {self.log}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid={entry.pw_uid} gid={entry.pw_gid} home={vmail}/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = .
{mailboxes}}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")

    @property
    def maildir(self) -> Path:
        return mailbox_path(self.vmail, JOHN)

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def start(self) -> None:
        hand_to_dovecot(self.vmail)
        # The daemon keeps inherited pipes open: give it files, not pipes.
        with open(self.base / "dovecot.stderr", "wb") as err:
            subprocess.run(["dovecot", "-c", str(self.conf)], check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=err, timeout=TIMEOUT)

        def accepting() -> bool:
            for port in (self.imap_port, self.pop3_port):
                try:
                    with contextlib.closing(socket.create_connection((HOST, port), 0.5)):
                        pass
                except OSError:
                    return False
            return True

        wait_for(accepting, "Dovecot's imap and pop3 listeners", TIMEOUT)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["doveadm", "-c", str(self.conf), "stop"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
        pidfile = self.base / "run" / "master.pid"
        wait_for(lambda: not pidfile.exists(), "Dovecot to stop", TIMEOUT)

    @contextlib.contextmanager
    def running(self) -> Iterator[DovecotMail]:
        """Dovecot up for the block; afterwards, its log must hold no complaint: a warning such
        as "Expunged message reappeared" or "uidlist ... corrupted" would mean it had to repair
        what the other server left."""
        self.start()
        try:
            yield self
        finally:
            self.stop()
        complaints = [line for line in self.log_tail(1_000_000).splitlines()
                      if re.search(r": (Warning|Error|Panic|Fatal):", line) and not _EXPECTED_WARNING.search(line)]
        assert not complaints, "Dovecot complained:\n" + "\n".join(complaints)

    def doveadm(self, *args: str) -> str:
        """`doveadm -c <conf> <args>` (the user look-up needs the running auth service)."""
        result = subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True,
                                text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise AssertionError(f"doveadm {' '.join(args)}: exit {result.returncode}: {result.stderr}")
        return result.stdout

    def storage_state(self, folders: Sequence[str]) -> dict[str, tuple[int, int, dict[int, frozenset[str]]]]:
        """What Dovecot's storage says, not its IMAP server: per folder (UIDVALIDITY, UIDNEXT,
        {uid: flags}) from `doveadm mailbox status` and `doveadm fetch`."""
        out: dict[str, tuple[int, int, dict[int, frozenset[str]]]] = {}
        for folder in folders:
            status = self.doveadm("-f", "tab", "mailbox", "status", "-u", JOHN, "uidvalidity uidnext", folder)
            head, values = status.strip().splitlines()
            numbers = dict(zip(head.split("\t"), values.split("\t"), strict=True))
            fetched = self.doveadm("-f", "tab", "fetch", "-u", JOHN, "uid flags", "mailbox", folder)
            messages: dict[int, frozenset[str]] = {}
            for line in fetched.splitlines()[1:]:
                uid, _, flags = line.partition("\t")
                messages[int(uid)] = frozenset(f for f in flags.split() if f != "\\Recent")
            out[folder] = (int(numbers["uidvalidity"]), int(numbers["uidnext"]), messages)
        return out



@dataclass
class MailroomServers(_LoggedIn):
    imap_port: int
    pop3_port: int
    vmail: Path

    @property
    def maildir(self) -> Path:
        return mailbox_path(self.vmail, JOHN)



@contextlib.contextmanager
def mailroom_servers(vmail: Path) -> Iterator[MailroomServers]:
    """mailroom's IMAP and POP3 adapters (as `mailroom serve` runs them) on `vmail` as
    virtual_mailbox_base, plaintext on 127.0.0.1 (like the Dovecot above), on a loop thread."""
    auth = FakeAuth()
    imap_service = ImapService(mailbox_base=vmail, auth_backend=auth, tls_context=lambda: None,
                               hostname="mail.example.org", timeout=TIMEOUT, auth_failure_delay=0.0,
                               disable_plaintext_auth=False, idle_poll=0.2)
    pop3_service = Pop3Service(mailbox_base=vmail, auth_backend=auth, tls_context=lambda: None,
                               hostname="mail.example.org", timeout=TIMEOUT, auth_failure_delay=0.0,
                               disable_plaintext_auth=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    address = [ListenAddress(HOST, 0)]

    async def start() -> list[asyncio.AbstractServer]:
        return [*await start_imap_listeners(imap_service, address, []),
                *await start_pop3_listeners(pop3_service, address, [])]

    servers: list[asyncio.AbstractServer] = []
    try:
        servers = asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)
        ports = [cast(asyncio.Server, s).sockets[0].getsockname()[1] for s in servers]
        yield MailroomServers(ports[0], ports[1], vmail)
    finally:
        async def stop() -> None:
            for server in servers:
                server.close()
            await imap_service.stop(2.0)
            await pop3_service.stop(2.0)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


# ---------------------------------------------------------------- IMAP responses
# A parsed value: an atom is `str` (numbers, flags, NIL-less atoms), a quoted string or a
# literal is `bytes` (RFC 3501 §4.3: both are the same string), NIL is None, a
# parenthesized list is a list. Keeping atoms and strings apart keeps `6` and `"6"` apart.
Value: TypeAlias = "str | bytes | None | list[Value]"

_LITERAL_MARK = re.compile(rb"\{(\d+)\}$")


def _tokenize(text: bytes, out: list[object]) -> None:
    i, n = 0, len(text)
    while i < n:
        c = text[i : i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c in (b"(", b")"):
            out.append(c.decode())
            i += 1
        elif c == b'"':
            i += 1
            value = bytearray()
            while i < n and text[i : i + 1] != b'"':
                if text[i : i + 1] == b"\\":
                    i += 1
                value += text[i : i + 1]
                i += 1
            if i >= n:
                raise ValueError(f"unterminated quoted string in {text!r}")
            i += 1
            out.append(bytes(value))
        else:
            start = i
            while i < n and text[i : i + 1] not in (b" ", b"(", b")", b"\r", b"\n"):
                if text[i : i + 1] == b"[":  # a section spec: BODY[HEADER.FIELDS (A B)]
                    close = text.find(b"]", i)
                    if close < 0:
                        raise ValueError(f"unterminated section in {text!r}")
                    i = close
                i += 1
            atom = text[start:i].decode("utf-8", "surrogateescape")
            out.append(None if atom.upper() == "NIL" else atom)


def parse_response(data: Sequence[object]) -> list[Value]:
    """imaplib's data for untagged responses (bytes lines, and (line, literal) tuples for a
    line ending in a literal) -> the values, as one flat list of top-level Values."""
    tokens: list[object] = []
    for element in data:
        if isinstance(element, tuple):
            head, literal = element
            assert isinstance(head, bytes) and isinstance(literal, bytes), element
            match = _LITERAL_MARK.search(head)
            assert match is not None and int(match.group(1)) == len(literal), head
            _tokenize(head[: match.start()], tokens)
            tokens.append(_Literal(literal))
        elif isinstance(element, bytes):
            _tokenize(element, tokens)
        elif element is not None:
            raise TypeError(f"unexpected response element {element!r}")
    stack: list[list[Value]] = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        elif isinstance(token, _Literal):
            stack[-1].append(token.data)
        else:
            stack[-1].append(cast(Value, token))
    assert len(stack) == 1, f"unbalanced parentheses in {data!r}"
    return stack[0]


@dataclass(frozen=True)
class _Literal:
    data: bytes


def fetch_items(data: Sequence[object]) -> dict[int, dict[str, Value]]:
    """imaplib's FETCH data -> {message number: {ITEM NAME: value}}.

    Item names are upper-cased: they are atoms, and atoms are case-insensitive (RFC 3501
    §9, "case-insensitive" note on the grammar); the order of the items within one FETCH
    response carries no meaning (§7.4.2 lists them as a set of pairs), so a dict is enough.
    Two responses for one message (a server may split them) are merged.
    """
    values = parse_response(data)
    out: dict[int, dict[str, Value]] = {}
    for number, items in zip(values[::2], values[1::2], strict=True):
        assert isinstance(number, str) and number.isdigit() and isinstance(items, list), (number, items)
        pairs = out.setdefault(int(number), {})
        for name, value in zip(items[::2], items[1::2], strict=True):
            assert isinstance(name, str), name
            pairs[name.upper()] = value
    return out


# ---------------------------------------------------------------- mailbox state
@dataclass(frozen=True)
class MessageState:
    # Flags and keywords. \Recent is left out: it belongs to a session, not to the mailbox
    # (RFC 3501 §2.3.2), so two servers opening one mailbox one after the other never agree.
    flags: frozenset[str]
    size: str  # RFC822.SIZE
    internaldate: bytes  # INTERNALDATE as sent


@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int
    messages: dict[int, MessageState]  # by UID
    attributes: frozenset[str]  # of its LIST "" "*" line (\HasNoChildren, \Sent, ...)


@dataclass
class MailState:
    folders: dict[str, FolderState] = field(default_factory=dict)  # the selectable mailboxes
    # LIST "" "%": the top level, with the \Noselect levels RFC 3501 §6.3.8 asks for.
    top_level: dict[str, frozenset[str]] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)  # LSUB names (Dovecot puts special-use flags there too)


def ok(result: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
    """The data of a command that must have answered OK."""
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data!r}"
    return data


def _listing(data: Sequence[object]) -> dict[str, frozenset[str]]:
    """LIST/LSUB data -> {mailbox name: attributes}. Attributes are a set: their order in the
    response means nothing (RFC 3501 §7.2.2)."""
    names: dict[str, frozenset[str]] = {}
    for line in data:
        if line is None:
            continue
        attributes, _separator, name = parse_response([line])
        assert isinstance(attributes, list) and isinstance(name, str | bytes), line
        names[name.decode() if isinstance(name, bytes) else name] = frozenset(
            a for a in attributes if isinstance(a, str))
    return names


def _last(client: imaplib.IMAP4, code: str) -> int:
    value = client.untagged_responses.get(code, [b"0"])[-1]
    assert isinstance(value, bytes), value
    return int(value)


def imap_state(client: imaplib.IMAP4) -> MailState:
    """Every selectable folder's attributes, UIDVALIDITY, UIDNEXT and messages (flags, size,
    INTERNALDATE), read with EXAMINE, which changes nothing (no \\Seen, no new/ -> cur/
    moves); the top-level listing; the subscriptions."""
    state = MailState()
    state.subscribed = set(_listing(ok(client.lsub(), "LSUB")))
    state.top_level = _listing(ok(client.list('""', "%"), 'LIST "" %'))
    for name, attributes in sorted(_listing(ok(client.list('""', "*"), 'LIST "" *')).items()):
        if {"\\noselect", "\\nonexistent"} & {a.lower() for a in attributes}:
            continue  # a hierarchy level, not a mailbox: RFC 3501 does not ask "*" to show it
        ok(client.select(f'"{name}"', readonly=True), f"EXAMINE {name}")
        validity, uidnext, exists = (_last(client, c) for c in ("UIDVALIDITY", "UIDNEXT", "EXISTS"))
        messages: dict[int, MessageState] = {}
        if exists:
            data = ok(client.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)"), f"FETCH in {name}")
            for items in fetch_items(data).values():
                uid, flags, size, date = (items[k] for k in ("UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"))
                assert isinstance(uid, str) and isinstance(flags, list) and isinstance(size, str), items
                assert isinstance(date, bytes), items
                kept = frozenset(f for f in flags if isinstance(f, str) and f != "\\Recent")
                messages[int(uid)] = MessageState(kept, size, date)
        state.folders[name] = FolderState(validity, uidnext, messages, attributes)
        ok(client.close(), f"CLOSE {name}")
    return state


def pop3_listing(client: poplib.POP3) -> list[tuple[int, str, int]]:
    """UIDL and LIST together: [(message number, unique-id, size)], in the server's order."""
    response, lines, _ = client.uidl()
    assert response.startswith(b"+OK"), response
    uidls = dict(line.decode().split() for line in lines)
    response, lines, _ = client.list()
    assert response.startswith(b"+OK"), response
    sizes = dict(line.decode().split() for line in lines)
    assert uidls.keys() == sizes.keys(), (uidls, sizes)
    return [(int(n), uidls[n], int(sizes[n])) for n in sorted(uidls, key=int)]


def place_messages(maildir: Path, messages: dict[str, bytes], first_time: int) -> None:
    """Write each message as a file in `cur/` (no flags), mtime = its INTERNALDATE, in order."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(messages.values()):
        stamp = first_time + 20 * 86400 * i + 3599 * i  # over a year: both sides of DST changes
        path = maildir / "cur" / f"{stamp}.M{i}P4242Q{i}.corpus:2,"
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))


FETCH_ITEMS = ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "BODY[HEADER.FIELDS (SUBJECT FROM)]",
               "BODY[1]", "BODY[TEXT]<0.100>", "INTERNALDATE"]


def fetch_corpus(client: imaplib.IMAP4, items: Sequence[str],
                 more: dict[str, list[str]] | None = None) -> dict[str, dict[str, Value]]:
    """EXAMINE INBOX (read-only: a BODY[] fetch sets no \\Seen, so no FLAGS come back unasked),
    then one FETCH per message and item -> {corpus name: {item as asked: value}}; `more`
    names further items for some messages."""
    ok(client.select("INBOX", readonly=True), "EXAMINE INBOX")
    names = fetch_items(ok(client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (X-CORPUS)])"), "FETCH X-Corpus"))
    out: dict[str, dict[str, Value]] = {}
    for number, pairs in sorted(names.items()):
        (field_value,) = pairs.values()
        assert isinstance(field_value, bytes), pairs
        name = field_value.decode().partition(":")[2].strip()
        answers: dict[str, Value] = {}
        for item in [*items, *(more or {}).get(name, [])]:
            got = fetch_items(ok(client.fetch(str(number), f"({item})"), f"FETCH {number} {item}"))
            assert list(got) == [number], got
            # The answer is named as asked, less the length of a partial fetch: "BODY[TEXT]<0>".
            key = re.sub(r"<(\d+)\.\d+>$", r"<\1>", item)
            assert list(got[number]) == [key], (item, got)
            answers[item] = got[number][key]
        out[name] = answers
    return out
