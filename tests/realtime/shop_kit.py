"""Tenants for work-loop tests over the wire: a flow with personal and shared follow-ups,
segments, agents granted the assignment, and the reply helpers the tests share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hub_kit import SECRET, Client
from owners import new_owner_id
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    AssignmentSetup,
    CrmKind,
    FieldType,
    FollowUpKind,
    InfoField,
    Role,
    User,
)
from realtime.tokens import issue_token

FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("sale", "Sale"),
        Status("not_interested", "Not interested"),
    ),
    outcomes=(
        Outcome(
            "interested", "Interested", frozenset({AVAILABLE}), "interested",
            follow_up=FollowUpKind.PERSONAL,
        ),
        Outcome(
            "sale", "Sale", frozenset({AVAILABLE, "interested"}), "sale",
            details=(DetailField("amount", "Amount", FieldType.NUMBER, required=True),),
        ),
        Outcome("not_interested", "Not interested", frozenset({AVAILABLE}), "not_interested"),
        Outcome(
            "call_team", "Team calls back", frozenset({"interested"}), AVAILABLE,
            follow_up=FollowUpKind.SHARED,
        ),
    ),
)  # fmt: skip
SETUP = AssignmentSetup(max_attempts=5, retry_delay=timedelta(0))


@dataclass
class Shop:
    owner: int
    assignment_id: int
    segments: dict[str, int]
    agents: list[User]
    supervisor: User
    customer_ids: list[int]

    def token(self, user: User) -> str:
        return issue_token(SECRET, user.id, 3600).token


async def make_shop(
    engine: AsyncEngine,
    customers: int = 6,
    agents: int = 2,
    flow: CustomerFlow = FLOW,
    setup: AssignmentSetup = SETUP,
) -> Shop:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"shop-{tag}", id=new_owner_id())
        crm = await repo.create_crm(
            conn, owner.id, "CRM", CrmKind.B2C, (InfoField("municipality", "Municipality"),)
        )
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "Calls", flow, setup, ["North", "South"]
        )
        users = [
            await repo.create_user(
                conn, owner.id, f"a{i}-{tag}", f"Agent {i}", Role.AGENT, "", password_hash="x"
            )
            for i in range(agents)
        ]
        supervisor = await repo.create_user(
            conn, owner.id, f"s-{tag}", "Sara Supervisor", Role.SUPERVISOR, "", password_hash="x"
        )
        for user in (*users, supervisor):
            await repo.grant(conn, user.id, assignment.id)
        segments = {s.name: s.id for s in assignment.segments}
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"c{i:03d}",
                    "name": f"Customer {i}",
                    "phones": [f"+4790000{i:03d}"],
                    "assignment_id": assignment.id,
                    "segment_id": segments["North" if i % 2 else "South"],
                }
                for i in range(customers)
            ],
        )
        ids = []
        for i in range(customers):
            found = await repo.get_customer_by_external_id(conn, owner.id, crm.id, f"c{i:03d}")
            assert found is not None
            ids.append(found.id)
    return Shop(owner.id, assignment.id, segments, users, supervisor, ids)


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"], reply
    return reply["data"]


def refused(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert not reply["ok"] and reply["error"]["code"] == code, reply
    return reply["error"]


async def start(client: Client, shop: Shop, **fields: Any) -> dict[str, Any]:
    screen = ok(await client.request("work.start", assignment_id=str(shop.assignment_id), **fields))
    return screen["screen"]


def holding(screen: dict[str, Any]) -> dict[str, Any]:
    """What a write from this customer screen presents: the customer and its selection token."""
    return {"customer_id": screen["customer"]["id"], "selection_token": screen["selection_token"]}


def later(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()
