"""Everything `mailroom serve` runs, built from one Config and rebuilt in part on reload.

The Runtime holds the shared services (directory, spool, queue manager, restrictions,
auth backend, TLS context, anvil) that every session adapter reads through it, so a
SIGHUP swaps them for new sessions without touching sessions already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailroom.adapters.dovecot_auth import DovecotAuthClient, DovecotAuthServer
from mailroom.adapters.imap import ImapService, start_imap_listeners
from mailroom.adapters.listeners import StartupError, bind
from mailroom.adapters.pop3 import Pop3Service, start_pop3_listeners
from mailroom.adapters.smtp import ListenerProfile, SmtpSession
from mailroom.adapters.smtp_client import ErrorTransport, SmtpClientSettings, SmtpTransport
from mailroom.adapters.tls import TlsConfigError, TlsHolder, server_context
from mailroom.config.maincf import ConfigError
from mailroom.config.settings import Config
from mailroom.directory.base import Directory, DirectoryError
from mailroom.directory.cache import CachedDirectory
from mailroom.dns.resolver import DnspythonResolver
from mailroom.mailstore.shared import SHARED_SCANS
from mailroom.policy.anvil import Anvil
from mailroom.policy.evaluator import PolicySettings, Restrictions
from mailroom.queue.manager import QueueManager
from mailroom.queue.notices import Notifier
from mailroom.queue.spool import Spool
from mailroom.routing.tables import open_tables
from mailroom.routing.transport import Router
from mailroom.runtime.log import get_logger
from mailroom.sasl.backend import AuthBackend
from mailroom.sasl.directory_backend import DirectoryAuthBackend
from mailroom.smtp.events import ServerSettings

__all__ = ["Runtime", "StartupError", "build_runtime"]

log = get_logger("master")



class Runtime:
    def __init__(self, config: Config, directory: Directory) -> None:
        self.config = config
        self.directory = directory
        self.hostname = config.expanded("myhostname")
        self.tls = TlsHolder(_load_tls(config))
        self.policy = _build_policy(config, directory)
        self.auth_backend: AuthBackend = _auth_backend(config, directory, "smtpd_sasl")
        self.login_auth_backend: AuthBackend = _auth_backend(config, directory, "login_sasl")
        self.auth_server: DovecotAuthServer | None = None
        self.anvil = Anvil(float(config["anvil_rate_time_unit"]))
        self.spool = Spool(config.path("queue_directory"))
        self.queue_manager = QueueManager(
            self.spool,
            directory,
            config.path("virtual_mailbox_base"),
            self.hostname,
            queue_run_delay=float(config["queue_run_delay"]),
            minimal_backoff_time=float(config["minimal_backoff_time"]),
            maximal_backoff_time=float(config["maximal_backoff_time"]),
            maximal_queue_lifetime=float(config["maximal_queue_lifetime"]),
            bounce_queue_lifetime=float(config["bounce_queue_lifetime"]),
            default_destination_concurrency_limit=int(config["default_destination_concurrency_limit"]),
            smtp_destination_concurrency_limit=int(config["smtp_destination_concurrency_limit"]),
            quota_permanent=not config["quota_exceeded_temporary"],
        )
        self._configure_outbound(config)
        self.pop3 = Pop3Service(
            mailbox_base=config.path("virtual_mailbox_base"),
            auth_backend=self.login_auth_backend,
            tls_context=lambda: self.tls.context,
            hostname=self.hostname,
        )
        self._configure_pop3(config)
        self.imap = ImapService(
            mailbox_base=config.path("virtual_mailbox_base"),
            auth_backend=self.login_auth_backend,
            tls_context=lambda: self.tls.context,
            hostname=self.hostname,
        )
        self.imap.quota_lookup = self._quota_of
        self._configure_imap(config)
        self.smtp_sessions: set[SmtpSession] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.profiles: dict[str, ListenerProfile] = {}
        self._implicit_tls: ssl.SSLContext | None = None

    # -- listeners -----------------------------------------------------------------------
    def _profiles(self, config: Config) -> dict[str, ListenerProfile]:
        hostname = config.expanded("myhostname")
        level = config["smtpd_tls_security_level"]
        have_tls = self.tls.context is not None
        common: dict[str, Any] = dict(
            hostname=hostname,
            banner=config.expanded("smtpd_banner"),
            message_size_limit=int(config["message_size_limit"]),
            recipient_limit=int(config["smtpd_recipient_limit"]),
            hard_error_limit=int(config["smtpd_hard_error_limit"]),
            soft_error_limit=int(config["smtpd_soft_error_limit"]),
            junk_command_limit=int(config["smtpd_junk_command_limit"]),
            vrfy_disabled=bool(config["disable_vrfy_command"]),
            forbid_bare_newline=config["smtpd_forbid_bare_newline"] in ("yes", "reject"),
            reject_bare_lf_commands=config["smtpd_forbid_bare_newline"] == "reject",
            helo_required=bool(config["smtpd_helo_required"]),
            smtputf8=bool(config["smtputf8_enable"]),
            header_size_limit=int(config["header_size_limit"]),
        )
        return {
            "smtp": ListenerProfile(
                "smtp",
                ServerSettings(
                    **common,
                    tls_available=have_tls and level in ("may", "encrypt"),
                    tls_required=level == "encrypt",
                    tls_required_for_auth=bool(config["smtpd_tls_auth_only"]),
                    auth_enabled=bool(config["smtpd_sasl_auth_enable"]),
                ),
            ),
            # RFC 6409 submission as Debian's master.cf sets it up: TLS, then AUTH, then mail.
            "submission": ListenerProfile(
                "submission",
                ServerSettings(
                    **common,
                    tls_available=have_tls,
                    tls_required=True,
                    tls_required_for_auth=True,
                    auth_enabled=True,
                    auth_required_for_mail=True,
                ),
            ),
            "submissions": ListenerProfile(
                "submissions",
                ServerSettings(
                    **common,
                    tls_available=False,
                    tls_active=True,
                    tls_required_for_auth=True,
                    auth_enabled=True,
                    auth_required_for_mail=True,
                ),
            ),
        }

    async def start(self) -> None:
        # What start-up built (SQLAlchemy, the config, the modules) lives as long as the
        # process: move it out of the collector's sight, so that the full collections the
        # per-message garbage triggers do not walk all of it each time. Done before any
        # listener is up, so a client never waits for it.
        gc.collect()
        gc.freeze()
        self.profiles = self._profiles(self.config)
        await self.queue_manager.start()
        await self._start_auth_server()
        for parameter, profile_name in (
            ("smtp_listen", "smtp"),
            ("submission_listen", "submission"),
            ("submissions_listen", "submissions"),
        ):
            addresses = self.config[parameter]
            if not addresses:
                continue
            context: ssl.SSLContext | None = None
            if profile_name in ("submission", "submissions") and self.tls.context is None:
                raise StartupError(f"{parameter}: needs smtpd_tls_cert_file and smtpd_tls_key_file (TLS is required there)")
            if profile_name == "submissions":
                context = self._implicit_tls_context()

            def factory(name: str = profile_name) -> SmtpSession:
                return SmtpSession(self, self.profiles[name])

            self.servers += await bind(parameter, addresses, factory, context)
            log.info("%s: listening on %s", parameter, ", ".join(str(a) for a in addresses))
        await self._start_pop3()
        await self._start_imap()

    def _configure_outbound(self, config: Config) -> None:
        """Routing, the smtp/error transports and sender notices; rebuilt on reload."""
        try:
            router = Router(
                open_tables(config["transport_maps"]),
                config.expanded("relayhost"),
                self.directory.is_local_domain,
            )
        except (ValueError, OSError) as exc:
            raise StartupError(f"transport_maps/relayhost: {exc}") from None
        resolver = DnspythonResolver(list(config["dns_nameservers"]) or None)
        hostname = config.expanded("myhostname")
        manager = self.queue_manager
        manager.router = router.transport_name
        manager.register_transport("smtp", SmtpTransport(
            resolver, SmtpClientSettings.from_config(config), hostname,
            router=router, is_local_domain=self.directory.is_local_domain,
        ))
        errors = ErrorTransport(router)
        manager.register_transport("error", errors)
        manager.register_transport("retry", errors)
        postmaster = config.expanded("2bounce_notice_recipient")
        if "@" not in postmaster:
            postmaster = f"{postmaster}@{config.expanded('mydomain')}"
        manager.set_notifier(Notifier(
            self.spool,
            manager.notify,
            reporting_mta=hostname,
            postmaster=postmaster,
            delay_warning_time=float(config["delay_warning_time"]),
            maximal_queue_lifetime=float(config["maximal_queue_lifetime"]),
            clock=time.time,
        ))

    async def _start_auth_server(self) -> None:
        """auth_listen: the Dovecot-protocol socket a real Postfix can use (smtpd_sasl_type = dovecot)."""
        config = self.config
        if not config["auth_listen"]:
            return
        self.auth_server = DovecotAuthServer(
            config.path("auth_listen"),
            int(config["auth_listen_mode"]),
            DirectoryAuthBackend(self.directory),  # the socket serves mailroom's own users
            user=config["auth_listen_user"] or None,
            group=config["auth_listen_group"] or None,
            failure_delay=float(config["smtpd_error_sleep_time"]),
            anvil=self.anvil,
            auth_rate_limit=int(config["smtpd_client_auth_rate_limit"]),
            rate_exempt=self.policy.mynetworks_contains,
        )
        try:
            await self.auth_server.start()
        except (OSError, LookupError) as exc:
            raise StartupError(f"auth_listen = {config['auth_listen']}: {exc}") from None
        log.info("auth_listen: listening on %s", config.path("auth_listen"))

    def _login_admission(self, protocol: str) -> tuple[Callable[[str], bool], Callable[[str], None]]:
        """anvil-style admission for IMAP/POP3: a total session cap and a per-address cap.

        Every admitted session is counted (and released once it ends), so a reload
        that changes $mynetworks or the limits cannot unbalance the counters.
        """

        def admit(ip: str) -> bool:
            config = self.config
            total = int(config["login_client_limit"])
            sessions: set[Any] = self.pop3.sessions if protocol == "pop3" else self.imap.sessions
            if total and len(sessions) > total:
                return False
            count = self.anvil.connect(f"{protocol}/{ip}")
            limit = int(config["login_client_connection_count_limit"])
            if limit and count > limit and not self.policy.mynetworks_contains(ip):
                self.anvil.disconnect(f"{protocol}/{ip}")
                return False
            return True

        def release(ip: str) -> None:
            self.anvil.disconnect(f"{protocol}/{ip}")

        return admit, release

    def _quota_of(self, address: str) -> int:
        """The user's quota in bytes for IMAP GETQUOTAROOT (0 = unlimited)."""
        user = self.directory.get_user(address)
        return user.quota if user is not None else 0

    def _configure_imap(self, config: Config) -> None:
        self.imap.admit, self.imap.release = self._login_admission("imap")
        self.imap.hostname = config.expanded("myhostname")
        self.imap.timeout = float(config["imap_timeout"])
        self.imap.auth_failure_delay = float(config["smtpd_error_sleep_time"])
        self.imap.disable_plaintext_auth = bool(config["disable_plaintext_auth"])
        self.imap.mail_nfs_storage = bool(config["mail_nfs_storage"])
        SHARED_SCANS.resize(int(config["mail_index_cache_messages"]))

    async def _start_imap(self) -> None:
        imap, imaps = self.config["imap_listen"], self.config["imaps_listen"]
        if not imap and not imaps:
            return
        if imaps and self.tls.context is None:
            raise StartupError("imaps_listen: needs smtpd_tls_cert_file and smtpd_tls_key_file")
        context = self._implicit_tls_context() if imaps else None
        self.servers += await start_imap_listeners(self.imap, imap, imaps, implicit_tls_context=context)
        for name, addresses in (("imap_listen", imap), ("imaps_listen", imaps)):
            if addresses:
                log.info("%s: listening on %s", name, ", ".join(str(a) for a in addresses))

    def _configure_pop3(self, config: Config) -> None:
        self.pop3.admit, self.pop3.release = self._login_admission("pop3")
        self.pop3.hostname = config.expanded("myhostname")
        self.pop3.timeout = float(config["pop3_timeout"])
        self.pop3.auth_failure_delay = float(config["smtpd_error_sleep_time"])
        self.pop3.disable_plaintext_auth = bool(config["disable_plaintext_auth"])
        self.pop3.mail_nfs_storage = bool(config["mail_nfs_storage"])

    async def _start_pop3(self) -> None:
        pop3, pop3s = self.config["pop3_listen"], self.config["pop3s_listen"]
        if not pop3 and not pop3s:
            return
        if pop3s and self.tls.context is None:
            raise StartupError("pop3s_listen: needs smtpd_tls_cert_file and smtpd_tls_key_file")
        context = self._implicit_tls_context() if pop3s else None
        self.servers += await start_pop3_listeners(self.pop3, pop3, pop3s, implicit_tls_context=context)
        for name, addresses in (("pop3_listen", pop3), ("pop3s_listen", pop3s)):
            if addresses:
                log.info("%s: listening on %s", name, ", ".join(str(a) for a in addresses))

    def _implicit_tls_context(self) -> ssl.SSLContext:
        """A context whose SNI hook hands each handshake the current (reloadable) context."""
        assert self.tls.context is not None
        if self._implicit_tls is not None:
            return self._implicit_tls
        base = self.tls.context
        holder = self.tls

        def pick(sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            if holder.context is not None and holder.context is not ctx:
                sslobj.context = holder.context

        base.sni_callback = pick
        self._implicit_tls = base
        return base

    # -- reload and stop -------------------------------------------------------------------
    def reload(self, config: Config) -> None:
        try:
            policy = _build_policy(config, self.directory)
            tls = _load_tls(config)
            self._configure_outbound(config)
        except (StartupError, ConfigError, ValueError) as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        if tls is not None and self._implicit_tls is not None:
            tls.sni_callback = self._implicit_tls.sni_callback
        self.config = config
        self.hostname = config.expanded("myhostname")
        self.policy = policy
        self.tls.context = tls
        if isinstance(self.directory, CachedDirectory):
            self.directory.ttl = float(config["directory_cache_ttl"])
            self.directory.invalidate()
        self.anvil.rate_window = float(config["anvil_rate_time_unit"])
        self.profiles = self._profiles(config)
        self._configure_pop3(config)
        self._configure_imap(config)
        if self.auth_server is not None:
            self.auth_server.failure_delay = float(config["smtpd_error_sleep_time"])
            self.auth_server.auth_rate_limit = int(config["smtpd_client_auth_rate_limit"])
            self.auth_server.rate_exempt = policy.mynetworks_contains

    async def stop(self, timeout: float) -> None:
        for server in self.servers:
            server.close()
        sessions = list(self.smtp_sessions)
        for session in sessions:
            if session.idle:
                session.shutdown()  # nothing in flight: like Postfix, do not wait for them
        tasks = [s._task for s in sessions if s._task is not None and not s._task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for session in sessions:
                if session._task in pending:
                    session.shutdown()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        await self.pop3.stop(timeout)
        await self.imap.stop(timeout)
        if self.auth_server is not None:
            await self.auth_server.stop()
        for backend in (self.auth_backend, self.login_auth_backend):
            if isinstance(backend, DovecotAuthClient):
                await backend.close()
        await self.queue_manager.stop(max(timeout, 1.0))
        self.spool.close()
        self.directory.close()


def _auth_backend(config: Config, directory: Directory, prefix: str) -> AuthBackend:
    """`<prefix>_type = dovecot` asks the Dovecot socket at `<prefix>_path` (queue-relative, as Postfix)."""
    if config[f"{prefix}_type"] == "dovecot":
        return DovecotAuthClient(config.path("queue_directory") / config.expanded(f"{prefix}_path"))
    return DirectoryAuthBackend(directory)


def _load_tls(config: Config) -> ssl.SSLContext | None:
    if not config["smtpd_tls_cert_file"]:
        return None
    try:
        return server_context(
            config.path("smtpd_tls_cert_file"), config.path("smtpd_tls_key_file"), config.expanded("smtpd_tls_protocols")
        )
    except TlsConfigError as exc:
        raise StartupError(f"smtpd_tls_cert_file: {exc}") from None


def _build_policy(config: Config, directory: Directory) -> Restrictions:
    try:
        settings = PolicySettings.from_config(config.__getitem__)
    except ValueError as exc:
        raise StartupError(f"{config.filename}: {exc}") from None
    nameservers = list(config["dns_nameservers"]) or None
    return Restrictions(settings, directory, DnspythonResolver(nameservers))


async def build_runtime(config: Config) -> Runtime:
    from mailroom.directory.sql import open_directory

    try:
        backend = open_directory(config.expanded("directory_url"), defer_outage=True)
    except DirectoryError as exc:
        raise StartupError(f"directory_url: {exc}") from None
    if backend.deferred_error:
        # Postfix starts with its SQL maps down and defers; so does mailroom: 451 at RCPT,
        # 454 at AUTH, temporary login failures, until the database answers.
        log.warning("directory_url: %s; answering with temporary errors until it is back",
                    backend.deferred_error)
    directory = CachedDirectory(backend, float(config["directory_cache_ttl"]))
    for name in ("queue_directory", "virtual_mailbox_base", "data_directory"):
        path: Path = config.path(name)
        if not path.is_dir():
            raise StartupError(f"{name} = {path}: directory does not exist (mailroom init creates it)")
    try:
        return Runtime(config, directory)
    except BaseException:
        directory.close()
        raise
