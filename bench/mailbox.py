"""Mailbox figures for `make bench`: IMAP and POP3 on a 10,000-message Maildir.

Why beside Dovecot: the target is Dovecot's own speed on the same machine and the
same mail, so both servers get identical copies (``cp -a``) of one generated Maildir
(bench/mail_corpus.py), each builds its own dovecot-uidlist and indexes on first
access, and the same blocking client (bench/mail_clients.py) times both, taking
turns run by run so that noise from the machine hits both alike.

Per run and server: IMAP on a fresh connection — connect to SELECT INBOX's tagged OK
(LOGIN+SELECT), ``UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)``, then 100 full bodies
(UIDs spread over the mailbox) twice: as one ``UID FETCH <set> BODY.PEEK[]`` and as
100 commands one after the other (a round trip each, as a client opening messages);
POP3 on another fresh connection — connect through USER/PASS to STAT's reply (and
STAT alone), UIDL, RETR 1..1000 one after the other (no pipelining), QUIT. The first
run builds the indexes and is reported on its own as "cold"; the figures are the
best of the next runs, figure by figure. The answers are checked
against what was generated (counts, RFC822.SIZE sum, flags, body and RETR sizes) and
against each other (UID order). Both servers listen on 127.0.0.1 only, on free ports
with plaintext login allowed (no TLS on either side); every server is stopped and
every wait is bounded.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.mail_clients import Imap, Pop3, ProtocolError, exists_of, summarize_fetch
from bench.mail_corpus import Corpus, generate

HOST = "127.0.0.1"
USER = "john@example.org"  # what `mailroom init --demo` creates
PASSWORD = "summersun"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MAILROOM_OFF = ("smtp_listen", "submission_listen", "submissions_listen", "imaps_listen", "pop3s_listen")

# (key, label) of each figure, in print order.
FIGURES = (
    ("login_select_ms", "imap  LOGIN+SELECT"),
    ("fetch_all_ms", "imap  UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)"),
    ("bodies_ms", "imap  UID FETCH {bodies} UIDs BODY.PEEK[] (one command)"),
    ("bodies_each_ms", "imap  {bodies} x UID FETCH <uid> BODY.PEEK[] (one by one)"),
    ("pop3_login_stat_ms", "pop3  USER/PASS+STAT (from connect)"),
    ("stat_ms", "pop3  STAT alone"),
    ("uidl_ms", "pop3  UIDL"),
    ("retr_ms", "pop3  RETR 1..{retr} (sequential)"),
)


class MailboxBenchError(Exception):
    """A server could not be set up or started (the message says which and why)."""


@dataclass
class Run:
    """One pass against one server: timings (ms) and what the answers contained."""

    login_select_ms: float = 0.0
    fetch_all_ms: float = 0.0
    bodies_ms: float = 0.0
    bodies_each_ms: float = 0.0
    pop3_login_stat_ms: float = 0.0
    stat_ms: float = 0.0
    uidl_ms: float = 0.0
    retr_ms: float = 0.0
    exists: int | None = None
    fetch_responses: int = 0
    size_sum: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    bodies: int = 0
    body_bytes: int = 0
    body_bytes_expected: int = 0
    bodies_each: int = 0
    body_bytes_each: int = 0
    stat: str = ""
    uidl_lines: int = 0
    retr: int = 0
    retr_bytes: int = 0
    retr_bytes_expected: int = 0
    uid_order: list[int] = field(default_factory=list, repr=False)  # POP3 UIDL's UID parts


@dataclass
class ServerResult:
    """All runs of one server."""

    name: str
    cold: Run | None = None
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    def best(self) -> dict[str, float] | None:
        """The fastest of the warm runs, figure by figure."""
        if not self.runs:
            return None
        return {key: min(getattr(r, key) for r in self.runs) for key, _ in FIGURES}


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    """The end of a log file, for error reports."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_greeting(port: int, prefix: bytes, alive: Callable[[], bool], timeout: float) -> bool:
    """Poll until ``port`` greets with ``prefix`` while ``alive()`` (bounded).

    The greeting check matters: another program on the port would pass for our server.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0) as s:
            s.settimeout(2.0)
            if s.recv(512).startswith(prefix):
                return True
        time.sleep(0.05)
    return False


def copy_maildir(src: Path, dest: Path) -> None:
    """``cp -a``: same names, bytes and mtimes for each server, no shared index files."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["cp", "-a", str(src), str(dest)], capture_output=True, text=True,
                       timeout=300, check=False)
    if r.returncode != 0:
        raise MailboxBenchError(f"cp -a {src} {dest}: {r.stderr.strip()}")


