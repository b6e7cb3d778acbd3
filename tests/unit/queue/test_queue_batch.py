from __future__ import annotations

import asyncio

import pytest

from mailroom.queue.batch import BatchThread


def test_jobs_submitted_together_run_as_one_batch_with_their_own_results() -> None:
    seen: list[list[int]] = []

    def handler(jobs: list[int]) -> list[int | BaseException]:
        seen.append(jobs)
        return [ValueError(j) if j == 3 else j * 10 for j in jobs]

    worker: BatchThread[int, int] = BatchThread("test", handler)

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(*(worker.submit(j) for j in range(6)), return_exceptions=True)

    results = asyncio.run(main())
    worker.close()
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError)
    assert sorted(j for batch in seen for j in batch) == list(range(6))
    assert worker.batches == len(seen) < 6 and worker.jobs == 6


def test_a_failing_handler_fails_the_whole_batch_and_the_thread_goes_on() -> None:
    calls = 0

    def handler(jobs: list[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk on fire")
        return jobs

    worker: BatchThread[str, str] = BatchThread("test", handler)

    async def main() -> None:
        with pytest.raises(OSError, match="disk on fire"):
            await worker.submit("a")
        assert await worker.submit("b") == "b"

    asyncio.run(main())
    worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(worker.submit("c"))


def test_a_cancelled_waiter_does_not_break_the_batch() -> None:
    def handler(jobs: list[int]) -> list[int | BaseException]:
        return jobs

    worker: BatchThread[int, int] = BatchThread("test", handler)

    async def main() -> int:
        doomed = asyncio.ensure_future(worker.submit(1))
        survivor = asyncio.ensure_future(worker.submit(2))
        await asyncio.sleep(0)
        doomed.cancel()
        return await survivor

    assert asyncio.run(main()) == 2
    worker.close()
