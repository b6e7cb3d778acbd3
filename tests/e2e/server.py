"""Run a real `mailroom serve` in a subprocess on free loopback ports, for end-to-end tests.

Usage from a test module (pytest runs with --import-mode=importlib, pythonpath=["."]):

    from tests.e2e.server import MailroomServer, RawSMTP, mailroom_server, mailroom_server_factory

Importing the two fixtures into the test module makes them available there. `mailroom_server`
is an `init --demo` server with only the ports and the maillog set; `mailroom_server_factory`
is a callable taking main.cf edits (`factory(mynetworks="", message_size_limit="10000")`).
Teardown sends SIGTERM and fails the test if `serve` does not exit 0 within the time limit.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

HOST = "127.0.0.1"
HOSTNAME = "mail.example.org"
JOHN = "john@example.org"
PASSWORD = "summersun"
# The guide's string: base64("john@example.org\0john@example.org\0summersun").
GUIDE_AUTH_PLAIN = "am9obkBleGFtcGxlLm9yZwBqb2huQGV4YW1wbGUub3JnAHN1bW1lcnN1bg=="
START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0  # shutdown_timeout defaults to 10 s; leave headroom
CLI_TIMEOUT = 60.0


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def mailroom_cli(*args: str, timeout: float = CLI_TIMEOUT) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "mailroom", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_error_line(result: CliResult, fragment: str = "") -> None:
    """Non-zero exit, exactly one `mailroom: error:` line on stderr, no traceback."""
    assert result.code != 0, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{result.err}"
    assert lines[0].startswith("mailroom: error: "), result.err
    assert "Traceback" not in result.err
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Distinct ports the kernel considers free right now (bind to port 0, then release)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class MailroomServer:
    """One config dir (`init --demo`) and the `serve` process(es) started on it."""

    def __init__(self, base: Path, edits: dict[str, str] | None = None) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.config_dir = base / "etc"
        self.smtp_port, self.submission_port, self.submissions_port = free_ports(3)
        self.maillog = self.config_dir / "maillog"
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.stderr_path: Path | None = None
        self._stderr_files: list[Path] = []
        result = mailroom_cli("-c", str(self.config_dir), "init", "--demo", "--hostname", HOSTNAME)
        assert result.code == 0, result
        base_edits = {
            "smtp_listen": f"{HOST}:{self.smtp_port}",
            "submission_listen": f"{HOST}:{self.submission_port}",
            "submissions_listen": f"{HOST}:{self.submissions_port}",
            "imap_listen": "",
            "imaps_listen": "",
            "pop3_listen": "",
            "pop3s_listen": "",
            "maillog_file": str(self.maillog),
        }
        base_edits.update(edits or {})
        self.postconf(**base_edits)

    # -- configuration -------------------------------------------------------------
    def postconf(self, **edits: str) -> None:
        args = [f"{name}={value}" for name, value in edits.items()]
        result = mailroom_cli("-c", str(self.config_dir), "postconf", "-e", *args)
        assert result.code == 0, result

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> CliResult:
        return mailroom_cli("-c", str(self.config_dir), *args, timeout=timeout)

    @property
    def cert(self) -> Path:
        return self.config_dir / "tls" / "cert.pem"

    @property
    def queue_dir(self) -> Path:
        return self.config_dir / "queue"

    def maildir(self, address: str = JOHN) -> Path:
        local, domain = address.split("@")
        return self.config_dir / "vmail" / domain / local / "Maildir"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server certificate against cert.pem."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    # -- process -------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already started"
        self.generation += 1
        self.stderr_path = self.base / f"serve-{self.generation}.stderr"
        self._stderr_files.append(self.stderr_path)
        with (
            open(self.stderr_path, "wb") as err,
            open(self.base / f"serve-{self.generation}.stdout", "wb") as out,
        ):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailroom", "-c", str(self.config_dir), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        pending = [self.smtp_port, self.submission_port, self.submissions_port]
        while pending:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"mailroom serve exited with {self.proc.returncode} during start-up:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mailroom serve did not accept on {pending} within {timeout}s:\n{self.stderr()}"
                )
            if port_accepts(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait (bounded); if stuck, SIGKILL and fail."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            pytest.fail(
                f"mailroom serve ignored SIGTERM for {timeout}s; killed:\n{self.stderr()[-3000:]}"
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            pytest.fail(f"mailroom serve did not exit within {timeout}s; killed")

    # -- observation ---------------------------------------------------------------
    def stderr(self) -> str:
        return "".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")
            for p in self._stderr_files
            if p.exists()
        )

    def log(self) -> str:
        """The maillog (falls back to the captured stderr if the file is absent)."""
        if self.maillog.exists():
            return self.maillog.read_text(errors="replace")
        return self.stderr()

    def wait_for_log(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def maildir_files(self, address: str = JOHN) -> list[Path]:
        md = self.maildir(address)
        files: list[Path] = []
        for sub in ("new", "cur"):
            d = md / sub
            if d.is_dir():
                files.extend(p for p in d.iterdir() if p.is_file())
        return sorted(files)

    def wait_for_maildir(
        self, count: int, timeout: float = 10.0, address: str = JOHN
    ) -> list[Path]:
        """Poll until at least `count` messages are in new/ or cur/; fail on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.maildir_files(address)
            if len(files) >= count:
                return files
            if time.monotonic() > deadline:
                pytest.fail(
                    f"expected {count} message(s) in {self.maildir(address)}, found {len(files)} after {timeout}s;"
                    f" queue: {self.queue_files()}\nlog tail:\n{self.log()[-2000:]}"
                )
            time.sleep(0.05)

    def settle(self, seconds: float = 0.7) -> None:
        """A short bounded pause for asynchronous deliveries that should NOT happen."""
        time.sleep(seconds)

    def messages(self, address: str = JOHN) -> list[EmailMessage]:
        out = []
        for path in self.maildir_files(address):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            out.append(msg)  # type: ignore[arg-type]
        return out

    def queue_files(self) -> list[Path]:
        """Messages waiting in the queue (active/), not recycled spare files."""
        active = self.queue_dir / "active"
        if not active.is_dir():
            return []
        return sorted(p for p in active.iterdir() if p.is_file() and "." not in p.name)