class MailroomServer:
    """``mailroom serve`` with only IMAP and POP3 on free loopback ports."""

    name = "mailroom"

    def __init__(self, tmp: Path, corpus: Corpus, scheme: str) -> None:
        self.cfg = tmp / "mailroom"
        self.scheme = scheme
        self.vmail = tmp / "mailroom-vmail"
        self.log = tmp / "mailroom-mailbox.log"
        self.corpus = corpus
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _admin(self, *args: str, stdin: str | None = None) -> None:
        r = subprocess.run([sys.executable, "-m", "mailroom", "-c", str(self.cfg), *args],
                           input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if r.returncode != 0:
            raise MailboxBenchError(f"mailroom {args[0]} failed: {r.stderr.strip() or r.stdout.strip()}")

    def start(self) -> None:
        """init --demo, the Maildir copy, postconf -e, serve; wait for both greetings.

        disable_plaintext_auth = no because mailroom, unlike Dovecot, does not exempt
        loopback; Dovecot gets the same setting, so neither does TLS.
        """
        self._admin("init", "--demo", "--hostname", "bench.example.org")
        self._admin("user", "passwd", "--password-stdin", "--scheme", self.scheme, USER,
                    stdin=PASSWORD + "\n")
        copy_maildir(self.corpus.path, self.vmail / "example.org" / "john" / "Maildir")
        self._admin("postconf", "-e", *(f"{name}=" for name in MAILROOM_OFF),
                    f"imap_listen={HOST}:{self.imap_port}", f"pop3_listen={HOST}:{self.pop3_port}",
                    f"virtual_mailbox_base={self.vmail}", "disable_plaintext_auth=no",
                    "login_client_connection_count_limit=0")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailroom", "-c", str(self.cfg), "serve"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        proc = self.proc
        for port, prefix in ((self.imap_port, b"* OK"), (self.pop3_port, b"+OK")):
            if not wait_greeting(port, prefix, lambda: proc.poll() is None, START_TIMEOUT):
                raise MailboxBenchError(
                    f"mailroom serve did not greet on {HOST}:{port} within {START_TIMEOUT:.0f}s "
                    f"(exit {proc.poll()}); log tail:\n{tail(self.log)}")

    def stop(self) -> int | None:
        """SIGTERM, bounded wait, then SIGKILL; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        return proc.returncode


def dovecot_version() -> str | None:
    """``dovecot --version`` when Dovecot is on PATH, else None."""
    exe = shutil.which("dovecot")
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
        return r.stdout.strip().split()[0] if r.stdout.strip() else "unknown"
    return "unknown"


def allow_traverse(path: Path, top: Path) -> None:
    """Dovecot's login and auth processes drop to dovenull/dovecot: let them through.

    Adds the missing group/other search (x) bits to ``path`` and its parents up to
    ``top`` (mkdtemp makes the bench's temp directory 0700); nothing above ``top``.
    """
    for d in (path, *path.parents):
        mode = os.stat(d).st_mode
        if mode & 0o011 != 0o011:
            with contextlib.suppress(OSError):
                os.chmod(d, mode | 0o011)
        if d == top:
            break


class DovecotServer:
    """A private Dovecot (imap + pop3) on free loopback ports.

    As root, the mail processes run as nobody:nogroup and the Maildir copy is chowned
    to them: Dovecot refuses a userdb uid of 0 outright ("userdb returned 0 as uid"),
    whatever first_valid_uid says. As another user, mail, login and internal
    processes all run as that user and the login processes are not chrooted (only
    root may chroot; anvil too). Who owns the files makes no difference to the figures.
    """

    name = "dovecot"

    def __init__(self, tmp: Path, corpus: Corpus, password_hash: str) -> None:
        self.tmp = tmp
        self.base = tmp / "dovecot"
        self.password_hash = password_hash
        self.home = self.base / "home"
        self.conf = self.base / "dovecot.conf"
        self.log = self.base / "dovecot.log"
        self.corpus = corpus
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.started = False

    def _ids(self) -> tuple[int, int]:
        """(uid, gid) of the mail processes: nobody:nogroup as root, else ourselves."""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid
        return os.getuid(), os.getgid()

    def _config(self) -> str:
        uid, gid = self._ids()
        unprivileged = ""
        if os.geteuid() != 0:
            me = pwd.getpwuid(uid).pw_name
            group = grp.getgrgid(gid).gr_name
            unprivileged = (f"default_login_user = {me}\ndefault_internal_user = {me}\n"
                            f"default_internal_group = {group}\n"
                            + "".join(f"service {name} {{\n  chroot =\n}}\n"
                                      for name in ("anvil", "imap-login", "pop3-login")))
        return f"""\
base_dir = {self.base}/run
state_dir = {self.base}/state
log_path = {self.log}
protocols = imap pop3
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{self.home}/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.base}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.home}
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
{unprivileged}"""

    def start(self) -> None:
        """Config, users file, Maildir copy, ``dovecot -c``; wait for both greetings."""
        self.base.mkdir(parents=True)
        copy_maildir(self.corpus.path, self.home / "Maildir")
        uid, gid = self._ids()
        if os.geteuid() == 0:
            for d, _dirs, files in os.walk(self.home):
                os.chown(d, uid, gid)
                for name in files:
                    os.chown(os.path.join(d, name), uid, gid)
        (self.base / "users").write_text(f"{USER}:{self.password_hash}::::::\n")
        self.conf.write_text(self._config())
        # Up to the bench's own directory in the system's temp dir (or just `tmp`).
        tmproot = Path(tempfile.gettempdir()).resolve()
        base = self.base.resolve()
        allow_traverse(base, next((d for d in base.parents if d.parent == tmproot), self.tmp.resolve()))
        self.started = True  # from here on stop() must run, even if the start times out
        # The daemon keeps inherited pipes open: give it files, not pipes.
        with open(self.base / "dovecot.stderr", "wb") as err:
            r = subprocess.run(["dovecot", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=subprocess.STDOUT, timeout=30, check=False)
        if r.returncode != 0:
            raise MailboxBenchError(f"dovecot -c {self.conf} exited {r.returncode}: "
                                    f"{tail(self.base / 'dovecot.stderr', 5)} {tail(self.log, 5)}")
        pidfile = self.base / "run" / "master.pid"
        for port, prefix in ((self.imap_port, b"* OK"), (self.pop3_port, b"+OK")):
            if not wait_greeting(port, prefix, pidfile.exists, START_TIMEOUT):
                raise MailboxBenchError(f"dovecot did not greet on {HOST}:{port}; log tail:\n{tail(self.log)}")

    def stop(self) -> None:
        """``dovecot -c FILE stop``, then wait (bounded) for master.pid to go; kill by pid if not."""
        if not self.started:
            return
        self.started = False
        pidfile = self.base / "run" / "master.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["dovecot", "-c", str(self.conf), "stop"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and pidfile.exists():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # the master we started, by its id


def password_hash(scheme: str) -> str:
    """John's password as ``{SCHEME}...`` for Dovecot's passwd-file, hashed by ``mailroom pw``.

    Both servers then pay the same scheme's cost at each login: PLAIN by default, as
    the issue's Dovecot figures were taken; the demo's ARGON2ID (m=64 MiB, t=3)
    would add a hundred-odd milliseconds to every LOGIN and PASS on either server.
    """
    if scheme.upper() == "PLAIN":
        return f"{{PLAIN}}{PASSWORD}"
    r = subprocess.run([sys.executable, "-m", "mailroom", "pw", "-s", scheme, "-p", PASSWORD],
                       capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0 or not r.stdout.startswith("{"):
        raise MailboxBenchError(f"mailroom pw -s {scheme} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def spread(uids: list[int], n: int) -> list[int]:
    """``n`` UIDs evenly spread from the first to the last."""
    if len(uids) <= n:
        return list(uids)
    return [uids[round(i * (len(uids) - 1) / (n - 1))] for i in range(n)] if n > 1 else uids[:1]


def measure(imap_port: int, pop3_port: int, bodies: int, retr: int) -> Run:
    """One pass: IMAP (LOGIN+SELECT, FETCH 1:*, bodies) then POP3 (STAT, UIDL, RETR)."""
    run = Run()
    clock = time.perf_counter
    t0 = clock()
    imap = Imap(HOST, imap_port)
    try:
        imap.command(f"LOGIN {USER} {PASSWORD}", keep=False)
        select = imap.command("SELECT INBOX")
        t1 = clock()
        fetch = imap.command("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
        t2 = clock()
        summary = summarize_fetch(fetch)
        pick = spread(sorted(summary.uids), bodies)
        t3 = clock()
        got = imap.command(f"UID FETCH {','.join(map(str, pick))} BODY.PEEK[]")
        t4 = clock()
        each = [imap.command(f"UID FETCH {uid} BODY.PEEK[]") for uid in pick]
        t5 = clock()
    finally:
        imap.logout()
    run.login_select_ms, run.fetch_all_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    run.bodies_ms, run.bodies_each_ms = (t4 - t3) * 1e3, (t5 - t4) * 1e3
    run.bodies_each = sum(b" FETCH (" in r for e in each for r in e.untagged)
    run.body_bytes_each = sum(e.literal_bytes for e in each)
    run.exists = exists_of(select)
    run.fetch_responses = summary.responses
    run.size_sum = sum(summary.sizes.values())
    run.flags = summary.flags
    run.bodies = sum(b" FETCH (" in r for r in got.untagged)
    run.body_bytes = got.literal_bytes
    run.body_bytes_expected = sum(summary.sizes.get(u, 0) for u in pick)

    t0 = clock()
    pop = Pop3(HOST, pop3_port)
    try:
        pop.command(f"USER {USER}")
        pop.command(f"PASS {PASSWORD}")
        ts = clock()
        stat = pop.command("STAT")
        t1 = clock()
        uidl = pop.multiline("UIDL")
        t2 = clock()
        count = int(stat.split()[1])
        n = min(retr, count)
        run.retr_bytes = sum(pop.retr_size(i) for i in range(1, n + 1))
        t3 = clock()
        listing = pop.multiline("LIST")  # not timed: the expected RETR sizes
    finally:
        pop.quit()
    run.pop3_login_stat_ms, run.stat_ms = (t1 - t0) * 1e3, (t1 - ts) * 1e3
    run.uidl_ms, run.retr_ms = (t2 - t1) * 1e3, (t3 - t2) * 1e3
    run.stat = stat.decode(errors="replace").strip()
    lines = uidl.decode(errors="replace").split("\r\n")[:-1]
    run.uidl_lines = len(lines)
    run.uid_order = [int(line.split()[1][:8], 16) if len(line.split()) > 1 else -1 for line in lines]
    run.retr = n
    sizes = [int(line.split()[1]) for line in listing.decode().split("\r\n")[:-1]]
    run.retr_bytes_expected = sum(sizes[:n])
    return run


def check(run: Run, corpus: Corpus, bodies: int, cold: bool) -> list[str]:
    """What in one run's answers disagrees with the generated Maildir."""
    n = corpus.messages
    problems = []
    if run.exists != n:
        problems.append(f"SELECT EXISTS {run.exists} != {n}")
    if run.fetch_responses != n:
        problems.append(f"UID FETCH 1:* gave {run.fetch_responses} FETCH responses, not {n}")
    if run.size_sum != corpus.bytes_crlf:
        problems.append(f"sum of RFC822.SIZE {run.size_sum} != {corpus.bytes_crlf} (sum of W=)")
    if cold:  # later runs see the \Seen flags that POP3 RETR may have set
        for flag, want in (("\\Seen", corpus.seen), ("\\Flagged", corpus.flagged),
                           ("\\Answered", corpus.answered)):
            if run.flags.get(flag, 0) != want:
                problems.append(f"{flag} on {run.flags.get(flag, 0)} messages, not {want}")
    if run.bodies != min(bodies, n) or run.body_bytes != run.body_bytes_expected:
        problems.append(f"BODY.PEEK[]: {run.bodies} responses, {run.body_bytes} bytes "
                        f"(RFC822.SIZE says {run.body_bytes_expected})")
    if run.bodies_each != run.bodies or run.body_bytes_each != run.body_bytes_expected:
        problems.append(f"BODY.PEEK[] one by one: {run.bodies_each} responses, {run.body_bytes_each} bytes "
                        f"(RFC822.SIZE says {run.body_bytes_expected})")
    if run.stat.split()[1:3] != [str(n), str(corpus.bytes_crlf)]:
        problems.append(f"STAT {run.stat!r}, expected +OK {n} {corpus.bytes_crlf}")
    if run.uidl_lines != n or len(set(run.uid_order)) != n:
        problems.append(f"UIDL: {run.uidl_lines} lines, {len(set(run.uid_order))} distinct UIDs")
    if run.retr_bytes != run.retr_bytes_expected:
        problems.append(f"RETR 1..{run.retr}: {run.retr_bytes} bytes, LIST says {run.retr_bytes_expected}")
    return problems


