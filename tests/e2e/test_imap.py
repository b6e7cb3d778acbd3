"""IMAP end to end: Python's imaplib against the asyncio adapter on 127.0.0.1, TLS with trustme."""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

import pytest

from mailroom.mailstore.maildir import deliver_to_maildir
from tests.e2e.imap_fixture import HOST, JOHN, PASSWORD, TIMEOUT, ImapFixture, imap_server  # noqa: F401

MESSAGE_1 = (b"From: Alice <alice@example.com>\r\nTo: john@example.org\r\nSubject: first\r\n"
             b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nhello world\r\n")
MESSAGE_2 = (b"From: bob@example.net\r\nSubject: second\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=XX\r\n\r\npreamble\r\n--XX\r\n"
             b"Content-Type: text/plain\r\n\r\npart one\r\n--XX\r\nContent-Type: text/html\r\n\r\n"
             b"<b>two</b>\r\n--XX--\r\n")


def test_starttls_then_login_select_fetch(imap: ImapFixture) -> None:
    imap.deliver(MESSAGE_1)
    client = imap.plain()
    assert "LOGINDISABLED" in client.capabilities and "STARTTLS" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        client.login(JOHN, PASSWORD)
    client.starttls(imap.client_context)
    assert "AUTH=PLAIN" in client.capabilities and "LOGINDISABLED" not in client.capabilities
    typ, _ = client.login(JOHN, PASSWORD)
    assert typ == "OK"
    typ, data = client.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = client.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == MESSAGE_1
    assert b"RFC822.SIZE %d" % len(MESSAGE_1) in data[0][0]
    typ, data = client.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: first\r\n\r\n"
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    client.logout()
    assert imap.auth.calls == [(JOHN, "imap", True)]


def test_special_folders_list_and_namespace(imap: ImapFixture) -> None:
    client = imap.login()
    typ, data = client.list()
    assert typ == "OK"
    text = b"\n".join(d for d in data if isinstance(d, bytes))
    for name, attr in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Junk", b"\\Junk"), (b"Trash", b"\\Trash")):
        assert attr in text and name in text
    assert b'"INBOX"' in text
    typ, data = client.lsub()
    assert any(b"Sent" in d for d in data if isinstance(d, bytes))
    typ, data = client.namespace()
    assert data == [b'(("" ".")) NIL NIL']
    client.logout()


def test_authenticate_plain_and_wrong_password(imap: ImapFixture) -> None:
    client = imap.secure()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(JOHN, "wrong")
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{JOHN}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()


def test_append_copy_move_store_search_expunge(imap: ImapFixture) -> None:
    client = imap.login()
    typ, data = client.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1700000000), MESSAGE_2)
    assert typ == "OK" and b"APPENDUID" in data[0]
    imap.deliver(MESSAGE_1)
    client.select("INBOX")
    assert client.search(None, "FLAGGED")[1] == [b"1"]
    assert client.search(None, "FROM", "alice")[1] == [b"2"]
    assert client.search(None, "OR", "SUBJECT", "first", "SUBJECT", "second")[1] == [b"1 2"]
    assert client.search(None, "NOT", "SEEN", "LARGER", "10")[1] == [b"1 2"]
    assert client.uid("SEARCH", "UID", "2")[1] == [b"2"]
    typ, data = client.fetch("1", "(INTERNALDATE BODYSTRUCTURE ENVELOPE BODY.PEEK[2])")
    assert typ == "OK"
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'("TEXT" "HTML"' in head and b"MIXED" in head and b'"second"' in head
    assert b'BODY[2] "<b>two</b>"' in head
    typ, data = client.copy("1", "Trash")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = client.uid("MOVE", "2", "Sent")
    assert typ == "OK"
    typ, data = client.status("Sent", "(MESSAGES UIDNEXT)")
    assert b"MESSAGES 1" in data[0]
    client.store("1", "+FLAGS", "\\Deleted")
    typ, data = client.expunge()
    assert data == [b"2", b"1"]  # imaplib keeps MOVE's untagged EXPUNGE too
    typ, data = client.select("INBOX")
    assert data == [b"0"]
    client.create("Lists.mailroom")
    assert client.rename("Lists.mailroom", "Lists.python")[0] == "OK"
    typ, data = client.list('""', "Lists*")
    assert data == [b'(\\Noselect \\HasChildren) "." "Lists"', b'(\\HasNoChildren) "." "Lists.python"']
    assert client.delete("Lists.python")[0] == "OK"
    assert client.delete("Lists.python")[0] == "NO"
    client.logout()


