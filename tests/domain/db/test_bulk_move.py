"""Rule 20 (with 1, 3, 5, 21, 24): moves of one customer or a filter, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bulk_world import NOW, customers_of, history_counts
from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import create_move_job, move_customer, run_bulk_job
from domain.db.jobs import JobProgress
from domain.errors import Forbidden, Invalid, NotFound, WatertightError
from domain.model import FollowUpKind, HistoryKind


async def move(engine, world, filter_data, store, **target):
    async with engine.begin() as conn:
        job = await create_move_job(conn, world.supervisor, filter_data, NOW, **target)
    return await run_bulk_job(engine, job.id, selections=store, batch_size=100)


async def follow_up(engine, customer_id, assignment_id, user_id):
    async with engine.begin() as conn:
        return await repo.create_follow_up(
            conn,
            customer_id=customer_id,
            assignment_id=assignment_id,
            kind=FollowUpKind.PERSONAL,
            due_at=NOW + timedelta(days=1),
            owner_user_id=user_id,
            now=NOW,
        )


async def test_rule_20_move_to_segment_keeps_status_and_follow_ups(engine, new_world, store):
    world = await new_world(customers=[{"status": "interested"}, {"segment": "North"}, {}])
    ids = world.customer_ids
    await follow_up(engine, ids[0], world.assignment.id, world.agents[0].id)
    north = world.segment("North")
    done = await move(
        engine, world, {"assignment_id": world.assignment.id}, store, to_segment_id=north
    )
    assert done.report["summary"] == "2 of 3 moved; 1 already there"
    rows = await customers_of(engine, ids)
    assert {r.segment_id for r in rows.values()} == {north}
    assert rows[ids[0]].status == "interested"
    async with engine.connect() as conn:
        assert len(await repo.open_follow_ups_for_customer(conn, ids[0])) == 1


async def test_rule_20_move_to_assignment_drops_status_and_follow_ups_keeps_history(
    engine, new_world, store
):
    world = await new_world(customers=[{"status": "interested", "segment": "North"}, {}])
    ids = world.customer_ids
    fu = await follow_up(engine, ids[0], world.assignment.id, world.agents[0].id)
    async with engine.begin() as conn:
        await repo.add_history(
            conn,
            repo.HistoryEvent(
                ids[0], HistoryKind.ATTEMPT, NOW, world.agents[0].id, world.assignment.id
            ),
        )
    done = await move(
        engine,
        world,
        {"assignment_id": world.assignment.id},
        store,
        to_assignment_id=world.other.id,
    )
    assert done.report["changed"] == 2 and done.report["follow_ups_ended"] == 1
    rows = await customers_of(engine, ids)
    for r in rows.values():
        assert (r.assignment_id, r.segment_id, r.status) == (
            world.other.id,
            world.other.unsegmented.id,
            "available",
        )
        assert r.shared_follow_up_at is None
    async with engine.connect() as conn:
        assert await repo.open_follow_ups_for_customer(conn, ids[0]) == []
        history = await repo.list_history(conn, ids[0])
    assert [e.kind for e in history] == [
        HistoryKind.ATTEMPT,
        HistoryKind.FOLLOW_UP_ENDED,
        HistoryKind.MOVED,
    ]
    job = done.id
    ended, moved = history[1], history[2]
    assert ended.assignment_id == world.assignment.id
    assert ended.data == {
        "follow_up_id": fu.id,
        "kind": "personal",
        "reason": "moved",
        "job": job,
    }
    assert (moved.user_id, moved.assignment_id) == (world.supervisor.id, world.other.id)
    assert moved.data == {
        "from_assignment_id": world.assignment.id,
        "from_segment_id": world.segment("North"),
        "to_assignment_id": world.other.id,
        "to_segment_id": world.other.unsegmented.id,
        "from_status": "interested",
        "status": "available",
        "job": job,
    }


async def test_rule_20_moves_across_the_wall_are_refused(engine, new_world, store):
    world = await new_world(n=2)
    filt = {"assignment_id": world.assignment.id}
    with pytest.raises(WatertightError, match="B2C and a B2B"):
        await move(engine, world, filt, store, to_assignment_id=world.b2b.id)
    with pytest.raises(NotFound):  # not granted: answers like a missing one (rule 3)
        await move(engine, world, filt, store, to_assignment_id=world.hidden.id)
    stranger = await new_world(n=1)
    with pytest.raises(NotFound):
        await move(engine, world, filt, store, to_assignment_id=stranger.assignment.id)
    with pytest.raises(Invalid, match="already in this assignment"):
        await move(engine, world, filt, store, to_assignment_id=world.assignment.id)
    with pytest.raises(Invalid, match="no such segment"):
        await move(engine, world, filt, store, to_segment_id=world.other.unsegmented.id)
    with pytest.raises(Invalid, match="one of them"):
        await move(engine, world, filt, store)
    async with engine.connect() as conn:
        jobs = (
            await conn.execute(
                select(t.bulk_jobs).where(t.bulk_jobs.c.data_owner_id == world.owner)
            )
        ).all()
    assert jobs == []
    rows = await customers_of(engine, world.customer_ids)
    assert {r.assignment_id for r in rows.values()} == {world.assignment.id}


async def test_rule_21_bulk_move_counts_selections_made_while_it_runs(engine, new_world, store):
    world = await new_world(n=1000)
    ids = world.customer_ids
    await store.mark_ready(world.owner)
    late = [ids[400], ids[650], ids[999]]  # in batches still to come

    async def agents_select(p: JobProgress) -> None:
        if p.processed == 100:
            for agent, customer_id in zip(world.agents, late, strict=True):
                await store.select(
                    world.owner, agent.id, customer_id, assignment_id=world.assignment.id
                )

    async with engine.begin() as conn:
        job = await create_move_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id},
            NOW,
            to_assignment_id=world.other.id,
        )
    done = await run_bulk_job(
        engine, job.id, selections=store, batch_size=100, on_progress=agents_select
    )
    assert done.report["summary"] == "997 of 1000 moved; 3 selected"
    assert done.report["selected_seen_in"] == {"database": 0, "redis": 3}
    rows = await customers_of(engine, ids)
    stayed = {i for i, r in rows.items() if r.assignment_id == world.assignment.id}
    assert stayed == set(late)
    moved = await history_counts(engine, ids, HistoryKind.MOVED)
    assert set(moved) == set(ids) - set(late)


async def test_rule_20_one_customer_moves_unless_selected(engine, new_world, store):
    world = await new_world(n=2)
    a, b = world.customer_ids
    report = await move_customer(
        engine, world.supervisor, a, store, NOW, to_assignment_id=world.other.id
    )
    assert report.summary == "1 of 1 moved"
    await store.mark_ready(world.owner)
    await store.select(world.owner, world.agents[0].id, b)
    with pytest.raises(Forbidden, match="selected"):
        await move_customer(
            engine, world.supervisor, b, store, NOW, to_assignment_id=world.other.id
        )
    rows = await customers_of(engine, [a, b])
    assert (rows[a].assignment_id, rows[b].assignment_id) == (world.other.id, world.assignment.id)


async def test_rule_21_a_customer_changed_after_the_job_began_is_counted(engine, new_world, store):
    world = await new_world(n=5)
    ids = world.customer_ids
    async with engine.begin() as conn:
        job = await create_move_job(
            conn,
            world.supervisor,
            {"assignment_id": world.assignment.id, "statuses": ["available"]},
            NOW,
            to_segment_id=world.segment("North"),
        )
        assert job.expected == 5
    async with engine.begin() as conn:  # an agent's outcome lands before the job runs
        await conn.execute(
            t.customers.update().where(t.customers.c.id == ids[1]).values(status="sale")
        )
    done = await run_bulk_job(engine, job.id, selections=store)
    assert done.report["summary"] == "4 of 5 moved; 1 no longer matching"
    rows = await customers_of(engine, ids)
    assert rows[ids[1]].segment_id == world.assignment.unsegmented.id
