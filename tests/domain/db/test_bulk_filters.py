"""Rule 19: the filter's SQL selects exactly what domain.filters.matches admits, on SQLite and
PostgreSQL alike (typed reads of the JSON info column, blank phones and e-mails)."""

from __future__ import annotations

import random

from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import preview
from domain.db.filters import filter_clause
from domain.filters import check_filter, matches, parse_filter

FILTERS = [
    {},
    {"statuses": ["interested"]},
    {"attempts": {"min": 1, "max": 2}},
    {"has_email": True},
    {"has_email": False},
    {"has_phone": True},
    {"has_phone": False},
    {"info": [{"field": "score", "op": "range", "min": 20, "max": 60}]},
    {"info": [{"field": "score", "op": "eq", "value": 42}]},
    {"info": [{"field": "city", "op": "eq", "value": "Bodø"}]},
    {"info": [{"field": "vip", "op": "eq", "value": True}]},
    {"info": [{"field": "vip", "op": "eq", "value": "nei"}]},
    {
        "info": [
            {"field": "renewal", "op": "date_range", "start": "2026-03-01", "end": "2026-06-30"}
        ]
    },
    {"info": [{"field": "city", "op": "empty"}]},
    {"info": [{"field": "score", "op": "empty", "empty": False}]},
    {
        "has_phone": True,
        "statuses": ["available"],
        "info": [{"field": "vip", "op": "eq", "value": 1}],
    },
]


def random_customer(rng: random.Random) -> dict:
    info: dict = {}
    if rng.random() < 0.8:
        info["score"] = rng.choice([rng.randint(0, 100), 42, 20, 60, 59.5])
    if rng.random() < 0.7:
        info["city"] = rng.choice(["Bodø", "Oslo", ""])
    if rng.random() < 0.7:
        info["vip"] = rng.random() < 0.5
    if rng.random() < 0.7:
        info["renewal"] = rng.choice(["2026-02-28", "2026-03-01", "2026-06-30", "2026-07-01"])
    return {
        "status": rng.choice(["available", "interested"]),
        "attempts": rng.randint(0, 3),
        "email": rng.choice([None, "", " ", "a@b.no"]),
        "phones": rng.choice([[], [" "], ["+4791234567"], ["", "+4791234567"]]),
        "info": info,
        "segment": rng.choice(["North", "South", None]) or "North",
    }


async def test_rule_19_filter_sql_selects_what_the_rule_admits(engine, new_world, store) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    world = await new_world(customers=[random_customer(rng) for _ in range(120)])
    async with engine.connect() as conn:
        crm = await repo.get_crm(conn, world.crm_id)
        assert crm is not None
        customers = [
            c
            for c in [await repo.get_customer(conn, world.owner, i) for i in world.customer_ids]
            if c is not None
        ]
        for data in FILTERS:
            f = check_filter(
                parse_filter({"assignment_id": world.assignment.id, **data}), world.assignment, crm
            )
            query = select(t.customers.c.id).where(filter_clause(f, crm, conn.dialect.name))
            found = set((await conn.execute(query)).scalars())
            expected = {c.id for c in customers if matches(f, c, crm)}
            assert found == expected, data
            seen = await preview(
                conn, world.supervisor, {"assignment_id": world.assignment.id, **data}, store
            )
            assert seen.matched == len(expected)
