"""Rule 19 (with 21, 23, 24): mass outcome on a filter, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bulk_world import NOW, customers_of, history_counts
from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import create_mass_outcome_job, preview, run_bulk_job
from domain.errors import FlowError, Invalid, InvalidTransition, NotFound
from domain.model import FollowUpKind, HistoryKind


async def start(engine, world, filter_data, outcome, details=None, **kw):
    async with engine.begin() as conn:
        return await create_mass_outcome_job(
            conn, world.supervisor, filter_data, outcome, details or {}, NOW, **kw
        )


async def test_rule_19_mass_outcome_changes_every_matching_customer(engine, new_world, store):
    world = await new_world(n=30)
    filt = {"assignment_id": world.assignment.id, "statuses": ["available"]}
    job = await start(engine, world, filt, "sale", {"price_plan": "Fixed"})
    assert job.expected == 30
    done = await run_bulk_job(engine, job.id, selections=store, batch_size=7)
    assert done.report["matched"] == 30
    assert done.report["changed"] == 30
    rows = await customers_of(engine, world.customer_ids)
    assert {r.status for r in rows.values()} == {"sale"}
    outcomes = await history_counts(engine, world.customer_ids, HistoryKind.OUTCOME)
    assert outcomes == dict.fromkeys(world.customer_ids, 1)
    async with engine.connect() as conn:
        h = (
            await conn.execute(
                select(t.history).where(t.history.c.customer_id == world.customer_ids[0])
            )
        ).one()
    assert (h.kind, h.user_id, h.assignment_id) == (
        HistoryKind.OUTCOME.value,
        world.supervisor.id,  # rule 24: with who
        world.assignment.id,
    )
    assert h.data == {
        "outcome": "sale",
        "from_status": "available",
        "to_status": "sale",
        "details": {"price_plan": "Fixed"},
        "job": job.id,
    }


async def test_rule_19_only_outcomes_valid_from_every_status_present(engine, new_world, store):
    world = await new_world(customers=[{"status": "available"}, {"status": "interested"}])
    filt = {"assignment_id": world.assignment.id}
    async with engine.connect() as conn:
        seen = await preview(conn, world.supervisor, filt, store)
    assert seen.matched == 2
    assert seen.statuses == {"available": 1, "interested": 1}
    assert seen.outcome_options == ("sale",)
    with pytest.raises(InvalidTransition) as refused:
        await start(engine, world, filt, "interested", follow_up_at=NOW + timedelta(days=1))
    assert refused.value.details["allowed"] == ["sale"]
    # A filter naming one status opens that status's outcomes.
    only = {**filt, "statuses": ["interested"]}
    job = await start(engine, world, only, "no_thanks")
    done = await run_bulk_job(engine, job.id, selections=store)
    assert done.report["changed"] == 1


async def test_rule_19_details_are_checked_before_anything_happens(engine, new_world, store):
    world = await new_world(n=3)
    filt = {"assignment_id": world.assignment.id}
    with pytest.raises(FlowError, match="Price plan"):
        await start(engine, world, filt, "sale", {})
    with pytest.raises(FlowError, match="no detail field 'colour'"):
        await start(engine, world, filt, "sale", {"price_plan": "F", "colour": "red"})
    with pytest.raises(Invalid, match="needs a follow-up time"):
        await start(engine, world, filt, "interested")
    async with engine.connect() as conn:
        jobs = (
            await conn.execute(
                select(t.bulk_jobs).where(t.bulk_jobs.c.data_owner_id == world.owner)
            )
        ).all()
    assert jobs == []
    rows = await customers_of(engine, world.customer_ids)
    assert {r.status for r in rows.values()} == {"available"}


async def test_rule_21_mass_outcome_skips_selected(engine, new_world, store):
    world = await new_world(n=10)
    ids = world.customer_ids
    await store.mark_ready(world.owner)
    await store.select(world.owner, world.agents[0].id, ids[2])  # Redis only, not yet recorded
    async with engine.begin() as conn:  # recorded in the database (its Redis side lost)
        await conn.execute(
            t.customers.update()
            .where(t.customers.c.id == ids[5])
            .values(holder_user_id=world.agents[1].id, selection_token=1, selected_at=NOW)
        )
    async with engine.connect() as conn:
        seen = await preview(conn, world.supervisor, {"assignment_id": world.assignment.id}, store)
    assert (seen.matched, seen.selected) == (10, 2)
    job = await start(
        engine, world, {"assignment_id": world.assignment.id}, "sale", {"price_plan": "F"}
    )
    done = await run_bulk_job(engine, job.id, selections=store, batch_size=4)
    report = done.report
    assert (report["matched"], report["changed"], report["skipped"]) == (10, 8, {"selected": 2})
    assert report["selected_seen_in"] == {"database": 1, "redis": 1}
    assert report["summary"] == "8 of 10 changed; 2 selected"
    rows = await customers_of(engine, ids)
    assert rows[ids[2]].status == rows[ids[5]].status == "available"
    outcomes = await history_counts(engine, ids, HistoryKind.OUTCOME)
    assert set(outcomes) == set(ids) - {ids[2], ids[5]}


async def test_rule_19_mass_outcome_makes_the_outcomes_follow_ups(engine, new_world, store):
    world = await new_world(n=4)
    due = NOW + timedelta(days=2)
    filt = {"assignment_id": world.assignment.id}
    job = await start(engine, world, filt, "later", follow_up_at=due)
    done = await run_bulk_job(engine, job.id, selections=store)
    assert done.report["follow_ups_created"] == 4
    rows = await customers_of(engine, world.customer_ids)
    assert {r.shared_follow_up_at for r in rows.values()} == {due}
    async with engine.connect() as conn:
        made = (
            await conn.execute(
                select(t.follow_ups).where(t.follow_ups.c.customer_id.in_(world.customer_ids))
            )
        ).all()
    assert {(f.kind, f.owner_user_id) for f in made} == {(FollowUpKind.SHARED.value, None)}
    created = await history_counts(engine, world.customer_ids, HistoryKind.FOLLOW_UP_CREATED)
    assert created == dict.fromkeys(world.customer_ids, 1)
    async with engine.connect() as conn:
        history = await repo.list_history(conn, world.customer_ids[0])
    assert [e.kind for e in history] == [HistoryKind.OUTCOME, HistoryKind.FOLLOW_UP_CREATED]
    mine = next(f for f in made if f.customer_id == world.customer_ids[0])
    assert (history[1].assignment_id, history[1].data) == (
        world.assignment.id,
        {"follow_up_id": mine.id, "kind": "shared", "due_at": due.isoformat(), "job": job.id},
    )


async def test_rule_23_mass_outcome_queues_sms_only_with_automatic_sms(engine, new_world, store):
    on = await new_world(customers=[{"info": {"city": "Bodø"}}, {"phones": []}])
    job = await start(engine, on, {"assignment_id": on.assignment.id}, "sale", {"price_plan": "F"})
    done = await run_bulk_job(engine, job.id, selections=store)
    assert done.report["sms_queued"] == 1  # the second customer has no phone
    async with engine.connect() as conn:
        sms = (
            await conn.execute(select(t.sms_outbox).where(t.sms_outbox.c.data_owner_id == on.owner))
        ).one()
    assert sms.body == "Takk Customer 0! Prisplan F. Kommune: Bodø"
    assert sms.event_key == f"bulk:{job.id}:{on.customer_ids[0]}"
    off = await new_world(n=2, auto_sms=False)
    job = await start(
        engine, off, {"assignment_id": off.assignment.id}, "sale", {"price_plan": "F"}
    )
    done = await run_bulk_job(engine, job.id, selections=store)
    assert done.report["sms_queued"] == 0


async def test_mass_outcome_on_an_assignment_not_granted_does_not_exist(engine, new_world, store):
    world = await new_world(n=1)
    with pytest.raises(NotFound):
        await start(engine, world, {"assignment_id": world.hidden.id}, "sale", {"price_plan": "F"})
    other = await new_world(n=1)
    with pytest.raises(NotFound):
        await start(
            engine, world, {"assignment_id": other.assignment.id}, "sale", {"price_plan": "F"}
        )
