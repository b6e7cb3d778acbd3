"""The queue manager (Postfix's qmgr): takes queued messages to their transports.

Theory of operation. The manager keeps an in-memory schedule {queue id: due time}.
SMTP calls notify(qid) after enqueue, so local mail is delivered at once; start()
recovers the spool and schedules everything in it; a timer wakes the loop when the
next message is due, and at least every `queue_run_delay` seconds to pick up
messages another process queued. Each due message is handled by one task:

1. take it from the spool's memory if it was just queued (Spool.take_hot), else
   load it; expand recipients still "pending" via Directory.expand (virtual alias
   expansion, as Postfix's cleanup does) into final addresses with status
   "deferred" and next_attempt = now. The expansion is kept in memory and written
   with the first outcome (re-expanding after a crash before any delivery is
   harmless);
2. route each due address: a local domain goes to the `virtual` transport, any
   other to `smtp` (the outbound issue registers it; until then it stays deferred);
3. each outcome is recorded in the envelope (update_envelope fsyncs) as soon as the
   transport reports it, before the next mailbox is tried, unless it was the last
   recipient left: then the message is simply removed (step 4) and that removal
   is the record. A crash between the Maildir link and that record repeats the
   attempt after the restart; local delivery then finds its own earlier file
   (Maildir names are fixed per queue ID and mailbox) and delivers nothing twice.
   For a remote recipient that window remains, as in Postfix: a possible
   duplicate, never a loss;
4. when no recipient is left pending or deferred, the message is removed.

A deferred recipient is retried after next_backoff(attempts) seconds and bounced
once the message is older than `maximal_queue_lifetime` (`bounce_queue_lifetime`
for a message from the null sender: a bounce or other notice).

Per-destination concurrency (queue/concurrency.py): deliveries through a transport
go one call per destination, the next hop (the recipient domain, or the relay the
transport's router names), and at most `smtp_destination_concurrency_limit` (other
transports but `virtual`: `default_destination_concurrency_limit`; `virtual`: no
limit) are in flight to one destination. Recipients whose destination is full are
skipped without counting an attempt; the message waits in that destination's line
and is made due again when a slot is granted to it (at the latest after
`queue_run_delay`).

ETRN / flush(domain): the manager remembers, for each message it has handled, the
domains of its recipients still waiting, so a flush for one domain makes due only
those messages (and those it has not seen yet), and cuts the backoff only of their
recipients in that domain, without reading any queue file. Directory look-ups run on
the event loop (the directory is cached, as for the SMTP policy checks); disk work
runs in the spool's and the Maildir writer's batching threads, and the rare slow
paths (loading a deferred message, recording a partial delivery) in a small
thread pool, so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailroom.directory.base import AliasLoop, DirectoryUnavailable
from mailroom.queue.concurrency import Destination, DestinationSlots
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.local import LOOKUP_FAILED, LocalDelivery, LocalTransport, MailboxLookup
from mailroom.queue.spool import Spool, SpoolError
from mailroom.queue.transport import DeliveryResult, Outcome, Report, Transport
from mailroom.runtime.log import get_logger

if TYPE_CHECKING:
    from mailroom.queue.notices import Notifier

# Postfix's defaults for the parameters of the same names (seconds).
QUEUE_RUN_DELAY = 300.0
MINIMAL_BACKOFF_TIME = 300.0
MAXIMAL_BACKOFF_TIME = 4000.0
MAXIMAL_QUEUE_LIFETIME = 5 * 86400.0
DEFAULT_DESTINATION_CONCURRENCY_LIMIT = 20
MAX_ACTIVE_MESSAGES = 100  # like Postfix's default_process_limit: bounds memory and tasks
IO_WORKERS = 2  # threads for the slow paths: loading deferred messages, partial records
STOP_GRACE_SECONDS = 10.0  # how long stop() waits for in-flight deliveries
REMOTE_PENDING = "delivery to remote domains is handled by the outbound transport"
LOCAL, REMOTE = "virtual", "smtp"
FINAL = ("delivered", "bounced")

qmgr_log = get_logger("qmgr")
virtual_log = get_logger("virtual")
T = TypeVar("T")


def next_backoff(attempts: int, minimum: float, maximum: float) -> float:
    """Seconds until the next try after `attempts` failures: doubling from minimum, capped."""
    if attempts <= 1:
        return min(minimum, maximum)
    exponent = min(attempts - 1, 64)  # 2**64 * anything sensible is beyond any cap
    return float(min(maximum, minimum * 2**exponent))


def format_delay(seconds: float) -> str:
    """Postfix's delay formatting: 0 below 10 ms, two significant digits, whole seconds from 10."""
    if seconds < 0.01:
        return "0"
    if seconds >= 10:
        return f"{seconds:.0f}"
    return f"{seconds:.2g}"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".").lower()


