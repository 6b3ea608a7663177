"""Rule 21: bulk jobs are batched, resumable after their node dies (no customer changed twice,
none forgotten), held by one node at a time, and report their progress."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from bulk_world import NOW, customers_of, history_counts
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bulk import JobStatus
from domain.db.bulk import create_mass_outcome_job, create_move_job, run_bulk_job
from domain.db.jobs import JobBusy, JobProgress, LeaseLost, get_job, progress_stream
from domain.db.repositories import utcnow
from domain.model import HistoryKind

RUNNER = Path(__file__).with_name("bulk_runner.py")
LEASE_S = 3
"""The runner's lease: long enough that a busy machine's slow batch never loses it."""


class Crash(Exception):
    pass


async def test_rule_21_bulk_move_resumes_after_its_node_is_killed(
    engine: AsyncEngine, database, redis_url, new_world, store
) -> None:
    world = await new_world(n=200)
    async with engine.begin() as conn:
        job = await create_move_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id},
            NOW,
            to_assignment_id=world.other.id,
        )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        str(database["url"]),
        str(database["schema"] or ""),
        redis_url,
        str(job.id),
        "20",  # batch size
        "0.15",  # pause inside each batch, rows locked
        str(LEASE_S),  # lease seconds
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(RUNNER.parents[3])},
    )
    assert process.stdout is not None
    batches = 0
    while batches < 4:  # the initial report, then three committed batches
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line:
            assert process.stderr is not None
            why = (await process.stderr.read()).decode(errors="replace")[-2000:]
            raise AssertionError(f"the runner ended before it was killed:\n{why}")
        batches += line.startswith(b"batch")
    await asyncio.sleep(0.05)  # into the next batch's open transaction
    process.send_signal(signal.SIGKILL)
    await process.wait()
    async with engine.connect() as conn:
        crashed = await get_job(conn, job.id)
    assert crashed is not None and crashed.status is JobStatus.RUNNING
    assert 60 <= crashed.counts["changed"] < 200
    # Another node may take over only once the dead node's lease ran out.
    with pytest.raises(JobBusy):
        await run_bulk_job(engine, job.id, selections=store)
    await asyncio.sleep(LEASE_S + 0.1)
    done = await run_bulk_job(engine, job.id, selections=store, batch_size=20)
    assert done.status is JobStatus.DONE
    assert (done.report["matched"], done.report["changed"]) == (200, 200)
    moved = await history_counts(engine, world.customer_ids, HistoryKind.MOVED)
    assert moved == dict.fromkeys(world.customer_ids, 1)  # each exactly once
    rows = await customers_of(engine, world.customer_ids)
    assert {r.assignment_id for r in rows.values()} == {world.other.id}


async def test_rule_21_mass_outcome_resumes_after_a_crash_between_batches(
    engine: AsyncEngine, new_world, store
) -> None:
    world = await new_world(n=50)
    async with engine.begin() as conn:
        job = await create_mass_outcome_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id},
            "sale",
            {"price_plan": "F"},
            NOW,
        )
    seen: list[int] = []

    def crash_after_two(p: JobProgress) -> None:
        seen.append(p.processed)
        if len(seen) == 3:
            raise Crash

    with pytest.raises(Crash):
        await run_bulk_job(
            engine,
            job.id,
            selections=store,
            batch_size=10,
            on_progress=crash_after_two,
            node="first",
        )
    assert seen == [0, 10, 20]
    later = lambda: utcnow() + timedelta(minutes=5)  # noqa: E731 - the first node's lease ran out
    done = await run_bulk_job(engine, job.id, selections=store, batch_size=10, clock=later)
    assert (done.report["matched"], done.report["changed"]) == (50, 50)
    outcomes = await history_counts(engine, world.customer_ids, HistoryKind.OUTCOME)
    assert outcomes == dict.fromkeys(world.customer_ids, 1)
    # The first node comes back: its lease is gone, and so is the job.
    again = await run_bulk_job(engine, job.id, selections=store, node="first")
    assert again.status is JobStatus.DONE


async def test_a_node_whose_lease_was_taken_over_cannot_commit_a_batch(
    engine: AsyncEngine, new_world, store
) -> None:
    world = await new_world(n=30)
    async with engine.begin() as conn:
        job = await create_move_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id},
            NOW,
            to_segment_id=world.segment("North"),
        )
    taken_over = False

    async def takeover(p: JobProgress) -> None:
        nonlocal taken_over
        if p.processed == 10 and not taken_over:
            taken_over = True
            later = lambda: utcnow() + timedelta(minutes=5)  # noqa: E731
            await run_bulk_job(engine, job.id, selections=store, batch_size=10, clock=later)

    with pytest.raises(LeaseLost):
        await run_bulk_job(engine, job.id, selections=store, batch_size=10, on_progress=takeover)
    async with engine.connect() as conn:
        done = await get_job(conn, job.id)
    assert done is not None and done.report is not None
    assert (done.report["matched"], done.report["changed"]) == (30, 30)
    moved = await history_counts(engine, world.customer_ids, HistoryKind.MOVED)
    assert moved == dict.fromkeys(world.customer_ids, 1)


async def test_progress_comes_after_every_batch_as_an_async_iterator(
    engine: AsyncEngine, new_world, store
) -> None:
    world = await new_world(n=25)
    async with engine.begin() as conn:
        job = await create_move_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id},
            NOW,
            to_segment_id=world.segment("South"),
        )
    stream = progress_stream(
        lambda hook: run_bulk_job(engine, job.id, selections=store, batch_size=10, on_progress=hook)
    )
    seen = [p async for p in stream]
    assert [p.processed for p in seen] == [0, 10, 20, 25, 25]
    assert [p.expected for p in seen] == [25] * 5
    assert seen[-1].status is JobStatus.DONE and seen[-1].fraction == 1.0
    assert seen[-1].report is not None and seen[-1].report["summary"] == "25 of 25 moved"
