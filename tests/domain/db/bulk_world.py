"""Test data for bulk work: a data owner of its own (random large id, so tests sharing one
Redis and database never meet) with a B2C CRM, two assignments of it, a B2B CRM with an
assignment, a supervisor, an admin, agents and customers; its Redis keys forgotten before and
after."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from owners import new_owner_id
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.db import tables as t
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    Assignment,
    AssignmentSetup,
    CrmKind,
    FieldType,
    FollowUpKind,
    HistoryKind,
    InfoField,
    Role,
    User,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("sale", "Sale"),
        Status("not_interested", "Not interested"),
    ),
    outcomes=(
        Outcome(
            "interested",
            "Interested",
            frozenset({AVAILABLE}),
            "interested",
            follow_up=FollowUpKind.PERSONAL,
        ),
        Outcome(
            "sale",
            "Sale",
            frozenset({AVAILABLE, "interested"}),
            "sale",
            sms_template="Takk {name}! Prisplan {price_plan}. Kommune: {city}",
            details=(DetailField("price_plan", "Price plan", FieldType.TEXT, required=True),),
        ),
        Outcome(
            "later", "Call later", frozenset({AVAILABLE}), AVAILABLE, follow_up=FollowUpKind.SHARED
        ),
        Outcome("no_thanks", "Not interested", frozenset({"interested"}), "not_interested"),
    ),
)
INFO_FIELDS = (
    InfoField("score", "Score", FieldType.NUMBER),
    InfoField("city", "City", FieldType.TEXT),
    InfoField("vip", "VIP", FieldType.BOOL),
    InfoField("renewal", "Renewal", FieldType.DATE),
)


@dataclass
class World:
    owner: int
    crm_id: int
    assignment: Assignment
    other: Assignment  # same CRM
    hidden: Assignment  # same CRM, not granted to the supervisor
    b2b: Assignment  # another CRM (B2B) of the same owner
    supervisor: User
    admin: User
    agents: list[User]
    customer_ids: list[int]

    def segment(self, name: str) -> int:
        return next(s.id for s in self.assignment.segments if s.name == name)


async def make_world(
    engine: AsyncEngine,
    *,
    customers: Sequence[Mapping[str, Any]] = (),
    n: int = 0,
    agents: int = 3,
    auto_sms: bool = True,
) -> World:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bulk-{tag}", id=new_owner_id())
        crm = await repo.create_crm(conn, owner.id, "Private", CrmKind.B2C, INFO_FIELDS)
        b2b_crm = await repo.create_crm(conn, owner.id, "Business", CrmKind.B2B, INFO_FIELDS)
        setup = AssignmentSetup(auto_sms=auto_sms)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "Main", FLOW, setup, [("North", 5), ("South", 1)]
        )
        other = await repo.create_assignment(conn, owner.id, crm.id, "Other", FLOW, setup, ["X"])
        hidden = await repo.create_assignment(conn, owner.id, crm.id, "Hidden", FLOW, setup)
        b2b = await repo.create_assignment(conn, owner.id, b2b_crm.id, "B2B", FLOW, setup)
        supervisor = await repo.create_user(
            conn, owner.id, f"sup-{tag}", "Supervisor", Role.SUPERVISOR, "", password_hash="x"
        )
        admin = await repo.create_user(
            conn, owner.id, f"admin-{tag}", "Admin", Role.ADMIN, "", password_hash="x"
        )
        users = [
            await repo.create_user(
                conn, owner.id, f"agent{i}-{tag}", f"Agent {i}", Role.AGENT, "", password_hash="x"
            )
            for i in range(agents)
        ]
        for a in (assignment, other, b2b):
            await repo.grant(conn, supervisor.id, a.id)
        by_name = {s.name: s.id for s in assignment.segments}
        rows = list(customers) or [{} for _ in range(n)]
        records = []
        for i, row in enumerate(rows):
            record = {
                "data_owner_id": owner.id,
                "crm_id": crm.id,
                "external_id": f"{i + 1:06d}",
                "name": f"Customer {i}",
                "phones": [f"+4790{i:06d}"],
                "assignment_id": assignment.id,
                "segment_id": assignment.unsegmented.id,
                **{k: v for k, v in row.items() if k != "segment"},
            }
            if "segment" in row:
                record["segment_id"] = by_name[row["segment"]]
            records.append(record)
        await repo.insert_customers(conn, records)
        ids = dict(
            (
                await conn.execute(
                    select(t.customers.c.external_id, t.customers.c.id).where(
                        t.customers.c.crm_id == crm.id
                    )
                )
            ).all()
        )
    return World(
        owner=owner.id,
        crm_id=crm.id,
        assignment=assignment,
        other=other,
        hidden=hidden,
        b2b=b2b,
        supervisor=supervisor,
        admin=admin,
        agents=users,
        customer_ids=[ids[r["external_id"]] for r in records],
    )


async def customers_of(engine: AsyncEngine, ids: Sequence[int]) -> dict[int, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(t.customers).where(t.customers.c.id.in_(list(ids))))
        return {r.id: r for r in rows}


async def history_counts(
    engine: AsyncEngine, ids: Sequence[int], kind: HistoryKind
) -> dict[int, int]:
    """Customer id -> how many history rows of `kind` it has (absent: none)."""
    h = t.history.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(h.customer_id, func.count())
            .where(h.customer_id.in_(list(ids)), h.kind == kind.value)
            .group_by(h.customer_id)
        )
        return {r[0]: r[1] for r in rows}