def _ms(value: float | None) -> str:
    return f"{value:8.1f} ms" if value is not None else "     n/a   "


def figure_line(label: str, mine: float | None, theirs: float | None, with_dovecot: bool) -> str:
    """``imap  LOGIN+SELECT  mailroom 52.1 ms  dovecot 31.0 ms  ratio 1.68``."""
    line = f"{label:<62} mailroom {_ms(mine)}"
    if with_dovecot:
        r = f"{mine / theirs:.2f}" if mine is not None and theirs else "n/a"
        line += f"  dovecot {_ms(theirs)}  ratio {r}"
    return line


def run_mailbox(tmp: Path, messages: int = 10000, seed: int = 1, runs: int = 3, bodies: int = 100,
                retr: int = 1000, dovecot: bool = True, scheme: str = "PLAIN") -> tuple[dict[str, Any], bool]:
    """Generate, start both servers, take turns measuring, stop both; (report, mailroom ok).

    Prints its lines as it goes. Dovecot is skipped with one line when it is not on
    PATH (or dovecot=False); when it fails to start, its error is printed and the
    mailroom figures still count.
    """
    t = time.monotonic()
    corpus = generate(tmp / "corpus" / "Maildir", messages, seed)
    print(f"mailbox: {corpus.messages} messages ({corpus.bytes_lf / 1e6:.1f} MB, {corpus.in_new} in new/, "
          f"seed {seed}) generated in {time.monotonic() - t:.1f} s; best of {runs} runs after a cold one",
          flush=True)
    report: dict[str, Any] = {"corpus": {k: v for k, v in asdict(corpus).items() if k != "path"},
                              "runs": runs, "bodies": bodies, "retr": retr, "password_scheme": scheme}
    version = dovecot_version() if dovecot else None
    servers: list[MailroomServer | DovecotServer] = [MailroomServer(tmp, corpus, scheme)]
    if version is None:
        note = "dovecot: not on PATH (apt install dovecot-imapd dovecot-pop3d), its column skipped" \
            if dovecot else "dovecot: skipped (--no-dovecot)"
        print(note)
        report["dovecot_note"] = note
    else:
        servers.append(DovecotServer(tmp, corpus, password_hash(scheme)))
    results = {s.name: ServerResult(s.name) for s in servers}
    try:
        for server in list(servers):
            try:
                server.start()
            except (MailboxBenchError, OSError, subprocess.SubprocessError) as exc:
                if server.name == "mailroom":
                    raise
                print(f"dovecot {version}: failed to start, its column skipped: {exc}")
                results[server.name].error = f"start: {exc}"
                server.stop()
                servers.remove(server)
        both = len(servers) > 1
        print("  ".join(f"{s.name} imap {s.imap_port} pop3 {s.pop3_port}" for s in servers)
              + (f"; dovecot {version}" if both else "")
              + f"; plaintext LOGIN/USER+PASS, no TLS; password {{{scheme.upper()}}}"
              + (" on both" if both else ""), flush=True)
        for i in range(runs + 1):
            for server in servers:
                res = results[server.name]
                if res.error:
                    continue
                try:
                    run = measure(server.imap_port, server.pop3_port, bodies, retr)
                except (ProtocolError, OSError, ValueError, IndexError) as exc:
                    res.error = f"run {i}: {type(exc).__name__}: {exc}"
                    time.sleep(0.5)  # the server's log line about it may still be on its way
                    print(f"{server.name}: error in run {i}: {exc}; log tail:\n{tail(server.log, 10)}",
                          flush=True)
                    continue
                if i == 0:
                    res.cold = run
                else:
                    res.runs.append(run)
        mailroom_exit = servers[0].stop()
    finally:
        for server in servers:
            server.stop()
    return _report(report, results, corpus, bodies, min(retr, messages), mailroom_exit, version is not None)


