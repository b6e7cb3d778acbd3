"""Dovecot's auth protocol over UNIX sockets: a server for a real Postfix, a client of a real Dovecot.

`DovecotAuthServer` is `auth_listen`: Postfix with `smtpd_sasl_type = dovecot` and
`smtpd_sasl_path` pointing here asks mailroom's AuthBackend, with the same failure
delay, AUTH rate limit and log lines as mailroom's own SMTP AUTH. `DovecotAuthClient`
is an AuthBackend for `smtpd_sasl_type = dovecot`: it asks a Dovecot auth socket.
Both move bytes only; the protocol lives in mailroom.sasl.dovecot_codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from mailroom.policy.anvil import Anvil
from mailroom.runtime.log import get_logger
from mailroom.sasl import dovecot_codec as codec
from mailroom.sasl.backend import AuthBackend, AuthOutcome
from mailroom.wire.errors import ProtocolError, RemoteProtocolError

log = get_logger("auth")

READ_SIZE = 65536
HANDSHAKE_TIMEOUT = 10.0  # Postfix sends VERSION and CPID right after connecting
IDLE_TIMEOUT = 3600.0  # Postfix keeps its connection for the life of an smtpd process
WRITE_TIMEOUT = 30.0  # a client that stops reading its answers is dropped
MAX_CONNECTIONS = 4096  # beyond this, new connections are closed at once (fd exhaustion)
CLIENT_TIMEOUT = 30.0  # Dovecot's own failure delay is 2 s, its penalty up to 15 s
MAX_CREDENTIAL = 1024  # longer names/passwords are not worth a round trip


def _who(remote_ip: str) -> str:
    """Postfix's `HOST[IP]`; the auth protocol carries no host name."""
    return f"unknown[{remote_ip or 'unknown'}]"