# -- a minimal raw SMTP client (for things smtplib hides: pipelining, injection, smuggling) --


class RawSMTP:
    def __init__(self, port: int, host: str = HOST, timeout: float = 10.0) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.transcript: list[str] = []

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append("C: " + data.decode(errors="replace"))
        self.sock.sendall(data)

    def _readline(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed connection; transcript:\n{self.dump()}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: (code, [text of each line])."""
        lines = []
        while True:
            raw = self._readline().decode(errors="replace")
            self.transcript.append("S: " + raw)
            assert len(raw) >= 3 and raw[:3].isdigit(), f"bad reply line {raw!r}\n{self.dump()}"
            lines.append(raw[4:])
            if len(raw) == 3 or raw[3] == " ":
                return int(raw[:3]), lines

    def reply_line(self) -> str:
        """The whole last line of a reply, as `CODE TEXT`."""
        code, lines = self.reply()
        return f"{code} {lines[-1]}"

    def cmd(self, line: str) -> tuple[int, list[str]]:
        self.send(line + "\r\n")
        return self.reply()

    def cmd_line(self, line: str) -> str:
        self.send(line + "\r\n")
        return self.reply_line()

    def greeting(self) -> str:
        return self.reply_line()

    def ehlo(self, name: str = "client.example.net") -> list[str]:
        code, lines = self.cmd(f"EHLO {name}")
        assert code == 250, (code, lines, self.dump())
        return lines

    def pending(self, wait: float = 0.3) -> bytes:
        """Whatever the server sent that we have not read (waits up to `wait`)."""
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                r = [self.sock]
            else:
                r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        line = self.cmd_line("STARTTLS")
        assert line.startswith("220 "), f"{line}\n{self.dump()}"
        assert not self.buf, f"unread plaintext after STARTTLS reply: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.transcript.append("-- TLS established")

    def read_all(self, timeout: float = 10.0) -> list[str]:
        """Read reply lines until the server closes the connection (bounded)."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                line = self._readline().decode(errors="replace")
            except (ConnectionError, OSError):
                if self.buf:
                    lines.append(self.buf.decode(errors="replace"))
                    self.buf = b""
                break
            self.transcript.append("S: " + line)
            lines.append(line)
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def dump(self) -> str:
        return "\n".join(self.transcript)

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def auth_plain(user: str = JOHN, password: str = PASSWORD) -> str:
    return base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def mailroom_server_factory(tmp_path: Path) -> Iterator[Callable[..., MailroomServer]]:
    """`factory(**main_cf_edits)` → a started MailroomServer; each is stopped (SIGTERM, exit 0) at teardown."""
    servers: list[MailroomServer] = []

    def factory(_start: bool = True, **edits: str) -> MailroomServer:
        server = MailroomServer(tmp_path / f"s{len(servers)}", edits)
        servers.append(server)
        if _start:
            server.start()
        return server

    yield factory
    problems = []
    for server in servers:
        if server.proc is None:
            continue
        if server.proc.poll() is not None:
            continue  # the test stopped or killed it and checked the outcome itself
        code = server.terminate()
        if code != 0:
            problems.append(f"serve exited {code} on SIGTERM:\n{server.stderr()[-3000:]}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def mailroom_server(mailroom_server_factory: Callable[..., MailroomServer]) -> MailroomServer:
    return mailroom_server_factory()