def _report(report: dict[str, Any], results: dict[str, ServerResult], corpus: Corpus, bodies: int,
            retr: int, mailroom_exit: int | None, dovecot_wanted: bool) -> tuple[dict[str, Any], bool]:
    """Print the figure lines and checks; fill in the JSON report."""
    mr, dc = results["mailroom"], results.get("dovecot")
    show_dc = dovecot_wanted and dc is not None and (dc.cold is not None or bool(dc.runs))
    for title, pick in (("cold, first access builds the indexes", lambda r: asdict(r.cold) if r.cold else None),
                        ("best of warm runs", lambda r: r.best())):
        print(f"-- {title}:")
        mine, theirs = pick(mr), pick(dc) if dc else None
        for key, label in FIGURES:
            label = label.format(bodies=bodies, retr=retr) + (" (cold)" if "cold" in title else "")
            print(figure_line(label, mine.get(key) if mine else None,
                              theirs.get(key) if theirs else None, show_dc))
    ok = mr.error is None and mr.cold is not None and bool(mr.runs)
    for res in filter(None, (mr, dc)):
        problems = check(res.cold, corpus, bodies, cold=True) if res.cold else []
        for i, run in enumerate(res.runs, 1):
            problems += [f"run {i}: {p}" for p in check(run, corpus, bodies, cold=False)]
        if res.error:
            problems.append(res.error)
        print(f"checks {res.name}: " + ("ok (counts, sizes, flags, bodies, STAT, UIDL, RETR)"
                                          if not problems else "; ".join(problems[:6])))
        report[f"{res.name}_problems"] = problems
        if res.name == "mailroom" and problems:
            ok = False
    if mr.runs and dc and dc.runs:
        same = mr.runs[0].uid_order == dc.runs[0].uid_order
        body_same = mr.runs[0].body_bytes == dc.runs[0].body_bytes
        print(f"checks mailroom vs dovecot: UID order {'same' if same else 'DIFFERS'}, "
              f"{bodies} bodies {'same size' if body_same else 'DIFFER in size'}")
        report["same_uid_order"] = same
        report["same_body_bytes"] = body_same
        best_m, best_d = mr.best(), dc.best()
        if best_m and best_d:
            report["ratio_mailroom_over_dovecot"] = {
                k: (best_m[k] / best_d[k] if best_d[k] else None) for k, _ in FIGURES}
    if mailroom_exit not in (0, None):
        print(f"warning: mailroom exited {mailroom_exit} on SIGTERM")
    report["mailroom_exit"] = mailroom_exit
    for res in filter(None, (mr, dc)):
        report[res.name] = {
            "cold": {k: getattr(res.cold, k) for k, _ in FIGURES} if res.cold else None,
            "best": res.best(),
            "runs": [{k: getattr(r, k) for k, _ in FIGURES} for r in res.runs],
            "error": res.error,
        }
    return report, ok