class DovecotAuthServer:
    """The auth_listen socket: one task per connection, one per request being checked."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: int,
        backend: AuthBackend,
        *,
        user: str | int | None = None,
        group: str | int | None = None,
        failure_delay: float = 1.0,
        anvil: Anvil | None = None,
        auth_rate_limit: int = 0,
        rate_exempt: Callable[[str], bool] = lambda ip: False,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.user = user
        self.group = group
        # Public so a reload can swap them without restarting the listener.
        self.backend = backend
        self.failure_delay = failure_delay
        self.anvil = anvil
        self.auth_rate_limit = auth_rate_limit
        self.rate_exempt = rate_exempt
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._cuid = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind at a temporary name, set mode and owner, then rename into place (no wide-open window)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (self.path.exists() or self.path.is_symlink()) and not stat.S_ISSOCK(
            self.path.lstat().st_mode
        ):
            raise OSError(f"{self.path}: exists and is not a socket; not replacing it")
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        self._server = await asyncio.start_unix_server(self._connection, path=str(staging))
        try:
            os.chmod(staging, self.mode)
            if self.user is not None or self.group is not None:
                shutil.chown(staging, self.user, self.group)  # type: ignore[arg-type]
            os.replace(staging, self.path)
        except BaseException:
            self._server.close()
            with contextlib.suppress(OSError):
                staging.unlink()
            raise
        st = self.path.stat()
        self._inode = (st.st_dev, st.st_ino)
        log.info("auth_listen: listening on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(OSError):
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self._inode:  # never remove a successor's socket
                self.path.unlink()

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= self.max_connections or task is None:
            log.warning(
                "auth_listen: too many connections (%d); closing a new one", len(self._tasks)
            )
            writer.close()
            return
        self._tasks.add(task)
        checks: set[asyncio.Task[None]] = set()
        conn = codec.ServerConnection(
            str(os.getpid()), str(next(self._cuid)), secrets.token_hex(16)
        )
        try:
            await self._send(conn, writer)
            while True:
                timeout = self.idle_timeout if conn.handshake_done else self.handshake_timeout
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
                conn.receive_data(data)
                while not isinstance(event := conn.next_event(), codec._NeedData):
                    if isinstance(event, codec.Closed):
                        return
                    if isinstance(event, codec.CheckPassword | codec.MechanismFailed):
                        check = asyncio.create_task(self._answer(conn, event, writer))
                        checks.add(check)
                        check.add_done_callback(checks.discard)
                await self._send(conn, writer)
        except RemoteProtocolError as exc:
            log.warning("auth_listen: client protocol error: %s; disconnecting", exc)
            await self._write(conn, writer)  # answers to the lines before the bad one
        except TimeoutError:
            log.info("auth_listen: client timed out; disconnecting")
        except (ConnectionError, OSError):
            pass
        finally:
            for check in checks:
                check.cancel()
            writer.close()
            self._tasks.discard(task)

    async def _send(self, conn: codec.ServerConnection, writer: asyncio.StreamWriter) -> None:
        out = conn.data_to_send()
        if out and not writer.is_closing():
            writer.write(out)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _answer(
        self,
        conn: codec.ServerConnection,
        event: codec.CheckPassword | codec.MechanismFailed,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Check one request and write its OK/FAIL; the failure delay holds only this request."""
        who = _who(event.remote_ip)
        username, temporary, reason = "", False, ""
        if isinstance(event, codec.MechanismFailed):
            reason = event.detail
        elif self._rate_exceeded(event.remote_ip):
            log.warning("AUTH command rate limit exceeded from %s", who)
            conn.fail(event.id, temporary=True)
            await self._write(conn, writer)
            return
        else:
            username = event.username
            try:
                outcome = await self.backend.authenticate(
                    event.username,
                    event.password,
                    service=event.service,
                    remote_ip=event.remote_ip,
                    local_ip=event.local_ip,
                    secured=event.secured,
                )
            except Exception as exc:  # a broken backend must not take the listener down
                log.error("auth backend failed: %s", exc)
                outcome = AuthOutcome(False, temporary=True, reason="backend error")
            if outcome.ok:
                conn.succeed(event.id, outcome.username or event.username)
                await self._write(conn, writer)
                return
            temporary, reason = outcome.temporary, outcome.reason
        log.warning(
            "%s: SASL %s authentication failed: %s",
            who,
            event.mechanism,
            reason or "authentication failure",
        )
        # A delay after each failure slows password guessing (Postfix/Dovecot auth_failure_delay).
        await asyncio.sleep(self.failure_delay)
        conn.fail(event.id, username, temporary=temporary)
        await self._write(conn, writer)

    def _rate_exceeded(self, remote_ip: str) -> bool:
        if (
            not self.auth_rate_limit
            or self.anvil is None
            or not remote_ip
            or self.rate_exempt(remote_ip)
        ):
            return False
        return self.anvil.rate("auth", remote_ip) > self.auth_rate_limit

    async def _write(self, conn: codec.ServerConnection, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await self._send(conn, writer)


class DovecotAuthClient:
    """AuthBackend over a Dovecot auth socket: one kept connection, requests told apart by id.

    A dead connection is noticed on the next request, which reconnects once (as Postfix
    does); an unreachable socket is a temporary failure (454), never a wrong password.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = CLIENT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._conn: codec.ClientConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Queue[codec.ClientEvent]] = {}
        self._ids = itertools.count(1)
        self._connect_lock = asyncio.Lock()

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        service: str,
        remote_ip: str,
        local_ip: str = "",
        secured: bool = False,
    ) -> AuthOutcome:
        if not username or len(username) > MAX_CREDENTIAL or len(password) > MAX_CREDENTIAL:
            return AuthOutcome(False, reason="authentication failure")
        try:
            async with asyncio.timeout(self.timeout):
                return await self._attempt(
                    username, password, service, remote_ip, local_ip, secured
                )
        except TimeoutError:
            return AuthOutcome(
                False, temporary=True, reason=f"no answer from {self.path} within {self.timeout:g}s"
            )
        except (OSError, ProtocolError, EOFError) as exc:
            return AuthOutcome(False, temporary=True, reason=f"{self.path}: {_one_line(exc)}")

    async def _attempt(
        self,
        username: str,
        password: str,
        service: str,
        remote_ip: str,
        local_ip: str,
        secured: bool,
    ) -> AuthOutcome:
        for attempt in (1, 2):
            conn = await self._connected()
            assert conn.handshake is not None
            mechs = conn.handshake.mechanisms
            mech = "PLAIN" if "PLAIN" in mechs else "LOGIN" if "LOGIN" in mechs else ""
            if not mech:
                return AuthOutcome(
                    False, temporary=True, reason=f"{self.path} offers neither PLAIN nor LOGIN"
                )
            rid = next(self._ids) % codec.MAX_ID + 1
            queue: asyncio.Queue[codec.ClientEvent] = asyncio.Queue()
            self._waiting[rid] = queue
            try:
                initial = f"\0{username}\0{password}".encode() if mech == "PLAIN" else None
                conn.auth(rid, mech, service, initial=initial, local_ip=local_ip, remote_ip=remote_ip,
                          secured=secured, extra=("nologin",))  # fmt: skip
                try:
                    await self._flush(conn)
                except OSError:
                    await self._drop()
                    if attempt == 2:
                        raise
                    continue  # the kept connection died while idle: reconnect once
                answers = [username.encode(), password.encode()]
                while True:
                    event = await queue.get()
                    if isinstance(event, codec.Continue) and mech == "LOGIN" and answers:
                        conn.cont(rid, answers.pop(0))
                        await self._flush(conn)
                    elif isinstance(event, codec.Success):
                        return AuthOutcome(True, username=event.user or username)
                    elif isinstance(event, codec.Failed):
                        reason = event.reason or "authentication failure"
                        return AuthOutcome(False, temporary=event.temporary, reason=reason)
                    elif isinstance(event, codec.Closed):
                        return AuthOutcome(
                            False, temporary=True, reason=f"{self.path}: connection lost"
                        )
                    else:
                        raise RemoteProtocolError("unexpected challenge from the auth server")
            finally:
                self._waiting.pop(rid, None)
                conn.outstanding.discard(rid)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connected(self) -> codec.ClientConnection:
        async with self._connect_lock:
            if (
                self._conn is not None
                and self._reader_task is not None
                and not self._reader_task.done()
            ):
                return self._conn
            await self._drop()
            reader, writer = await asyncio.open_unix_connection(str(self.path))
            conn = codec.ClientConnection(os.getpid())
            try:
                writer.write(conn.data_to_send())
                while conn.handshake is None:
                    data = await reader.read(READ_SIZE)
                    conn.receive_data(data)
                    while not isinstance(event := conn.next_event(), codec._NeedData):
                        if isinstance(event, codec.Closed):
                            raise EOFError("closed during the handshake")
            except BaseException:
                writer.close()
                raise
            self._conn, self._writer = conn, writer
            self._reader_task = asyncio.create_task(self._read(conn, reader))
            return conn

    async def _flush(self, conn: codec.ClientConnection) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionResetError("not connected")
        self._writer.write(conn.data_to_send())
        await self._writer.drain()

    async def _read(self, conn: codec.ClientConnection, reader: asyncio.StreamReader) -> None:
        """Route each answer to the request waiting for it; on loss, tell every waiter."""
        try:
            while True:
                conn.receive_data(await reader.read(READ_SIZE))
                while not isinstance(event := conn.next_event(), codec._NeedData):
                    if isinstance(event, codec.Closed):
                        return
                    if isinstance(event, codec.Continue | codec.Success | codec.Failed):
                        queue = self._waiting.get(event.id)
                        if queue is not None:
                            queue.put_nowait(event)
        except (OSError, ProtocolError) as exc:
            log.warning("dovecot auth client: %s: %s", self.path, _one_line(exc))
        finally:
            for queue in self._waiting.values():
                queue.put_nowait(codec.Closed())
            if self._writer is not None and self._conn is conn:
                self._writer.close()

    async def _drop(self) -> None:
        task, writer = self._reader_task, self._writer
        self._conn = self._writer = self._reader_task = None
        if writer is not None:
            writer.close()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        await self._drop()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text[0] if text else type(exc).__name__
