"""A refill reads the list in index-served slices when the sort keys allow it: the slices give
exactly candidate_query's rows in candidate_query's order, whatever the limit, on either
database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from list_work import FLOW, make_list
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.hopper import _slices, candidate_query, candidates
from domain.db import repositories as repo
from domain.db import tables as t
from domain.flows import AVAILABLE
from domain.model import DEFAULT_SORT, Assignment, AssignmentSetup, Segment, SortKey

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

customer_strategy = st.fixed_dictionaries(
    {
        "status": st.sampled_from([AVAILABLE, AVAILABLE, AVAILABLE, "sale"]),
        "attempts": st.integers(0, 4),
        "last_attempt_h": st.none() | st.integers(0, 5),
        "shared_h": st.none() | st.none() | st.integers(-6, 6),
        "segment": st.sampled_from(["Unsegmented", "North", "South", None]),
    }
)
# Sort keys of the sliced shape: a subsequence of segment priority, attempts, last attempt.
sliced_keys = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()).map(
    lambda f: tuple(
        key
        for key, on in (
            (SortKey("segment_priority", descending=f[3]), f[0]),
            (SortKey("attempts"), f[1]),
            (SortKey("last_attempt_at"), f[2]),
        )
        if on
    )
)
setup_strategy = st.builds(
    lambda keys, max_attempts, delay_h: AssignmentSetup(
        sort_keys=keys,
        max_attempts=max_attempts if any(k.field == "attempts" for k in keys) else None,
        retry_delay=timedelta(hours=delay_h),
    ),
    sliced_keys,
    st.integers(1, 4),
    st.integers(0, 3),
)


def test_default_sort_is_sliced_and_other_shapes_are_not() -> None:
    assert _slices_of(AssignmentSetup(sort_keys=DEFAULT_SORT)) is not None
    for keys in [
        (SortKey("attempts", descending=True),),
        (SortKey("last_attempt_at"), SortKey("attempts")),
        (SortKey("segment_priority"), SortKey("info.score")),
        (SortKey("external_id"),),
    ]:
        assert _slices_of(AssignmentSetup(sort_keys=keys)) is None, keys
    unbounded = AssignmentSetup(sort_keys=(SortKey("attempts"),), max_attempts=None)
    assert _slices_of(unbounded) is None


def _slices_of(setup: AssignmentSetup) -> Any:
    assignment = Assignment(1, 1, 1, "List", FLOW, setup, (Segment(1, 1, "Unsegmented", 0, True),))
    return _slices(assignment, None, NOW)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(customer_strategy, max_size=10),
    setup=setup_strategy,
    priorities=st.tuples(st.integers(-1, 1), st.integers(-1, 1)),
    held=st.sets(st.integers(0, 9), max_size=2),
    limit=st.integers(1, 12),
    only_north=st.booleans(),
)
async def test_sliced_candidates_equal_the_candidate_query(
    engine: AsyncEngine,
    rows: list[dict[str, Any]],
    setup: AssignmentSetup,
    priorities: tuple[int, int],
    held: set[int],
    limit: int,
    only_north: bool,
) -> None:
    work = await make_list(
        engine,
        setup=setup,
        agents=1,
        segments=[("North", priorities[0]), ("South", priorities[1])],
        customers=[
            {
                "status": row["status"],
                "attempts": row["attempts"],
                "last_attempt_at": None
                if row["last_attempt_h"] is None
                else NOW - timedelta(hours=row["last_attempt_h"]),
                **({"segment_id": None} if row["segment"] is None else {"segment": row["segment"]}),
            }
            for row in rows
        ],
    )
    assert _slices(work.assignment, None, NOW) is not None
    by_name = {s.name: s.id for s in work.assignment.segments}
    segment_ids = {by_name["North"], by_name["Unsegmented"]} if only_north else None
    async with engine.begin() as conn:
        for index, (row, cid) in enumerate(zip(rows, work.customer_ids, strict=True)):
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
        got = await candidates(
            conn, work.assignment, crm, NOW, segment_ids=segment_ids, limit=limit
        )
        query = candidate_query(
            work.assignment,
            crm,
            NOW,
            segment_ids=segment_ids,
            limit=limit,
            dialect=conn.dialect.name,
        )
        expected = [(r[0], r[1]) for r in await conn.execute(query)]
    assert got == expected
