"""`mailroom queue list|show|delete|flush`: mailq, postcat -q, postsuper -d and postqueue -f.

They work on the queue directory directly and are safe while the server runs: a
message file is only ever read whole or unlinked, and the server treats a message
that vanished under it as removed. `flush` asks the running server (SIGUSR1).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from mailroom.cli.errors import CommandError
from mailroom.config.settings import Config
from mailroom.queue.envelope import Envelope
from mailroom.queue.ids import is_queue_id
from mailroom.queue.spool import Spool, SpoolError
from mailroom.runtime.pidfile import PID_FILE, read_pid

FINAL = ("delivered", "bounced")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = sub.add_parser("queue", help="inspect and manage the mail queue").add_subparsers(dest="action", required=True)
    p = queue.add_parser("list", help="list queued messages (like mailq)")
    p.set_defaults(func=queue_list)
    p = queue.add_parser("show", help="print a queued message with its envelope (like postcat -q)")
    p.add_argument("queue_id")
    p.set_defaults(func=queue_show)
    p = queue.add_parser("delete", help="delete a message, or ALL (like postsuper -d)")
    p.add_argument("queue_ids", nargs="+", metavar="ID|ALL")
    p.set_defaults(func=queue_delete)
    p = queue.add_parser("flush", help="ask the running server to retry every queued message now (like postqueue -f)")
    p.set_defaults(func=queue_flush)


def _spool(config: Config) -> Spool:
    path = config.path("queue_directory")
    if not path.is_dir():
        raise CommandError(f"queue_directory = {path}: no such directory (run mailroom init)")
    try:
        return Spool(path)  # creates incoming/, active/, ... like the server would
    except OSError as exc:
        raise CommandError(f"queue_directory = {path}: {exc.strerror or exc}") from None


def _load_all(spool: Spool) -> list[tuple[str, Envelope, int]]:
    found = []
    for qid in spool.list_ids():
        try:
            envelope, data = spool.load(qid)
        except SpoolError:
            continue  # delivered and removed while we looked
        found.append((qid, envelope, len(data)))
    return found


def queue_list(args: argparse.Namespace) -> int:
    spool = _spool(args.config)
    try:
        messages = _load_all(spool)
    finally:
        spool.close()
    if not messages:
        print("Mail queue is empty")
        return 0
    now = time.time()
    print("-Queue ID-        --Size-- ----Arrival Time---- --Age-- -Sender/Recipient-------")
    total = 0
    for qid, envelope, size in messages:
        total += size
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(envelope.arrival_time))
        age = _age(now - envelope.arrival_time)
        print(f"{qid:<17} {size:>8} {arrival} {age:>7} {envelope.sender or 'MAILER-DAEMON'}")
        for rcpt in envelope.recipients:
            if rcpt.status in FINAL:
                continue
            if rcpt.reason:
                print(f"{'':<44}({rcpt.reason})")
            print(f"{'':<52}{rcpt.address}")
        print()
    count = len(messages)
    print(f"-- {max(1, (total + 1023) // 1024)} Kbytes in {count} Request{'s' if count != 1 else ''}.")
    return 0


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def queue_show(args: argparse.Namespace) -> int:
    if not is_queue_id(args.queue_id):
        raise CommandError(f"{args.queue_id}: not a queue ID")
    spool = _spool(args.config)
    try:
        envelope, data = spool.load(args.queue_id)
    except SpoolError as exc:
        raise CommandError(f"{args.queue_id}: {exc}") from None
    finally:
        spool.close()
    out = sys.stdout
    out.write(f"*** ENVELOPE RECORDS {args.queue_id} ***\n")
    out.write(f"message_size: {len(data)}\n")
    out.write(f"message_arrival_time: {time.ctime(envelope.arrival_time)}\n")
    out.write(f"sender: {envelope.sender}\n")
    for key in ("body_type", "ret", "envid"):
        value = getattr(envelope, key)
        if value:
            out.write(f"{key}: {value}\n")
    for rcpt in envelope.recipients:
        extra = f" notify={','.join(rcpt.notify)}" if rcpt.notify else ""
        extra += f" orcpt={rcpt.orcpt}" if rcpt.orcpt else ""
        reason = f" ({rcpt.reason})" if rcpt.reason else ""
        out.write(f"recipient: {rcpt.address} status={rcpt.status}{extra}{reason}\n")
    out.write(f"*** MESSAGE CONTENTS {args.queue_id} ***\n")
    out.flush()
    sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
    sys.stdout.buffer.flush()
    out.write(f"\n*** MESSAGE FILE END {args.queue_id} ***\n")
    return 0


def queue_delete(args: argparse.Namespace) -> int:
    spool = _spool(args.config)
    try:
        wanted = spool.list_ids() if [q.upper() for q in args.queue_ids] == ["ALL"] else args.queue_ids
        deleted = 0
        for qid in wanted:
            if not is_queue_id(qid) or not (spool.active / qid).exists():
                print(f"mailroom: warning: {qid}: no such message in the queue", file=sys.stderr)
                continue
            try:
                spool.remove(qid)
            except SpoolError as exc:
                raise CommandError(str(exc)) from None
            print(f"mailroom: {qid}: removed", file=sys.stderr)
            deleted += 1
    finally:
        spool.close()
    print(f"mailroom: Deleted: {deleted} message{'s' if deleted != 1 else ''}", file=sys.stderr)
    if deleted == 0 and [q.upper() for q in args.queue_ids] != ["ALL"]:
        return 1
    return 0


def queue_flush(args: argparse.Namespace) -> int:
    pid_path = args.config.path("data_directory") / PID_FILE
    pid = read_pid(pid_path)
    if pid is None:
        raise CommandError(f"mailroom is not running (no live pid in {pid_path}); nothing to flush")
    os.kill(pid, signal.SIGUSR1)
    return 0
