"""Per-destination concurrency: the slot bookkeeping, and the queue manager using it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailroom.queue.concurrency import DestinationSlots
from mailroom.queue.envelope import Envelope, Recipient
from mailroom.queue.manager import QueueManager
from mailroom.queue.spool import Spool
from mailroom.queue.transport import DeliveryResult, Outcome, Report
from mailroom.routing.transport import Router

from .conftest import FakeClock, FakeDirectory

DATA = b"Received: from x\r\nSubject: hi\r\n\r\nhello\r\n"
GMAIL, YAHOO = ("smtp", "gmail.test"), ("smtp", "yahoo.test")
TIMEOUT = 10.0  # a safety net for a broken implementation, never a wait


def slots(limit: int = 2) -> tuple[DestinationSlots, list[str]]:
    woken: list[str] = []
    return DestinationSlots(woken.append, {"virtual": 0, "smtp": limit}, 20), woken


def test_limit_reached_then_waiters_get_slots_in_order() -> None:
    s, woken = slots(2)
    assert s.acquire(GMAIL, "q1") and s.acquire(GMAIL, "q2")
    assert not s.acquire(GMAIL, "q3") and not s.acquire(GMAIL, "q4")
    assert not s.acquire(GMAIL, "q3")  # keeps its place in line
    assert s.acquire(YAHOO, "q3")  # another destination is not affected
    assert s.busy(GMAIL) == 2 and s.waiting(GMAIL) == ["q3", "q4"]
    s.release(GMAIL)
    assert woken == ["q3"] and s.waiting(GMAIL) == ["q4"]
    assert not s.acquire(GMAIL, "q5")  # q3's slot is promised: no stealing
    assert s.acquire(GMAIL, "q3")  # q3 uses its claim
    assert s.busy(GMAIL) == 2 and woken == ["q3"]


def test_unused_claim_passes_on_and_a_claim_held_while_running_means_rerun() -> None:
    s, woken = slots(1)
    assert s.acquire(GMAIL, "q1")
    assert not s.acquire(GMAIL, "q2") and not s.acquire(GMAIL, "q3")
    s.release(GMAIL)
    assert woken == ["q2"]
    assert s.finish("q2", blocked=()) is False  # ran without needing gmail any more
    assert woken == ["q2", "q3"]  # so the slot went to the next in line
    assert s.finish("q3", blocked=[GMAIL]) is True  # woken while it was still running
    assert s.acquire(GMAIL, "q3") and s.busy(GMAIL) == 1


def test_finish_leaves_lines_no_longer_needed_and_forget_clears_everything() -> None:
    s, woken = slots(1)
    assert s.acquire(GMAIL, "q1") and s.acquire(YAHOO, "q1")
    assert not s.acquire(GMAIL, "q2") and not s.acquire(YAHOO, "q2")
    assert s.finish("q2", blocked=[YAHOO]) is False
    assert s.waiting(GMAIL) == [] and s.waiting(YAHOO) == ["q2"]
    s.forget("q2")
    s.release(YAHOO)
    assert woken == [] and s.waiting(YAHOO) == []


def test_zero_means_no_limit_and_other_transports_use_the_default() -> None:
    s, _ = slots(2)
    assert all(s.acquire(("virtual", ""), f"q{i}") for i in range(100))
    assert s.limit("error") == 20 and s.limit("smtp") == 2 and s.limit("virtual") == 0


# -- the queue manager ---------------------------------------------------------------


class GateTransport:
    """Every delivery blocks until the test opens its gate; records concurrency per domain."""

    def __init__(self) -> None:
        self.entered: asyncio.Queue[tuple[str, asyncio.Event]] = asyncio.Queue()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.calls: list[list[str]] = []

    async def deliver(self, envelope: Envelope, data: bytes, recipients: Sequence[Recipient],
                      report: Report | None = None) -> list[DeliveryResult]:
        domains = {r.address.rpartition("@")[2] for r in recipients}
        assert len(domains) == 1  # one call per destination
        domain = domains.pop()
        self.calls.append([r.address for r in recipients])
        self.active[domain] = self.active.get(domain, 0) + 1
        self.peak[domain] = max(self.peak.get(domain, 0), self.active[domain])
        gate = asyncio.Event()
        self.entered.put_nowait((domain, gate))
        try:
            await gate.wait()
        finally:
            self.active[domain] -= 1
        return [DeliveryResult(r.address, Outcome.SENT, "2.0.0", "250 ok", f"mx.{domain}[192.0.2.9]:25")
                for r in recipients]


def queue(spool: Spool, *rcpts: str) -> str:
    return spool.enqueue_sync(Envelope("fred@example.com", [Recipient(r) for r in rcpts]), DATA)


async def entered(transport: GateTransport) -> tuple[str, asyncio.Event]:
    return await asyncio.wait_for(transport.entered.get(), TIMEOUT)


def watch_parking(qm: QueueManager) -> asyncio.Queue[str]:
    """A queue of the IDs that found their destination full."""
    parked: asyncio.Queue[str] = asyncio.Queue()
    real = qm.slots.acquire

    def acquire(dest: tuple[str, str], qid: str) -> bool:
        ok = real(dest, qid)
        if not ok:
            parked.put_nowait(qid)
        return ok

    qm.slots.acquire = acquire  # type: ignore[method-assign]
    return parked


def test_at_most_n_deliveries_per_destination_and_waiting_is_no_failure(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailroom")
    for i in range(5):
        queue(spool, f"user{i}@gmail.test")
    transport = GateTransport()

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock,
                          default_destination_concurrency_limit=20,
                          smtp_destination_concurrency_limit=2)
        qm.register_transport("smtp", transport)
        parked = watch_parking(qm)
        await qm.start()
        first = [await entered(transport) for _ in range(2)]
        for _ in range(3):  # the other three messages found gmail full
            await asyncio.wait_for(parked.get(), TIMEOUT)
        both = await spool.enqueue(Envelope("fred@example.com", [
            Recipient("x@gmail.test"), Recipient("y@yahoo.test")]), DATA)
        qm.notify(both)  # yahoo must not wait for gmail
        assert await asyncio.wait_for(parked.get(), TIMEOUT) == both
        yahoo = await entered(transport)
        assert yahoo[0] == "yahoo.test"
        assert [d for d, _ in first] == ["gmail.test", "gmail.test"]
        assert transport.active == {"gmail.test": 2, "yahoo.test": 1}
        assert len(qm.slots.waiting(("smtp", "gmail.test"))) == 4
        yahoo[1].set()
        gates = [gate for _, gate in first]
        for _ in range(4):  # each freed slot lets exactly one waiter in
            gates.pop(0).set()
            domain, gate = await entered(transport)
            assert domain == "gmail.test" and transport.active["gmail.test"] == 2
            gates.append(gate)
        for gate in gates:
            gate.set()
        await asyncio.wait_for(qm.run_queue(), TIMEOUT)
        await qm.stop()

    asyncio.run(main())
    assert transport.peak == {"gmail.test": 2, "yahoo.test": 1}
    assert sorted(transport.calls) == sorted(
        [[f"user{i}@gmail.test"] for i in range(5)] + [["x@gmail.test"], ["y@yahoo.test"]])
    assert spool.list_ids() == []
    assert "status=deferred" not in caplog.text  # waiting for a slot is not a failed attempt


def test_waiting_recipients_keep_their_state_and_the_message_is_not_due_meanwhile(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    queue(spool, "a@gmail.test")
    transport = GateTransport()

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock,
                          smtp_destination_concurrency_limit=1)
        qm.register_transport("smtp", transport)
        parked = watch_parking(qm)
        await qm.start()
        domain, gate = await entered(transport)
        assert domain == "gmail.test"
        waiter = await spool.enqueue(Envelope("fred@example.com", [
            Recipient("b@gmail.test"), Recipient("c@yahoo.test")]), DATA)
        qm.notify(waiter)
        assert await asyncio.wait_for(parked.get(), TIMEOUT) == waiter
        _, yahoo_gate = await entered(transport)
        yahoo_gate.set()
        await asyncio.wait_for(asyncio.shield(qm._inflight[waiter]), TIMEOUT)  # yahoo recorded, saved
        env, _ = spool.load(waiter)
        assert [(r.address, r.status, r.attempts) for r in env.recipients] == [
            ("b@gmail.test", "deferred", 0), ("c@yahoo.test", "delivered", 1)]
        assert qm.scheduled()[waiter] == clock.now + qm.queue_run_delay  # waits for a slot, not a time
        gate.set()  # the holder finishes: its slot goes to the waiter
        domain, gate = await entered(transport)
        assert domain == "gmail.test"
        gate.set()
        await asyncio.wait_for(qm.run_queue(), TIMEOUT)
        await qm.stop()

    asyncio.run(main())
    assert transport.calls == [["a@gmail.test"], ["c@yahoo.test"], ["b@gmail.test"]]
    assert spool.list_ids() == []


def test_destination_is_the_routers_next_hop(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    """With a relayhost every remote domain shares one destination, as in Postfix."""
    queue(spool, "a@gmail.test")
    queue(spool, "b@yahoo.test")
    transport = GateTransport()
    transport.router = Router((), "[relay.example.net]:587", directory.is_local_domain)  # type: ignore[attr-defined]

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock,
                          smtp_destination_concurrency_limit=1)
        qm.register_transport("smtp", transport)
        parked = watch_parking(qm)
        await qm.start()
        _, gate = await entered(transport)
        await asyncio.wait_for(parked.get(), TIMEOUT)
        assert qm.slots.busy(("smtp", "[relay.example.net]:587")) == 1
        gate.set()
        _, gate = await entered(transport)
        gate.set()
        await asyncio.wait_for(qm.run_queue(), TIMEOUT)
        await qm.stop()

    asyncio.run(main())
    assert transport.peak == {"gmail.test": 1, "yahoo.test": 1}
    assert spool.list_ids() == []


def test_local_delivery_is_not_limited(
        spool: Spool, directory: FakeDirectory, tmp_path: Path, clock: FakeClock) -> None:
    for _ in range(3):
        queue(spool, "john@example.org", "lisa@example.org")

    async def main() -> None:
        qm = QueueManager(spool, directory, tmp_path / "mail", "mx.example.org", clock,
                          default_destination_concurrency_limit=1,
                          smtp_destination_concurrency_limit=1)
        parked = watch_parking(qm)
        await qm.start()
        await asyncio.wait_for(qm.run_queue(), TIMEOUT)
        await qm.stop()
        assert parked.empty()

    asyncio.run(main())
    assert spool.list_ids() == []
