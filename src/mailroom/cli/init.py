"""`mailroom init`: a working main.cf, safe directories, an SQLite directory and a certificate."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from mailroom.cli.errors import CommandError
from mailroom.config.maincf import ConfigError
from mailroom.config.settings import MAIN_CF, Config, default_hostname
from mailroom.runtime.certs import write_self_signed

HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")

DEV_LISTENERS = {
    "smtp_listen": "127.0.0.1:2525",
    "submission_listen": "127.0.0.1:2587",
    "submissions_listen": "127.0.0.1:2465",
    "imap_listen": "127.0.0.1:2143",
    "imaps_listen": "127.0.0.1:2993",
    "pop3_listen": "127.0.0.1:2110",
    "pop3s_listen": "127.0.0.1:2995",
}

TEMPLATE = """\
# mailroom main.cf — Postfix syntax and parameter names (see docs/parameters.md).
# Show the effective values with `mailroom postconf -n`; edit with
# `mailroom postconf -e name=value`, then `mailroom reload`.

# --- identity
myhostname = {hostname}
smtpd_banner = $myhostname ESMTP $mail_name

# --- where things live (relative to this directory unless absolute)
data_directory = ${{config_directory}}/data
queue_directory = ${{config_directory}}/queue
virtual_mailbox_base = ${{config_directory}}/vmail
directory_url = sqlite:///${{data_directory}}/directory.db

# --- trust: clients in mynetworks may relay without authentication.
# Set it empty (mynetworks =) to make even local clients authenticate.
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128

# --- TLS: offer STARTTLS, and AUTH only inside TLS (the ISPmail guide's settings)
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_cert_file = ${{config_directory}}/tls/cert.pem
smtpd_tls_key_file = ${{config_directory}}/tls/key.pem

# --- SMTP AUTH against mailroom's own directory
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = mailroom

# --- relay control: reject (554 Relay access denied) rather than Postfix's
# default defer_unauth_destination (454), as the guide shows.
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
    permit_mynetworks
    permit_sasl_authenticated
    reject_unauth_destination

# --- listeners (host:port lists; empty = off)
{listeners}
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create main.cf, directories, database and a self-signed certificate")
    p.add_argument("--demo", action="store_true", help="add example.org, john@example.org (summersun) and postmaster alias; dev ports")
    p.add_argument("--hostname", help="myhostname (default: this host's name)")
    p.set_defaults(func=run, needs_config=False)


def run(args: argparse.Namespace) -> int:
    config_dir = Path(args.config_dir)
    hostname = args.hostname or default_hostname()
    if not HOSTNAME_RE.match(hostname):
        raise CommandError(f"--hostname: '{hostname}' is not a valid host name")
    main_cf = config_dir / MAIN_CF
    if main_cf.exists():
        raise CommandError(f"{main_cf} already exists; not overwriting it")
    if args.demo:
        listeners = "\n".join(f"{name} = {value}" for name, value in DEV_LISTENERS.items())
    else:
        listeners = "\n".join(
            f"{name} = {value}"
            for name, value in {
                "smtp_listen": "0.0.0.0:25",
                "submission_listen": "0.0.0.0:587",
                "submissions_listen": "0.0.0.0:465",
                "imap_listen": "0.0.0.0:143",
                "imaps_listen": "0.0.0.0:993",
                "pop3_listen": "0.0.0.0:110",
                "pop3s_listen": "0.0.0.0:995",
            }.items()
        )
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        main_cf.write_text(TEMPLATE.format(hostname=hostname, listeners=listeners), encoding="utf-8")
        config = Config.load(config_dir)
        for name in ("data_directory", "queue_directory", "virtual_mailbox_base"):
            path = config.path(name)
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        write_self_signed(config.path("smtpd_tls_cert_file"), config.path("smtpd_tls_key_file"), hostname)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{exc.filename or config_dir}: {exc.strerror}") from None

    from mailroom.cli.admin import open_config_directory
    from mailroom.directory.passwords import hash_password

    directory = open_config_directory(config, create=True)
    try:
        if args.demo:
            directory.add_domain("example.org")
            directory.add_user("john@example.org", hash_password("summersun"))
            directory.add_alias("postmaster@example.org", ["john@example.org"])
    finally:
        directory.close()
    print(f"mailroom: wrote {main_cf}" + (" with demo domain example.org (john@example.org / summersun)" if args.demo else ""))
    return 0