@pytest.mark.parametrize("how", ["inotify", "polling"])
def test_idle_sees_delivery_within_a_second(imap: ImapFixture, how: str) -> None:
    """With inotify the folder is not polled at all (a poll interval of a minute proves it);
    on NFS (mail_nfs_storage) inotify cannot see other hosts' writes, so IDLE polls."""
    if how == "inotify":
        imap.service.idle_poll = 60.0
    else:
        imap.service.mail_nfs_storage = True
    client = imap.login()
    client.select("INBOX")
    sock = client.socket()
    tag = b"I1"
    sock.sendall(tag + b" IDLE\r\n")
    reader = client.file  # imaplib's buffered reader
    assert reader.readline().startswith(b"+ ")
    start = time.monotonic()
    imap.deliver(MESSAGE_1)
    line = reader.readline()
    assert line == b"* 1 EXISTS\r\n"
    # By design the delay is at most one idle_poll (0.5 s); the bound is loose so a
    # loaded CI machine does not fail the test (speed itself is measured in make bench).
    assert time.monotonic() - start < 2.5
    sock.sendall(b"DONE\r\n")
    while not (line := reader.readline()).startswith(tag):
        pass
    assert line.startswith(b"I1 OK")
    assert (imap.service.watcher is not None) == (how == "inotify")
    client.logout()


def start_idling(imap: ImapFixture, tags: tuple[bytes, ...]) -> list[tuple[imaplib.IMAP4_SSL, bytes]]:
    """One logged-in session per tag, INBOX selected, each in IDLE (the "+" seen)."""
    idlers = []
    for tag in tags:
        client = imap.login()
        client.select("INBOX")
        client.socket().sendall(tag + b" IDLE\r\n")
        assert client.file.readline().startswith(b"+ ")
        idlers.append((client, tag))
    return idlers


