"""`mailroom domain|user|alias|pw`: the directory's command line (ISPmail's SQL, as commands)."""

from __future__ import annotations

import argparse
import getpass
import re
import sys

from mailroom.cli.errors import CommandError
from mailroom.config.settings import Config
from mailroom.directory.base import Directory, DirectoryError

_QUOTA_RE = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)
_QUOTA_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def open_config_directory(config: Config, *, create: bool = False) -> Directory:
    from mailroom.directory.sql import open_directory

    try:
        return open_directory(config.expanded("directory_url"), create=create)
    except DirectoryError as exc:
        raise CommandError(str(exc)) from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    domain = sub.add_parser("domain", help="virtual mailbox domains").add_subparsers(dest="action", required=True)
    p = domain.add_parser("add", help="add a domain")
    p.add_argument("name")
    p.set_defaults(func=domain_add)
    p = domain.add_parser("remove", help="remove a domain (refused while it has users or aliases)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also remove its users and aliases")
    p.set_defaults(func=domain_remove)
    p = domain.add_parser("list", help="list domains")
    p.set_defaults(func=domain_list)

    user = sub.add_parser("user", help="mailbox users").add_subparsers(dest="action", required=True)
    p = user.add_parser("add", help="add a user")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--quota", default="0", help="quota in bytes (K, M, G suffixes allowed); 0 = none")
    p.add_argument("--scheme", default="ARGON2ID", help="password scheme (default ARGON2ID)")
    p.set_defaults(func=user_add)
    p = user.add_parser("passwd", help="change a user's password")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("--scheme", default="ARGON2ID")
    p.set_defaults(func=user_passwd)
    p = user.add_parser("remove", help="remove a user (the Maildir stays)")
    p.add_argument("email")
    p.set_defaults(func=user_remove)
    p = user.add_parser("list", help="list users")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=user_list)

    alias = sub.add_parser("alias", help="virtual aliases").add_subparsers(dest="action", required=True)
    p = alias.add_parser("add", help="add an alias; SOURCE @domain is a catch-all")
    p.add_argument("source")
    p.add_argument("destinations", help="DEST[,DEST...]")
    p.set_defaults(func=alias_add)
    p = alias.add_parser("remove", help="remove an alias (all its destinations, or one)")
    p.add_argument("source")
    p.add_argument("destination", nargs="?")
    p.set_defaults(func=alias_remove)
    p = alias.add_parser("list", help="list aliases")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=alias_list)

    p = sub.add_parser("pw", help="print a password hash, like doveadm pw")
    p.add_argument("-s", "--scheme", default="ARGON2ID")
    p.add_argument("-p", "--password", help="the password (visible in the process list; prefer the prompt)")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("-t", "--test", metavar="HASH", help="verify HASH against the password instead")
    p.set_defaults(func=pw, needs_config=False)


def parse_quota(text: str) -> int:
    match = _QUOTA_RE.match(text.strip())
    if not match:
        raise CommandError(f"--quota: bad size '{text}' (bytes, or with K, M, G, T)")
    return int(match.group(1)) * _QUOTA_UNITS[match.group(2).upper()]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Enter new password: ")
            again = getpass.getpass("Retype new password: ")
        except (EOFError, KeyboardInterrupt):
            raise CommandError("no password given") from None
        if password != again:
            raise CommandError("passwords do not match")
    if not password:
        raise CommandError("empty password")
    return password


def _hash(password: str, scheme: str) -> str:
    from mailroom.directory.passwords import UnknownScheme, hash_password

    try:
        return hash_password(password, scheme.upper())
    except UnknownScheme as exc:
        raise CommandError(str(exc)) from None


def _with_directory(args: argparse.Namespace) -> Directory:
    directory: Directory = open_config_directory(args.config)
    return directory


def domain_add(args: argparse.Namespace) -> int:
    with_dir(args, lambda d: d.add_domain(args.name))
    return 0


def domain_remove(args: argparse.Namespace) -> int:
    with_dir(args, lambda d: d.remove_domain(args.name, force=args.force))
    return 0


def domain_list(args: argparse.Namespace) -> int:
    for name in with_dir(args, lambda d: d.list_domains()):
        print(name)
    return 0


def user_add(args: argparse.Namespace) -> int:
    quota = parse_quota(args.quota)
    directory = _with_directory(args)
    try:
        # Refuse an unknown domain or a duplicate before asking for a password.
        domain = args.email.rpartition("@")[2]
        if "@" in args.email and domain and not directory.is_local_domain(domain):
            raise CommandError(f"{args.email}: domain {domain.lower()} is not a virtual mailbox domain (mailroom domain add {domain.lower()})")
        if "@" in args.email and directory.get_user(args.email) is not None:
            raise CommandError(f"{args.email}: user already exists")
        password_hash = _hash(read_password(args.password_stdin), args.scheme)
        directory.add_user(args.email, password_hash, quota)
    except DirectoryError as exc:
        raise CommandError(str(exc)) from None
    finally:
        directory.close()
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    directory = _with_directory(args)
    try:
        if directory.get_user(args.email) is None:
            raise CommandError(f"{args.email}: no such user")
        directory.set_password(args.email, _hash(read_password(args.password_stdin), args.scheme))
    except DirectoryError as exc:
        raise CommandError(str(exc)) from None
    finally:
        directory.close()
    return 0


def user_remove(args: argparse.Namespace) -> int:
    with_dir(args, lambda d: d.remove_user(args.email))
    return 0


def user_list(args: argparse.Namespace) -> int:
    for user in with_dir(args, lambda d: d.list_users(args.domain)):
        print(f"{user.email}\tquota={user.quota}" if user.quota else user.email)
    return 0


def alias_add(args: argparse.Namespace) -> int:
    destinations = [d for d in re.split(r"[\s,]+", args.destinations) if d]
    if not destinations:
        raise CommandError("alias add: no destination given")
    with_dir(args, lambda d: d.add_alias(args.source, destinations))
    return 0


def alias_remove(args: argparse.Namespace) -> int:
    with_dir(args, lambda d: d.remove_alias(args.source, args.destination))
    return 0


def alias_list(args: argparse.Namespace) -> int:
    for alias in with_dir(args, lambda d: d.list_aliases(args.domain)):
        print(f"{alias.source} -> {alias.destination}")
    return 0


def pw(args: argparse.Namespace) -> int:
    from mailroom.directory.passwords import verify_password

    password = args.password if args.password is not None else read_password(args.password_stdin)
    if args.test:
        if verify_password(args.test, password):
            print(f"{args.test} (verified)")
            return 0
        raise CommandError("password mismatch")
    print(_hash(password, args.scheme))
    return 0


def with_dir(args: argparse.Namespace, action):  # type: ignore[no-untyped-def]
    """Run one directory action, turning its refusals into one-line command errors."""
    directory = _with_directory(args)
    try:
        return action(directory)
    except DirectoryError as exc:
        raise CommandError(str(exc)) from None
    finally:
        directory.close()
