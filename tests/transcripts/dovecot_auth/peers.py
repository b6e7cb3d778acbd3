"""Private Debian Postfix and Dovecot instances for the Dovecot-auth captures and interop tests.

Each peer gets its own directories under a temporary base, loopback-only listeners on
high ports, `chroot = n` and its own log file (docs: /work/shared/spec/peers.md), so a
test never touches the system's mail services. Used by capture.py (to record the real
programs' exchange into the fixtures) and by tests/interop/test_dovecot_auth.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

START_TIMEOUT = 15.0

# Services of Debian's master.cf that a relaying smtpd needs, all with chroot = n.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def peer_missing(*programs: str) -> str:
    """A one-line skip reason when a peer program is absent, else ""."""
    for program in programs:
        if shutil.which(program) is None and not Path("/usr/sbin", program).exists():
            return f"{program} not installed (apt-get install postfix dovecot-core)"
    if os.geteuid() != 0:
        return "private Postfix/Dovecot instances need root"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def self_signed(base: Path, hostname: str = "mail.example.org") -> tuple[Path, Path]:
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={hostname}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def allow_traverse(path: Path) -> None:
    """Daemons drop to their own users (postfix, dovecot): let them through to `path`."""
    for d in (path, *path.parents):
        if d == Path("/"):
            break
        with contextlib.suppress(OSError):
            os.chmod(d, os.stat(d).st_mode | 0o011)


@contextlib.contextmanager
def peer_base(prefix: str = "mailroom-peer-") -> Iterator[Path]:
    """A private directory outside pytest's basetemp, which pytest resets to 0700 at any
    time (another session starting), locking the peers' unprivileged processes out."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


class PrivateDovecot:
    """Dovecot's auth service only, with passwd-file users, on a UNIX socket."""

    def __init__(self, base: Path, users: dict[str, str], failure_delay: str = "0s") -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.socket = base / "auth-client"
        self.log = base / "dovecot.log"
        self.conf = base / "dovecot.conf"
        allow_traverse(base)
        (base / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
        self.conf.write_text(f"""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {self.log}
protocols = none
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
auth_failure_delay = {failure_delay}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/home/%u
}}
service auth {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
}}
""")

    def start(self) -> None:
        # The daemon keeps inherited pipes open: give it files, not pipes.
        with open(self.base / "dovecot.stderr", "wb") as err:
            subprocess.run(
                ["dovecot", "-c", str(self.conf)],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=30,
            )
        wait_for(self.socket.exists, "the Dovecot auth socket")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["dovecot", "-c", str(self.conf), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
        pidfile = self.base / "run" / "master.pid"
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not pidfile.exists(), "Dovecot to stop", 10)


class PrivatePostfix:
    """An smtpd on 127.0.0.1:port configured as the ISPmail guide's authenticated SMTP."""

    def __init__(self, base: Path, settings: dict[str, str]) -> None:
        self.base = base
        self.etc = base / "etc"
        self.spool = base / "spool"
        self.maillog = base / "maillog"
        self.port = free_port()
        for d in (self.etc, self.spool, base / "data"):
            d.mkdir(parents=True, exist_ok=True)
        # smtpd runs as postfix: it must reach its queue directory (its cwd) and the data dir.
        allow_traverse(base)
        shutil.chown(base / "data", "postfix")
        cert, key = self_signed(base)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(base / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mail.example.org",
            "mydomain": "example.org",
            "mydestination": "localhost",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(base),
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            "relayhost": f"[127.0.0.1]:{free_port()}",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            # The guide, verbatim:
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": "private/auth",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            "smtpd_recipient_restrictions": "permit_mynetworks permit_sasl_authenticated reject_unauth_destination",
        }
        main.update(settings)
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.etc / "master.cf").write_text(_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        for name in ("dynamicmaps.cf", "postfix-files"):
            if Path("/etc/postfix", name).exists():
                shutil.copy(Path("/etc/postfix", name), self.etc / name)
        for sub in ("dynamicmaps.cf.d", "postfix-files.d"):
            if Path("/etc/postfix", sub).is_dir():
                shutil.copytree(Path("/etc/postfix", sub), self.etc / sub, dirs_exist_ok=True)

    @property
    def private(self) -> Path:
        """Where the guide's `smtpd_sasl_path = private/auth` points."""
        path = self.spool / "private"
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, "postfix")
        path.chmod(0o700)
        return path

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The daemon keeps inherited pipes open: collect its output in a file, not a pipe.
        out = self.base / "postfix.out"
        with open(out, "w") as sink:
            proc = subprocess.run(
                ["postfix", "-c", str(self.etc), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
            )
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), "")

    def start(self) -> None:
        result = self.postfix("start")
        if result.returncode != 0:
            log = self.maillog.read_text()[-1500:] if self.maillog.exists() else ""
            raise RuntimeError(f"postfix start failed: {result.stdout.strip()}\n{log}")

        def accepting() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return True
            return False

        wait_for(accepting, "Postfix smtpd")

    def stop(self) -> None:
        """`postfix stop`, then wait until `postfix status` says it is gone.

        (Postfix never removes master.pid, so waiting for that file would always time out.)
        """
        self.postfix("stop")
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: self.postfix("status").returncode != 0, "Postfix to stop", 10)
        self.postfix("abort")  # harmless when already gone


class RecordingProxy:
    """A UNIX socket that relays to another one and records each side's lines."""

    def __init__(self, listen: Path, target: Path, owner: str | None = None) -> None:
        self.listen = listen
        self.target = target
        self.owner = owner
        self.sessions: list[list[tuple[str, bytes]]] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.listen))
        if self.owner:
            shutil.chown(self.listen, self.owner)
        os.chmod(self.listen, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record: list[tuple[str, bytes]] = []
        self.sessions.append(record)
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.target))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tag: str) -> None:
            while line := await src.readline():
                record.append((tag, line))
                dst.write(line)
                await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(
            pump(reader, up_writer, "C"), pump(up_reader, writer, "S"), return_exceptions=True
        )