def test_idle_with_inotify_looks_only_when_the_folder_changes(
        imap: ImapFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle sessions cost nothing while nothing happens; a flag change or an expunge by
    another session wakes them; the watch goes when IDLE ends, shared while two idle."""
    import mailroom.adapters.imap as adapter

    imap.deliver(MESSAGE_1)
    imap.deliver(MESSAGE_2)
    looks: list[float] = []
    original = adapter.ImapSession._idle_poll

    async def counting(self: adapter.ImapSession) -> None:
        looks.append(time.monotonic())
        await original(self)

    monkeypatch.setattr(adapter.ImapSession, "_idle_poll", counting)
    imap.service.idle_poll = 0.05  # would be ~20 looks a second if it polled
    idlers = start_idling(imap, (b"A1", b"B1"))
    time.sleep(1.0)
    assert len(looks) <= 4  # one look as each watch begins (and maybe one for the other's select)
    watcher = imap.service.watcher
    assert watcher is not None and watcher.watches == 3  # new/, cur/ and the folder, shared by both
    other = imap.login()
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Flagged")
    other.store("2", "+FLAGS", "\\Deleted")
    other.expunge()
    for client, tag in idlers:
        seen = b""
        deadline = time.monotonic() + 5
        while b"EXPUNGE" not in seen and time.monotonic() < deadline:
            seen += client.file.readline()
        assert b"* 1 FETCH (FLAGS (\\Flagged" in seen and b"* 2 EXPUNGE" in seen  # the first owns \Recent
        client.socket().sendall(b"DONE\r\n")
        while not (line := client.file.readline()).startswith(tag):
            pass
        assert line.startswith(tag + b" OK")
        client.noop()  # the session has left IDLE: its watch is gone
    assert watcher.watches == 0
    other.logout()
    for client, _ in idlers:
        client.logout()


def test_starttls_injection_is_discarded(imap: ImapFixture) -> None:
    with socket.create_connection((HOST, imap.port), timeout=TIMEOUT) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\nb LOGIN john@example.org summersun\r\n")
        assert reader.readline() == b"a OK Begin TLS negotiation now.\r\n"
        tls = imap.client_context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"c NOOP\r\n")
        tls_reader = tls.makefile("rb")
        assert tls_reader.readline() == b"c OK NOOP completed.\r\n"
        tls.close()


def test_a_large_starttls_injection_is_discarded_too(imap: ImapFixture) -> None:
    """More plaintext behind STARTTLS than the adapter hands the core at once (FEED_SLICE):
    what the adapter still held must be dropped as well, never read as commands after TLS."""
    injected = b"".join(b"x%d LOGIN john@example.org summersun\r\n" % i for i in range(1000))
    assert len(injected) > 2 * 16 * 1024
    with socket.create_connection((HOST, imap.port), timeout=TIMEOUT) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\n" + injected)  # one segment on loopback: one read
        assert reader.readline() == b"a OK Begin TLS negotiation now.\r\n"
        tls = imap.client_context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"c NOOP\r\n")
        tls_reader = tls.makefile("rb")
        assert tls_reader.readline() == b"c OK NOOP completed.\r\n"  # nothing answered for x0...
        tls.close()
    assert imap.auth.calls == []


def test_imaps_rejects_plain_tls_mismatch(imap: ImapFixture) -> None:
    ctx = ssl.create_default_context()  # does not trust the test CA
    with pytest.raises(ssl.SSLError):
        imaplib.IMAP4_SSL(HOST, imap.tls_port, ssl_context=ctx, timeout=TIMEOUT)


def test_other_sessions_changes_are_reported(imap: ImapFixture) -> None:
    imap.deliver(MESSAGE_1)
    imap.deliver(MESSAGE_2)
    one, two = imap.login(), imap.login()
    one.select("INBOX")
    two.select("INBOX")
    two.store("1", "+FLAGS", "\\Deleted")
    two.expunge()
    imap.deliver(MESSAGE_1)
    typ, _ = one.noop()
    assert one.untagged_responses.get("EXPUNGE") == [b"1"]
    assert one.untagged_responses.get("EXISTS", [])[-1] == b"2"
    one.logout()
    two.logout()


def test_maildir_layout_and_subscriptions(imap: ImapFixture) -> None:
    client = imap.login()
    assert client.create("Projects")[0] == "OK"
    assert client.create("Projects")[0] == "NO"
    assert client.subscribe("Projects")[0] == "OK"
    client.logout()
    assert (imap.maildir / ".Projects" / "cur").is_dir()
    assert (imap.maildir / ".Projects" / "maildirfolder").exists()
    for name in ("Sent", "Drafts", "Junk", "Trash"):
        assert (imap.maildir / f".{name}" / "cur").is_dir()
    names = (imap.maildir / "subscriptions").read_text().split()
    assert names[0] == "INBOX" and "Projects" in names and "Sent" in names


def test_quota_from_the_directory(imap: ImapFixture) -> None:
    imap.deliver(b"From: a@example.com\r\nSubject: big\r\n\r\n" + b"x" * 4096 + b"\r\n")
    asked: list[str] = []
    imap.service.quota_lookup = lambda user: asked.append(user) or 2 * 1024 * 1024
    client = imap.login()
    assert b"QUOTA" in client.capability()[1][0].split()
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK", data
    assert data[0] == [b'"INBOX" "User quota"']
    assert data[1] == [b'"User quota" (STORAGE 4 2048)']
    assert client.getquota('"User quota"') == ("OK", [b'"User quota" (STORAGE 4 2048)'])
    typ, data = client.setquota('"User quota"', "(STORAGE 1)")
    assert typ == "NO" and b"NOPERM" in data[0]
    assert asked and asked[0] == JOHN
    imap.service.quota_lookup = lambda _user: 0  # unlimited: no QUOTA response (as Dovecot)
    assert client.getquotaroot("INBOX") == ("OK", [[b'"INBOX"'], [None]])
    client.logout()


def test_small_reads_run_inline_and_a_slow_one_pauses_inlining(
        imap: ImapFixture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """NOOP and a small FETCH are answered on the event loop (no worker thread); one inline
    step slower than INLINE_SLOW sends every command to threads for INLINE_PAUSE."""
    import mailroom.adapters.imap as adapter

    imap.deliver(MESSAGE_1)
    threaded: list[str] = []
    original = adapter.ImapSession._blocking

    async def counting(self: adapter.ImapSession, work: object) -> None:
        threaded.append(getattr(work, "__name__", "?"))
        await original(self, work)  # type: ignore[arg-type]

    monkeypatch.setattr(adapter.ImapSession, "_blocking", counting)
    client = imap.login()
    client.select("INBOX")  # a thread: SELECT is not inline (and the folder moves new/ to cur/)
    client.fetch("1", "(FLAGS)")  # may need a thread: the directory times just moved
    time.sleep(0.2)  # let the times settle (store.SETTLE_NS)
    client.noop()  # a full look at the now settled folder
    threaded.clear()
    for _ in range(3):
        assert client.noop()[0] == "OK"
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and MESSAGE_1 in data[0][1]  # type: ignore[index]
    assert threaded == []
    monkeypatch.setattr(adapter, "INLINE_SLOW", -1.0)  # every inline step now counts as slow
    with caplog.at_level("WARNING", logger="mailroom.imap"):
        client.noop()
        client.noop()
    assert threaded == ["execute"]  # the first was inline (and slow), the second went to a thread
    assert any("on the event loop; running commands in worker threads" in r.getMessage() for r in caplog.records)
    assert imap.service.inline_paused_until > time.monotonic()
    client.logout()


@pytest.mark.parametrize("burst", ["inline", "core"])
def test_pipelined_commands_let_other_sessions_run(imap: ImapFixture, burst: str) -> None:
    """Commands answered inline (NOOP, FETCH) or by the core alone (CAPABILITY, even before
    login) never wait, so a burst of them must still give the event loop back now and then
    (LOOP_SLICE, FEED_SLICE): a heartbeat on the loop keeps beating."""
    import asyncio
    import threading

    imap.deliver(MESSAGE_1)
    if burst == "inline":
        client = imap.login()
        client.select("INBOX")
        time.sleep(0.2)  # settled directory times: the commands below can run inline
        client.noop()
        commands = (b"NOOP", b"FETCH 1 (FLAGS)")
    else:
        client = imap.secure()  # not logged in
        commands = (b"CAPABILITY", b"CAPABILITY")
    gaps: list[float] = []
    beating = True

    async def heartbeat() -> None:
        last = time.perf_counter()
        while beating:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.run_coroutine_threadsafe(heartbeat(), imap.loop)
    sock = client.socket()
    count = 20000
    pipeline = b"".join(b"p%d %s\r\n" % (i, commands[i % 2]) for i in range(count))
    received = bytearray()
    last_tag = b"p%d OK" % (count - 1)

    def read_all() -> None:
        while last_tag not in received[-100:]:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    sock.sendall(pipeline)
    reader.join(60)
    beating = False
    beat.result(TIMEOUT)
    assert received.count(b" OK ") == count
    # Without slicing this burst held the loop for about half a second on a 2-core VM;
    # with it the longest gap is a few ms. The bound is loose for a loaded CI machine.
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps) * 1e3:.0f} ms"


def test_idle_follows_a_pipelined_select_to_the_new_folder(imap: ImapFixture) -> None:
    """DONE, SELECT and IDLE in one packet: the watch must move to the new folder (a stale
    watch would only notice the delivery at the 60 s fallback look)."""
    imap.service.idle_check_interval = 60.0
    client = imap.login()
    client.select("INBOX")
    sock, reader = client.socket(), client.file
    sock.sendall(b"A1 IDLE\r\n")
    assert reader.readline().startswith(b"+ ")
    sock.sendall(b"DONE\r\nA2 SELECT Junk\r\nA3 IDLE\r\n")
    while not reader.readline().startswith(b"+ "):
        pass
    deliver_to_maildir(imap.maildir / ".Junk", MESSAGE_1, hostname="mx")
    start = time.monotonic()
    assert reader.readline() == b"* 1 EXISTS\r\n"
    assert time.monotonic() - start < 10
    sock.sendall(b"DONE\r\n")
    while not reader.readline().startswith(b"A3 "):
        pass
    client.logout()


def test_a_refused_watch_means_polling_and_one_warning(
        imap: ImapFixture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """fs.inotify.max_user_watches reached: the session polls, and the log says so once."""
    import errno

    from mailroom.adapters import inotify

    def refuse(*_args: object) -> int:
        raise inotify.WatchError(errno.ENOSPC, "inotify_add_watch: No space left on device")

    monkeypatch.setattr(inotify.Watcher, "watch", refuse)
    imap.service.idle_poll = 0.05
    with caplog.at_level("WARNING", logger="mailroom.imap"):
        idlers = start_idling(imap, (b"A1", b"B1"))
        time.sleep(0.5)  # about ten polls each
        imap.deliver(MESSAGE_1)
        for client, _ in idlers:
            assert client.file.readline() == b"* 1 EXISTS\r\n"
    refused = [r for r in caplog.records if "refuses a watch" in r.getMessage()]
    assert len(refused) == 1
    for client, tag in idlers:
        client.socket().sendall(b"DONE\r\n")
        while not client.file.readline().startswith(tag):
            pass
        client.logout()
