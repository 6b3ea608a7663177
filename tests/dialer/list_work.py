"""Test data for list work: a data owner of its own with one assignment, agents and customers.

Every list gets a random, large data owner id, so tests sharing one Redis (and one database)
never meet, also across runs; its Redis keys are deleted before and after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from owners import new_owner_id
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.db import tables as t
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import (
    Assignment,
    AssignmentSetup,
    CrmKind,
    FieldType,
    InfoField,
    Role,
    User,
)

FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale"),),
)
INFO_FIELDS = (
    InfoField("score", "Score", FieldType.NUMBER),
    InfoField("city", "City", FieldType.TEXT),
    InfoField("vip", "VIP", FieldType.BOOL),
    InfoField("renewal", "Renewal", FieldType.DATE),
)


@dataclass
class ListWork:
    owner: int
    crm_id: int
    assignment: Assignment
    agents: list[User]
    supervisor: User
    customer_ids: list[int]

    @property
    def assignment_id(self) -> int:
        return self.assignment.id


async def make_list(
    engine: AsyncEngine,
    *,
    customers: Sequence[Mapping[str, Any]] = (),
    n: int = 0,
    agents: int = 2,
    setup: AssignmentSetup | None = None,
    segments: Iterable[str | tuple[str, int]] = (),
    flow: CustomerFlow = FLOW,
) -> ListWork:
    """An owner, a CRM with INFO_FIELDS, an assignment, agents, a supervisor and customers:
    the dicts given (keys of repo.CUSTOMER_COLUMNS; 'segment' names a segment), else n plain
    ones. Customer ids come back in the order given."""
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"owner-{tag}", id=new_owner_id())
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C, INFO_FIELDS)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "List", flow, setup or AssignmentSetup(), segments
        )
        users = [
            await repo.create_user(
                conn, owner.id, f"agent{i}-{tag}", f"Agent {i}", Role.AGENT, "", password_hash="x"
            )
            for i in range(agents)
        ]
        supervisor = await repo.create_user(
            conn, owner.id, f"sup-{tag}", "Supervisor", Role.SUPERVISOR, "", password_hash="x"
        )
        for user in (*users, supervisor):
            await repo.grant(conn, user.id, assignment.id)
        by_name = {s.name: s.id for s in assignment.segments}
        rows = list(customers) or [{} for _ in range(n)]
        records = []
        for i, row in enumerate(rows):
            record = {
                "data_owner_id": owner.id,
                "crm_id": crm.id,
                "external_id": f"x{i:05d}",
                "name": f"Customer {i}",
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
    return ListWork(
        owner=owner.id,
        crm_id=crm.id,
        assignment=assignment,
        agents=users,
        supervisor=supervisor,
        customer_ids=[ids[r["external_id"]] for r in records],
    )


async def database_holders(engine: AsyncEngine, owner: int) -> dict[int, int]:
    """The owner's customers the database names a holder of: customer id -> holder."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(t.customers.c.id, t.customers.c.holder_user_id).where(
                t.customers.c.data_owner_id == owner,
                t.customers.c.holder_user_id.isnot(None),
            )
        )
        return {row.id: row.holder_user_id for row in rows}


@dataclass
class Stack:
    """The selection service and the dialer on one Redis client, as a server process has them."""

    redis: Any
    store: Any
    selections: Any
    dialer: Any

    async def aclose(self) -> None:
        await self.dialer.hopper.drain()
        await self.redis.aclose()


def make_stack(engine: AsyncEngine, redis_url: str, **hopper_options: Any) -> Stack:
    from dialer.hopper import Hopper
    from dialer.next_customer import NextCustomer
    from presence.selections import SelectionStore
    from presence.service import SelectionService

    client = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=256)
    store = SelectionStore(client)
    selections = SelectionService(engine, store)
    dialer = NextCustomer(engine, selections, Hopper(engine, store, **hopper_options))
    return Stack(client, store, selections, dialer)
