"""`mailroom check`: every problem with main.cf, certificates, directories and database."""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path

from mailroom.config.maincf import ConfigError
from mailroom.config.settings import Config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate main.cf, certificates, directories and database")
    p.set_defaults(func=run, needs_config=False)


def find_problems(config_dir: Path) -> list[str]:
    try:
        config = Config.load(config_dir, validate=False)
    except ConfigError as exc:
        return [str(exc)]
    problems = config.problems()
    for d in config.unknown_names():
        problems.append(f"{config.filename}, line {d.line}: unknown parameter {d.name}")
    if problems:
        return problems  # later checks need valid values
    problems += _check_restrictions(config)
    for name in ("data_directory", "queue_directory", "virtual_mailbox_base"):
        path = config.path(name)
        if not path.is_dir():
            problems.append(f"{name} = {path}: directory does not exist")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{name} = {path}: directory is not writable")
        elif path.stat().st_mode & 0o007:
            problems.append(f"{name} = {path}: directory is accessible to others (mode {path.stat().st_mode & 0o777:o})")
    problems += _check_tls(config)
    problems += _check_database(config)
    return problems


def _check_restrictions(config: Config) -> list[str]:
    from mailroom.policy.evaluator import PolicySettings

    try:
        PolicySettings.from_config(config.__getitem__)
    except (ValueError, ConfigError) as exc:
        return [f"{config.filename}: {exc}"]
    return []


def _check_tls(config: Config) -> list[str]:
    cert = config["smtpd_tls_cert_file"]
    level = config["smtpd_tls_security_level"]
    if not cert:
        if level in ("may", "encrypt"):
            return [f"smtpd_tls_security_level = {level} but smtpd_tls_cert_file is empty"]
        return []
    cert_path, key_path = config.path("smtpd_tls_cert_file"), config.path("smtpd_tls_key_file")
    problems = []
    if key_path.exists() and key_path.stat().st_mode & 0o077:
        problems.append(f"smtpd_tls_key_file = {key_path}: private key is readable by others (mode {key_path.stat().st_mode & 0o777:o})")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)
    except FileNotFoundError as exc:
        problems.append(f"{exc.filename}: no such file")
    except (ssl.SSLError, OSError) as exc:
        problems.append(f"smtpd_tls_cert_file/smtpd_tls_key_file: cannot load {cert_path}: {getattr(exc, 'reason', None) or exc}")
    return problems


def _check_database(config: Config) -> list[str]:
    from mailroom.directory.base import DirectoryError
    from mailroom.directory.sql import open_directory

    try:
        directory = open_directory(config.expanded("directory_url"))
        try:
            directory.list_domains()
        finally:
            directory.close()
    except DirectoryError as exc:
        return [f"directory_url: {exc}"]
    return []


def run(args: argparse.Namespace) -> int:
    problems = find_problems(Path(args.config_dir))
    for problem in problems:
        print(f"mailroom: error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("mailroom: configuration OK")
    return 0