def _orig_to(rcpt: Recipient) -> str:
    if rcpt.orcpt:
        original = rcpt.orcpt.partition(";")[2] or rcpt.orcpt
        if original.lower() != rcpt.address.lower():
            return original
    return ""


class QueueManager:
    def __init__(
        self,
        spool: Spool,
        directory: MailboxLookup,
        mailbox_base: Path,
        hostname: str,
        clock: Callable[[], float] = time.time,
        *,
        queue_run_delay: float = QUEUE_RUN_DELAY,
        minimal_backoff_time: float = MINIMAL_BACKOFF_TIME,
        maximal_backoff_time: float = MAXIMAL_BACKOFF_TIME,
        maximal_queue_lifetime: float = MAXIMAL_QUEUE_LIFETIME,
        bounce_queue_lifetime: float | None = None,
        default_destination_concurrency_limit: int = DEFAULT_DESTINATION_CONCURRENCY_LIMIT,
        smtp_destination_concurrency_limit: int | None = None,
        quota_permanent: bool = True,
        router: Callable[[str], str] | None = None,
    ) -> None:
        self.spool = spool
        self.directory = directory
        self.clock = clock
        self.queue_run_delay = queue_run_delay
        self.minimal_backoff_time = minimal_backoff_time
        self.maximal_backoff_time = maximal_backoff_time
        self.maximal_queue_lifetime = maximal_queue_lifetime
        self.bounce_queue_lifetime = (maximal_queue_lifetime if bounce_queue_lifetime is None
                                      else bounce_queue_lifetime)
        if smtp_destination_concurrency_limit is None:
            smtp_destination_concurrency_limit = default_destination_concurrency_limit
        self.slots = DestinationSlots(
            self._granted, {LOCAL: 0, REMOTE: smtp_destination_concurrency_limit},
            default_destination_concurrency_limit)
        self.router = router or self._default_route
        self._executor = ThreadPoolExecutor(IO_WORKERS, thread_name_prefix="qmgr")
        local = LocalDelivery(directory, mailbox_base, hostname=hostname, clock=clock,
                              quota_permanent=quota_permanent)
        self.local = LocalTransport(local)
        self.transports: dict[str, Transport] = {LOCAL: self.local}
        self.notifier: Notifier | None = None
        self._flushed: dict[str, set[str] | None] = {}  # backoff cut short: qid -> domains (None: all)
        self._domains: dict[str, frozenset[str]] = {}  # qid -> domains of its waiting recipients
        self._schedule: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backlog = False  # due messages wait for a free slot
        spool.keep_hot = True  # hand just-queued messages over in memory

    # -- control ------------------------------------------------------------------
    def set_notifier(self, notifier: Notifier) -> None:
        """Who tells senders about bounces, delays and successes (queue/notices.py)."""
        self.notifier = notifier

    def register_transport(self, name: str, transport: Transport) -> None:
        """Plug in a delivery agent (the outbound issue registers "smtp")."""
        self.transports[name] = transport

    def notify(self, qid: str) -> None:
        """A message was just queued: deliver it now. Call from the event loop's thread."""
        self._schedule[qid] = 0.0
        if (self._task is not None and not self._stopping and qid not in self._inflight
                and len(self._inflight) < MAX_ACTIVE_MESSAGES):
            self._start(qid)  # no trip through the scheduling loop
        else:
            self._backlog = True
            self._wake.set()

    def flush(self, domain: str | None = None) -> None:
        """Make waiting recipients due now: all of them (postqueue -f), or one domain's (ETRN).

        Messages this manager has not handled yet (e.g. just recovered) count as
        candidates for any domain: they are due anyway.
        """
        wanted = _domain(domain) if domain is not None else None
        for qid in self._schedule:
            if wanted is None:
                self._flushed[qid] = None
            else:
                known = self._domains.get(qid)
                if known is not None and wanted not in known:
                    continue
                cut = self._flushed.get(qid, set())
                if cut is not None:
                    cut.add(wanted)
                    self._flushed[qid] = cut
            self._schedule[qid] = 0.0
        self._wake.set()

    async def start(self) -> None:
        """Recover the spool, schedule everything in it, and run in the background."""
        for qid in await self._io(self.spool.recover):
            self._schedule.setdefault(qid, 0.0)
        self._task = asyncio.create_task(self._run(), name="qmgr")

    async def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop scheduling, let in-flight deliveries finish (at most `timeout` s), clean up."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        pending = list(self._inflight.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.local.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_queue(self) -> None:
        """Deliver everything due now and wait until it is done (tests, `queue flush`)."""
        while True:
            self._dispatch_due()
            if not self._inflight:
                return
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def scheduled(self) -> dict[str, float]:
        """A copy of {queue id: due time}, for tests and `queue list`."""
        return dict(self._schedule)

    # -- the loop -----------------------------------------------------------------
    async def _run(self) -> None:
        last_scan = self.clock()
        while not self._stopping:
            now = self.clock()
            if now - last_scan >= self.queue_run_delay:
                last_scan = now
                for qid in await self._io(self.spool.list_ids):
                    self._schedule.setdefault(qid, 0.0)  # queued by another process
            self._wake.clear()
            self._dispatch_due()
            if self._backlog:  # due messages wait for a slot: _done() wakes us, no spinning
                wait = self.queue_run_delay
            else:
                due = [t for q, t in self._schedule.items() if q not in self._inflight]
                wait = min([self.queue_run_delay, *(t - now for t in due)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))

    def _dispatch_due(self) -> None:
        now = self.clock()
        self._backlog = False
        for qid, due in sorted(self._schedule.items(), key=lambda item: item[1]):
            if due > now:
                break
            if qid in self._inflight:
                continue
            if len(self._inflight) >= MAX_ACTIVE_MESSAGES:
                self._backlog = True
                break
            self._start(qid)

    def _start(self, qid: str) -> None:
        task = asyncio.create_task(self._process_safely(qid), name=f"qmgr {qid}")
        self._inflight[qid] = task
        task.add_done_callback(functools.partial(self._done, qid))

    def _granted(self, qid: str) -> None:
        """A destination slot was granted to a waiting message: it is due now."""
        if qid in self._schedule:
            self._schedule[qid] = 0.0
            self._wake.set()

    def _done(self, qid: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(qid, None)
        if self._backlog or qid in self._schedule:  # a slot for the backlog, or a new due time
            self._wake.set()

    async def _io(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # -- one message --------------------------------------------------------------
    async def _process_safely(self, qid: str) -> None:
        blocked: set[Destination] = set()  # destinations that were full
        try:
            next_due = await self._process(qid, blocked)
        except Exception as exc:  # e.g. disk full while recording: try again later
            qmgr_log.warning("%s: delivery interrupted: %s", qid, exc)
            next_due = self.clock() + self.minimal_backoff_time
        if next_due is None:
            self._schedule.pop(qid, None)
            self._domains.pop(qid, None)
            self._flushed.pop(qid, None)
            self.slots.forget(qid)
        elif self.slots.finish(qid, blocked):
            self._schedule[qid] = 0.0  # granted a slot while it was running
        else:
            self._schedule[qid] = next_due

    async def _process(self, qid: str, blocked: set[Destination]) -> float | None:
        """Try the due recipients of one message; return when it is next due (None: gone).

        Destinations that had no free slot are added to `blocked`.
        """
        activated = self.clock()
        hot = self.spool.take_hot(qid)
        if hot is not None:
            envelope, data = hot
        else:
            try:
                envelope, data = await self._io(self.spool.load, qid)
            except SpoolError as exc:
                qmgr_log.warning("%s: %s", qid, exc)
                return None
        if qid in self._flushed:
            domains = self._flushed.pop(qid)
            for rcpt in envelope.recipients:
                if rcpt.status in ("deferred", "pending") and (
                        domains is None or _domain(rcpt.address) in domains):
                    rcpt.next_attempt = min(rcpt.next_attempt, activated)
        qmgr_log.info("%s: from=<%s>, size=%d, nrcpt=%d (queue active)",
                      qid, envelope.sender, envelope.size, len(envelope.recipients))
        routes, dirty = self._expand_and_route(envelope, activated)
        unsaved = [dirty]  # in-memory changes not yet in the spool
        waiting: list[Recipient] = []  # due, but their destination is full
        for name, recipients in routes.items():
            transport = self.transports.get(name)
            if transport is None:
                for rcpt in recipients:
                    result = DeliveryResult(rcpt.address, Outcome.DEFERRED, "4.3.0", REMOTE_PENDING)
                    self._record(envelope, rcpt, result, activated, activated)
                unsaved[0] = True
                continue
            for dest, group in self._by_destination(name, transport, recipients).items():
                if not self.slots.acquire(dest, qid):
                    blocked.add(dest)
                    waiting += group
                    continue
                try:
                    await self._deliver(envelope, data, name, transport, group, activated,
                                        unsaved, fresh=hot is not None)
                finally:
                    self.slots.release(dest)
        if waiting:
            qmgr_log.debug("%s: %d recipient(s) wait for a delivery slot (%s)", qid, len(waiting),
                          ", ".join(sorted(f"{n}:{d}" for n, d in blocked)))
        return await self._finish(envelope, unsaved[0], data, waiting)

    async def _deliver(self, envelope: Envelope, data: bytes, name: str, transport: Transport,
                       recipients: list[Recipient], activated: float, unsaved: list[bool],
                       *, fresh: bool) -> None:
        started = self.clock()
        report = self._reporter(envelope, recipients, activated, started, unsaved)
        try:
            if transport is self.local:
                results = await self.local.deliver(envelope, data, recipients, report, fresh=fresh)
            else:
                results = await transport.deliver(envelope, data, recipients, report)
        except Exception as exc:  # a transport bug must not lose or stall the message
            qmgr_log.error("%s: transport %s failed: %s", envelope.queue_id, name, exc)
            results = [DeliveryResult(r.address, Outcome.DEFERRED, "4.3.0",
                                      f"transport {name} failed") for r in recipients]
        for result in results:  # those the transport did not report itself
            await report(result)

    def _by_destination(self, name: str, transport: Transport,
                        recipients: list[Recipient]) -> dict[Destination, list[Recipient]]:
        """Split one transport's recipients by next hop; one group when it has no limit."""
        if not self.slots.limit(name):
            return {(name, ""): recipients}
        groups: dict[Destination, list[Recipient]] = {}
        for rcpt in recipients:
            groups.setdefault((name, self._nexthop(transport, rcpt.address)), []).append(rcpt)
        return groups

    @staticmethod
    def _nexthop(transport: Transport, address: str) -> str:
        """The transport router's next hop (relayhost, transport_maps), else the domain."""
        route = getattr(getattr(transport, "router", None), "route", None)
        if callable(route):
            try:
                nexthop = getattr(route(address), "nexthop", "")
            except Exception:  # e.g. the directory is down: the transport will defer it
                nexthop = ""
            if isinstance(nexthop, str) and nexthop:
                return nexthop.lower()
        return _domain(address)

    def _reporter(self, envelope: Envelope, recipients: list[Recipient],
                  activated: float, started: float, unsaved: list[bool]) -> Report:
        by_address = {r.address: r for r in recipients}

        async def report(result: DeliveryResult) -> None:
            rcpt = by_address.pop(result.address, None)
            if rcpt is None:  # each recipient is recorded once
                return
            self._record(envelope, rcpt, result, activated, started)
            if all(r.status in FINAL for r in envelope.recipients):
                unsaved[0] = True  # the removal in _finish will be the record
                return
            await self._io(self.spool.update_envelope, envelope.queue_id, envelope)
            unsaved[0] = False

        return report

    def _expand_and_route(self, envelope: Envelope,
                          now: float) -> tuple[dict[str, list[Recipient]], bool]:
        """Alias expansion of pending recipients, then routing of due ones; (routes, changed)."""
        seen = {r.address.lower() for r in envelope.recipients if r.status != "pending"}
        expanded: list[Recipient] = []
        changed = False
        for rcpt in envelope.recipients:
            if rcpt.status != "pending" or rcpt.next_attempt > now:
                expanded.append(rcpt)
                continue
            try:
                targets = self.directory.expand(rcpt.address)
            except AliasLoop:
                self._record(envelope, rcpt, DeliveryResult(
                    rcpt.address, Outcome.BOUNCED, "5.4.6", "mail forwarding loop"), now, now)
                targets = []
            except DirectoryUnavailable:
                self._record(envelope, rcpt, DeliveryResult(
                    rcpt.address, Outcome.DEFERRED, "4.3.0", LOOKUP_FAILED), now, now)
                if rcpt.status == "deferred":  # still unexpanded: keep it so
                    rcpt.status = "pending"
                expanded.append(rcpt)
                changed = True
                continue
            changed = True
            if rcpt.status == "pending" and not targets:
                self._record(envelope, rcpt, DeliveryResult(
                    rcpt.address, Outcome.BOUNCED, "5.1.1", f'unknown user: "{rcpt.address.lower()}"'),
                    now, now)
            if rcpt.status != "pending":
                expanded.append(rcpt)
            for target in targets:
                if target.lower() in seen:
                    continue  # one delivery per final address
                seen.add(target.lower())
                orcpt = rcpt.orcpt
                if orcpt is None and target.lower() != rcpt.address.lower():
                    orcpt = f"rfc822;{rcpt.address}"
                expanded.append(Recipient(address=target, notify=rcpt.notify, orcpt=orcpt,
                                          status="deferred", next_attempt=now))
        envelope.recipients = expanded
        routes: dict[str, list[Recipient]] = {}
        for rcpt in expanded:
            if rcpt.status == "deferred" and rcpt.next_attempt <= now:
                try:
                    name = self.router(rcpt.address)
                except DirectoryUnavailable:
                    self._record(envelope, rcpt, DeliveryResult(
                        rcpt.address, Outcome.DEFERRED, "4.3.0", LOOKUP_FAILED), now, now)
                    changed = True
                    continue
                routes.setdefault(name, []).append(rcpt)
        return routes, changed

    def _default_route(self, address: str) -> str:
        return LOCAL if self.directory.is_local_domain(address.rpartition("@")[2]) else REMOTE

    def _record(self, envelope: Envelope, rcpt: Recipient, result: DeliveryResult,
                activated: float, started: float) -> None:
        """Apply one outcome to the envelope (in memory; the caller saves it) and log it."""
        now = self.clock()
        rcpt.attempts += 1
        rcpt.dsn, rcpt.reason, rcpt.relay = result.dsn, result.reason, result.relay
        rcpt.relayed_without_dsn = result.relayed_without_dsn
        status = result.outcome.value
        if result.outcome is Outcome.SENT:
            rcpt.status = "delivered"
        elif result.outcome is Outcome.BOUNCED:
            rcpt.status = "bounced"
        elif now - (envelope.arrival_time or now) >= (
                self.maximal_queue_lifetime if envelope.sender else self.bounce_queue_lifetime):
            rcpt.status, status = "bounced", "expired"
            rcpt.dsn = "5" + result.dsn[1:]
            rcpt.reason = f"message expired: {result.reason}"
        else:
            rcpt.status = "deferred"
            rcpt.next_attempt = now + next_backoff(
                rcpt.attempts, self.minimal_backoff_time, self.maximal_backoff_time)
        arrival = envelope.arrival_time or activated
        delays = "/".join(format_delay(max(0.0, d)) for d in (
            activated - arrival, started - activated, result.connect_seconds,
            result.transmit_seconds))
        orig = _orig_to(rcpt)
        log = virtual_log if result.relay == LOCAL else qmgr_log
        log.info("%s: to=<%s>,%s relay=%s, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
                 envelope.queue_id, rcpt.address, f" orig_to=<{orig}>," if orig else "",
                 result.relay, format_delay(max(0.0, now - arrival)), delays, rcpt.dsn,
                 status, rcpt.reason)

    async def _finish(self, envelope: Envelope, unsaved: bool, data: bytes,
                      blocked: list[Recipient]) -> float | None:
        """Remove a finished message, or save its state and say when to try it next.

        Notices to the sender (bounce, delay warning, success) are queued before the
        message leaves the queue: a crash in between may repeat a notice, never lose one.
        Recipients in `blocked` wait for a destination slot, not for a time.
        """
        qid = envelope.queue_id
        left = [r for r in envelope.recipients if r.status not in FINAL]
        if left:
            self._domains[qid] = frozenset(_domain(r.address) for r in left)
            if self.notifier is not None and await self.notifier.deferred(envelope, data):
                unsaved = True
            if unsaved:
                await self._io(self.spool.update_envelope, qid, envelope)
            skip = {id(r) for r in blocked}
            timed = [r.next_attempt for r in left if id(r) not in skip]
            return min([*timed, self.clock() + self.queue_run_delay] if blocked else timed)
        if self.notifier is not None:
            await self.notifier.final(envelope, data)
        try:
            await self.spool.remove_async(qid)
        except SpoolError as exc:
            qmgr_log.warning("%s: %s", qid, exc)
            if unsaved:  # at least keep the outcomes, so a retry does not deliver again
                with contextlib.suppress(SpoolError):
                    await self._io(self.spool.update_envelope, qid, envelope)
            return self.clock() + self.queue_run_delay
        qmgr_log.info("%s: removed", qid)
        return None
