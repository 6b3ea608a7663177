"""Demo data: `seed_demo` (two tenants, CRMs, flows, users, customers) and `seed_customers`
(bulk customers for scale work: COPY on PostgreSQL, a million in well under two minutes).

Both are deterministic (random.Random with fixed seeds) and safe to call again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import demo
from domain.db import tables as t
from domain.db.repositories import (
    create_assignment,
    create_crm,
    create_data_owner,
    create_follow_up,
    create_user,
    get_data_owner_by_name,
    grant,
    insert_customer_records,
    max_numeric_external_id,
    utcnow,
)
from domain.flows import AVAILABLE
from domain.model import Assignment, FollowUpKind, HistoryKind, Role, User

FIRST_EXTERNAL_ID = 100_001

# Status mix of the demo customers per assignment (weights).
_STATUS_MIX = {
    demo.FIXED_PRICE: {
        AVAILABLE: 80,
        "interested": 5,
        "sale_to_followup": 4,
        "sale": 5,
        "not_interested": 4,
        "wrong_number": 2,
    },
    demo.WIN_BACK: {
        AVAILABLE: 82,
        "interested": 4,
        "offer_sent": 4,
        "won_back": 3,
        "not_interested": 4,
        "moved": 2,
        "wrong_number": 1,
    },
    demo.ENERGY_AUDIT: {
        AVAILABLE: 80,
        "meeting_booked": 6,
        "audit_done": 3,
        "offer_sent": 3,
        "signed": 2,
        "not_relevant": 5,
        "wrong_number": 1,
    },
    demo.HOME_INSURANCE: {
        AVAILABLE: 85,
        "interested": 5,
        "renewed": 5,
        "not_interested": 4,
        "wrong_number": 1,
    },
}
# Statuses whose customers carry a personal follow-up in the demo.
_PERSONAL_STATUSES = {"sale_to_followup", "offer_sent", "meeting_booked", "interested"}


async def seed_demo(engine: AsyncEngine) -> dict[str, Any]:
    """Create the demo (see domain.db.demo) once; when the demo data owner exists already it
    does nothing. Returns a summary: created, data_owners, assignments, users, customers."""
    async with engine.connect() as conn:
        if await get_data_owner_by_name(conn, demo.NORDLYS) is not None:
            return await _summary(conn, created=False)
    try:
        async with engine.begin() as conn:
            await _build_demo(conn)
            return await _summary(conn, created=True)
    except IntegrityError:
        # Another process seeded it at the same moment: report theirs.
        async with engine.connect() as conn:
            if await get_data_owner_by_name(conn, demo.NORDLYS) is not None:
                return await _summary(conn, created=False)
        raise


async def _build_demo(conn: AsyncConnection) -> None:
    rng = random.Random(demo.DEMO_SEED)
    now = utcnow()
    owners = {
        name: await create_data_owner(conn, name, demo.TIMEZONE)
        for name in (demo.NORDLYS, demo.FJORD)
    }
    crms = {
        name: await create_crm(conn, owners[owner].id, name, kind, fields)
        for name, (owner, kind, fields) in demo.CRMS.items()
    }
    assignments: dict[str, Assignment] = {}
    for name, spec in demo.ASSIGNMENTS.items():
        assignments[name] = await create_assignment(
            conn,
            owners[spec["owner"]].id,
            crms[spec["crm"]].id,
            name,
            spec["flow"],
            spec["setup"],
            spec["segments"],
        )

    users: dict[str, User] = {}
    for owner, members in ((demo.NORDLYS, demo.NORDLYS_USERS), (demo.FJORD, demo.FJORD_USERS)):
        for username, role in members:
            user = await create_user(
                conn, owners[owner].id, username, demo.person_name(rng), Role(role), demo.PASSWORD
            )
            users[username] = user
            if user.role is Role.ADMIN:
                continue  # an admin sees every assignment of its data owner anyway
            for assignment in assignments.values():
                if assignment.data_owner_id == user.data_owner_id:
                    await grant(conn, user.id, assignment.id)

    next_external = {crm.id: FIRST_EXTERNAL_ID for crm in crms.values()}
    for name, spec in demo.ASSIGNMENTS.items():
        a = assignments[name]
        by_name = {s.name: s.id for s in a.segments}
        status = demo.status_picker(rng, _STATUS_MIX[name])
        start, n = next_external[a.crm_id], spec["customers"]
        common = {
            "data_owner_id": a.data_owner_id,
            "crm_id": a.crm_id,
            "assignment_id": a.id,
            "default_segment_id": a.unsegmented.id,
            "status": status,
        }
        if spec["kind"] == "b2b":
            records = demo.b2b_records(
                rng,
                start,
                n,
                large_segment_id=by_name["Large companies (50+)"],
                medium_segment_id=by_name["Medium companies (10-49)"],
                **common,
            )
        else:
            places = demo.REGION_OF if name == demo.HOME_INSURANCE else demo.CITY_OF
            records = demo.b2c_records(
                rng,
                start,
                n,
                segment_of={m: by_name[s] for m, s in places.items()},
                insurance=name == demo.HOME_INSURANCE,
                **common,
            )
        next_external[a.crm_id] = start + n
        await insert_customer_records(conn, [_with_attempts(rng, r, now) for r in records])
        await _demo_history_and_follow_ups(conn, rng, a, users, now)


def _with_attempts(rng: random.Random, record: tuple[Any, ...], now: datetime) -> tuple[Any, ...]:
    """Worked customers carry attempts; a quarter of the available ones were tried already."""
    status = record[9]
    if status != AVAILABLE or rng.random() < 0.25:
        attempts = 1 + int(rng.random() * 3)
        last = now - timedelta(minutes=30 + int(rng.random() * 60 * 24 * 10))
        return (*record[:10], attempts, last)
    return record


async def _demo_history_and_follow_ups(
    conn: AsyncConnection,
    rng: random.Random,
    assignment: Assignment,
    users: dict[str, User],
    now: datetime,
) -> None:
    rows = (
        await conn.execute(
            select(t.customers.c.id, t.customers.c.status)
            .where(t.customers.c.assignment_id == assignment.id)
            .order_by(t.customers.c.id)
        )
    ).all()
    created_at = now - timedelta(days=14)
    await conn.execute(
        insert(t.history),
        [
            {
                "customer_id": r.id,
                "at": created_at,
                "kind": HistoryKind.CREATED.value,
                "assignment_id": assignment.id,
                "data": {"source": "demo"},
            }
            for r in rows
        ],
    )
    agents = [
        u.id
        for u in users.values()
        if u.role is Role.AGENT and u.data_owner_id == assignment.data_owner_id
    ][:5]
    history: list[dict[str, Any]] = []
    shared_left = 8
    for i, r in enumerate(rows):
        kind, owner = None, None
        if r.status in _PERSONAL_STATUSES and agents:
            kind, owner = FollowUpKind.PERSONAL, agents[i % len(agents)]
        elif r.status == AVAILABLE and shared_left and rng.random() < 0.05:
            kind, shared_left = FollowUpKind.SHARED, shared_left - 1
        if kind is None:
            continue
        # Spread from yesterday (overdue) over the next four days, on whole quarter hours.
        due = now.replace(minute=0, second=0, microsecond=0) + timedelta(
            minutes=15 * int(rng.random() * 4 * 24 * 5) - 60 * 24
        )
        fu = await create_follow_up(
            conn,
            customer_id=r.id,
            assignment_id=assignment.id,
            kind=kind,
            due_at=due,
            owner_user_id=owner,
            created_by=owner,
            now=now - timedelta(days=2),
        )
        history.append(
            {
                "customer_id": r.id,
                "at": fu.created_at,
                "kind": HistoryKind.FOLLOW_UP_CREATED.value,
                "user_id": owner,
                "assignment_id": assignment.id,
                "data": {"follow_up_id": fu.id, "kind": kind.value, "due_at": due.isoformat()},
            }
        )
    if history:
        await conn.execute(insert(t.history), history)


async def _summary(conn: AsyncConnection, *, created: bool) -> dict[str, Any]:
    owners = (
        await conn.execute(
            select(t.data_owners)
            .where(t.data_owners.c.name.in_([demo.NORDLYS, demo.FJORD]))
            .order_by(t.data_owners.c.id)
        )
    ).all()
    owner_ids = [o.id for o in owners]
    assignments = (
        await conn.execute(
            select(
                t.assignments.c.id,
                t.assignments.c.name,
                t.assignments.c.data_owner_id,
                t.assignments.c.crm_id,
            )
            .where(t.assignments.c.data_owner_id.in_(owner_ids))
            .order_by(t.assignments.c.id)
        )
    ).all()
    counts = dict(
        (
            await conn.execute(
                select(t.customers.c.assignment_id, func.count())
                .where(t.customers.c.data_owner_id.in_(owner_ids))
                .group_by(t.customers.c.assignment_id)
            )
        ).all()
    )
    users = (
        await conn.execute(
            select(t.users.c.username, t.users.c.role, t.users.c.data_owner_id)
            .where(t.users.c.data_owner_id.in_(owner_ids))
            .order_by(t.users.c.id)
        )
    ).all()
    return {
        "created": created,
        "password": demo.PASSWORD,
        "data_owners": [{"id": o.id, "name": o.name, "timezone": o.timezone} for o in owners],
        "assignments": [
            {
                "id": a.id,
                "name": a.name,
                "data_owner_id": a.data_owner_id,
                "crm_id": a.crm_id,
                "customers": counts.get(a.id, 0),
            }
            for a in assignments
        ],
        "users": [u.username for u in users],
        "customers": sum(counts.values()),
    }


async def seed_customers(
    engine: AsyncEngine,
    n: int,
    *,
    batch: int = 50_000,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Add `n` available customers to the demo's first B2C assignment (creating the demo when
    missing), spread over its segments by municipality. External ids continue after the CRM's
    largest numeric one. Each batch is one COPY in its own transaction; `progress(done)` is called
    after each with the number of customers added so far (cumulative). Returns n."""
    if n <= 0:
        return 0
    await seed_demo(engine)
    async with engine.connect() as conn:
        owner = await get_data_owner_by_name(conn, demo.NORDLYS)
        assert owner is not None
        row = (
            await conn.execute(
                select(t.assignments.c.id, t.assignments.c.crm_id).where(
                    t.assignments.c.data_owner_id == owner.id,
                    t.assignments.c.name == demo.FIXED_PRICE,
                )
            )
        ).one()
        segments = (
            await conn.execute(
                select(t.segments.c.id, t.segments.c.name, t.segments.c.is_unsegmented).where(
                    t.segments.c.assignment_id == row.id
                )
            )
        ).all()
        start = max(await max_numeric_external_id(conn, row.crm_id) + 1, FIRST_EXTERNAL_ID)
    by_name = {s.name: s.id for s in segments}
    unsegmented = next(s.id for s in segments if s.is_unsegmented)
    segment_of = {m: by_name[s] for m, s in demo.CITY_OF.items() if s in by_name}
    rng = random.Random(f"{demo.DEMO_SEED}:{start}")

    def make(first: int, k: int) -> list[tuple[Any, ...]]:
        return demo.b2c_records(
            rng,
            first,
            k,
            data_owner_id=owner.id,
            crm_id=row.crm_id,
            assignment_id=row.id,
            segment_of=segment_of,
            default_segment_id=unsegmented,
        )

    # Generate the next batch in a thread while the database takes the current one.
    done = 0
    size = min(batch, n)
    pending: asyncio.Task[list[tuple[Any, ...]]] | None = asyncio.create_task(
        asyncio.to_thread(make, start, size)
    )
    try:
        while pending is not None:
            records = await pending
            pending = None
            if done + len(records) < n:
                nxt = min(batch, n - done - len(records))
                first = start + done + len(records)
                pending = asyncio.create_task(asyncio.to_thread(make, first, nxt))
            async with engine.begin() as conn:
                await insert_customer_records(conn, records)
            done += len(records)
            if progress is not None:
                progress(done)
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
    if engine.dialect.name == "postgresql":
        # Fresh statistics for the planner: autovacuum may be off or not have run yet, and a
        # plan made for an empty table can turn a list query into a scan of millions of rows.
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE customers"))
    return n
