from __future__ import annotations

import functools
import random
import threading

from mailroom.queue.ids import QUEUE_ID_LENGTH, QueueIdGenerator, is_queue_id


def test_shape_and_validation() -> None:
    qid = QueueIdGenerator()()
    assert len(qid) == QUEUE_ID_LENGTH == 16
    assert is_queue_id(qid)
    assert qid.isalnum() and qid.upper() == qid
    for bad in ("", "../../etc/passwd", qid.lower(), qid + "0", qid[:-1] + "/", qid[:-1] + "I"):
        assert not is_queue_id(bad)


def test_unique_within_one_microsecond_and_across_threads() -> None:
    gen = QueueIdGenerator(clock=lambda: 1_800_000_000.5, rng=random.Random(1))
    ids: list[str] = []

    def work() -> None:
        ids.extend(gen() for _ in range(200))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 800


def test_processes_differ_by_pid_and_ids_sort_by_time() -> None:
    a = QueueIdGenerator(clock=lambda: 1000.0, rng=random.Random(0), pid=100)()
    b = QueueIdGenerator(clock=lambda: 1000.0, rng=random.Random(0), pid=101)()
    assert a != b
    early = QueueIdGenerator(clock=lambda: 1000.0, pid=1)()
    late = QueueIdGenerator(clock=lambda: 1000.000001, pid=1)()
    later = QueueIdGenerator(clock=lambda: 1001.0, pid=1)()
    assert early < late < later


def test_ids_are_the_four_parts_in_base32() -> None:
    from mailroom.queue.ids import _encode

    rng = random.Random(7)
    for _ in range(500):
        now = rng.uniform(0, 2**35 - 1)
        pid = rng.randrange(1, 4_194_304)
        gen = QueueIdGenerator(clock=functools.partial(float, now), rng=random.Random(3), pid=pid)
        start = random.Random(3).randrange(32**2)
        for k in range(3):
            seconds, micros = divmod(round(now * 1_000_000), 1_000_000)
            assert gen() == (_encode(seconds, 7) + _encode(micros, 4) + _encode(pid, 3)
                             + _encode(start + k, 2))
