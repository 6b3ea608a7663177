"""Group commit: requests that arrive together run in one batch, each answered alone.

The batches here run on a real asyncio loop with real concurrency; what a batch does to a
database is tested with the writers that use it (test_outcomes.py, the move-on tests).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from domain.db.group_commit import GroupCommit


class Recorder:
    """A batch runner that records every batch and answers each request with its double."""

    def __init__(self, *, pause: float = 0.005) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.pause = pause

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.pause)  # a database round trip, as far as callers can see
        finally:
            self.running -= 1
        return [ValueError(f"refused {i}") if i < 0 else 2 * i for i in items]


async def test_a_lone_request_runs_at_once_in_a_batch_of_its_own() -> None:
    runner = Recorder()
    batches = GroupCommit(runner, key=lambda i: i)
    assert await batches.submit(21) == 42
    assert runner.batches == [[21]]


async def test_requests_arriving_together_share_batches_and_each_gets_its_own_answer() -> None:
    runner = Recorder()
    batches = GroupCommit(runner, key=lambda i: i, most=16)
    items = list(range(1, 101))
    answers = await asyncio.gather(*(batches.submit(i) for i in items))
    assert answers == [2 * i for i in items]
    assert sorted(i for batch in runner.batches for i in batch) == items  # each ran once
    assert len(runner.batches) < len(items) / 4  # grouped, not one by one
    assert max(len(batch) for batch in runner.batches) <= 16
    assert (batches.requests, batches.batches) == (100, len(runner.batches))


async def test_a_refusal_is_the_answer_of_its_own_request_only() -> None:
    runner = Recorder()
    batches = GroupCommit(runner, key=lambda i: i)
    answers = await asyncio.gather(
        *(batches.submit(i) for i in (1, -2, 3, -4, 5)), return_exceptions=True
    )
    assert answers[0::2] == [2, 6, 10]
    assert [str(a) for a in answers[1::2]] == ["refused -2", "refused -4"]
    assert len(runner.batches) <= 2


async def test_a_batch_that_fails_as_a_whole_fails_each_of_its_requests() -> None:
    away = True

    async def flaky(items: list[int]) -> Sequence[int]:
        await asyncio.sleep(0)
        if away:
            raise ConnectionError("the database went away")
        return items

    batches = GroupCommit(flaky, key=lambda i: i)
    answers = await asyncio.gather(*(batches.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    away = False
    assert await batches.submit(4) == 4  # and the next batches run as usual


async def test_a_batch_answering_the_wrong_number_of_results_fails_instead_of_hanging() -> None:
    async def short(items: list[int]) -> Sequence[int]:
        return items[:-1]

    batches = GroupCommit(short, key=lambda i: i)
    answers = await asyncio.gather(*(batches.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(a, RuntimeError) for a in answers)


@pytest.mark.parametrize("concurrent", [1, 3])
async def test_one_request_per_key_among_all_running_batches(concurrent: int) -> None:
    """Two requests on one customer never share a batch, nor run in two batches at once."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    in_flight: set[int] = set()
    clashes: list[int] = []
    seen: list[list[int]] = []

    async def run(items: list[int]) -> Sequence[int]:
        keys = [i % 7 for i in items]
        seen.append(keys)
        clashes.extend(k for k in keys if k in in_flight)
        in_flight.update(keys)
        await asyncio.sleep(rng.random() * 0.003)
        in_flight.difference_update(keys)
        return items

    batches = GroupCommit(run, key=lambda i: i % 7, most=64, concurrent=concurrent)
    items = list(range(300))
    assert await asyncio.gather(*(batches.submit(i) for i in items)) == items
    assert clashes == []
    assert all(len(keys) == len(set(keys)) for keys in seen)


async def test_a_batch_holds_requests_of_one_group_only() -> None:
    runner = Recorder()
    batches = GroupCommit(runner, key=lambda i: i, group=lambda i: i % 3)
    items = list(range(60))
    await asyncio.gather(*(batches.submit(i) for i in items))
    assert all(len({i % 3 for i in batch}) == 1 for batch in runner.batches)
    assert sorted(i for batch in runner.batches for i in batch) == items


async def test_no_more_than_concurrent_batches_run_at_once() -> None:
    runner = Recorder(pause=0.01)
    batches = GroupCommit(runner, key=lambda i: i, most=4, concurrent=2)
    await asyncio.gather(*(batches.submit(i) for i in range(40)))
    assert runner.most_running == 2


async def test_a_request_whose_caller_gave_up_before_its_batch_started_is_left_out() -> None:
    runner = Recorder(pause=0.02)
    batches = GroupCommit(runner, key=lambda i: i)
    first = asyncio.create_task(batches.submit(1))  # runs at once, alone
    await asyncio.sleep(0.005)
    waiting = asyncio.create_task(batches.submit(2))  # waits for the next batch
    await asyncio.sleep(0.001)
    waiting.cancel()
    assert await batches.submit(3) == 6
    assert await first == 2
    assert waiting.cancelled()
    assert [i for batch in runner.batches for i in batch] == [1, 3]


async def test_a_request_arriving_as_the_last_batch_ends_is_never_left_waiting() -> None:
    """The request comes in after the runner found the queue empty but before the runner has
    ended (its wake-up scheduled by the batch itself): it must still run."""
    for _ in range(50):
        await _late_request_round()


async def _late_request_round() -> None:
    ready = asyncio.Event()

    async def run(items: list[int]) -> Sequence[int]:
        await asyncio.sleep(0)
        if items == [1]:
            ready.set()  # `late` wakes up before the runner's end is handled
        return items

    batches = GroupCommit(run, key=lambda i: i)

    async def late() -> int:
        await ready.wait()
        return await batches.submit(2)

    waiter = asyncio.create_task(late())
    assert await batches.submit(1) == 1
    assert await asyncio.wait_for(waiter, timeout=5) == 2
