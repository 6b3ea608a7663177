"""The candidate query is rules 10, 11 and 13 in SQL: it admits exactly what
domain.listing.is_listable admits, in exactly domain.listing.list_order, on either database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from list_work import make_list
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.hopper import candidates
from domain.db import repositories as repo
from domain.db import tables as t
from domain.flows import AVAILABLE
from domain.listing import is_listable, list_order
from domain.model import AssignmentSetup, Customer, SortKey

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FIELDS = (
    "segment_priority",
    "attempts",
    "last_attempt_at",
    "created_at",
    "external_id",
    "info.score",
    "info.city",
    "info.vip",
    "info.renewal",
)
HOURS = st.integers(min_value=-6, max_value=6)

customer_strategy = st.fixed_dictionaries(
    {
        "status": st.sampled_from([AVAILABLE, AVAILABLE, AVAILABLE, "sale"]),
        "attempts": st.integers(0, 3),
        "last_attempt_h": st.none() | st.integers(1, 5),
        "shared_h": st.none() | st.none() | HOURS,
        "segment": st.sampled_from(["Unsegmented", "North", "South"]),
        "external_id": st.text(alphabet="aAbB_9æ", min_size=1, max_size=3),
        "score": st.none() | st.integers(-2, 2) | st.sampled_from([0.5, 1.5]),
        "city": st.none() | st.sampled_from(["Oslo", "oslo", "Ås", "Bergen", ""]),
        "vip": st.none() | st.booleans(),
        "renewal": st.none() | st.sampled_from(["2026-01-05", "2025-12-31", "2026-10-01"]),
    }
)
setup_strategy = st.builds(
    lambda keys, desc, max_attempts, delay_h: AssignmentSetup(
        sort_keys=tuple(SortKey(f, d) for f, d in zip(keys, desc, strict=False)),
        max_attempts=max_attempts,
        retry_delay=timedelta(hours=delay_h),
    ),
    st.lists(st.sampled_from(FIELDS), unique=True, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.none() | st.integers(1, 3),
    st.integers(0, 3),
)
counter = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(customer_strategy, max_size=8),
    setup=setup_strategy,
    priorities=st.tuples(st.integers(-1, 2), st.integers(-1, 2)),
    held=st.sets(st.integers(0, 7), max_size=2),
)
async def test_candidate_query_matches_list_order_and_is_listable(
    engine: AsyncEngine,
    rows: list[dict[str, Any]],
    setup: AssignmentSetup,
    priorities: tuple[int, int],
    held: set[int],
) -> None:
    seen: set[str] = set()
    unique_rows = []
    for row in rows:  # external ids are unique per CRM
        if row["external_id"] not in seen:
            seen.add(row["external_id"])
            unique_rows.append(row)
    work = await make_list(
        engine,
        setup=setup,
        agents=1,
        segments=[("North", priorities[0]), ("South", priorities[1])],
        customers=[
            {
                "external_id": row["external_id"],
                "segment": row["segment"],
                "status": row["status"],
                "attempts": row["attempts"],
                "last_attempt_at": None
                if row["last_attempt_h"] is None
                else NOW - timedelta(hours=row["last_attempt_h"]),
                "info": {
                    k: row[k]
                    for k in ("score", "city", "vip", "renewal")
                    if row[k] is not None or next(counter) % 2
                },
            }
            for row in unique_rows
        ],
    )
    async with engine.begin() as conn:
        for index, (row, cid) in enumerate(zip(unique_rows, work.customer_ids, strict=True)):
            values: dict[str, Any] = {}
            if row["shared_h"] is not None:
                values["shared_follow_up_at"] = NOW + timedelta(hours=row["shared_h"])
            if index in held:
                values["holder_user_id"] = work.agents[0].id
                values["selection_token"] = index + 1
            if values:
                await conn.execute(
                    update(t.customers).where(t.customers.c.id == cid).values(**values)
                )
        crm = await repo.get_crm(conn, work.crm_id)
        got = await candidates(conn, work.assignment, crm, NOW, limit=100)
        stored = [await repo.get_customer(conn, work.owner, cid) for cid in work.customer_ids]

    priority = {s.id: s.priority for s in work.assignment.segments}
    pairs: list[tuple[Customer, datetime | None]] = []
    for index, (row, customer) in enumerate(zip(unique_rows, stored, strict=True)):
        assert customer is not None
        due = None if row["shared_h"] is None else NOW + timedelta(hours=row["shared_h"])
        if index not in held and is_listable(customer, setup, due, NOW):
            pairs.append((customer, due))
    expected = [c.id for c in list_order(pairs, setup, priority)]
    assert [cid for cid, _segment in got] == expected
    by_id = {c.id: c.segment_id for c in stored if c is not None}
    assert all(segment == by_id[cid] for cid, segment in got)
