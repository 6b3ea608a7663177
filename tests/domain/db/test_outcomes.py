"""Outcomes saved together (domain.db.outcomes): agents saving at the same moment share one
transaction on PostgreSQL, and each still gets exactly the answer and the writes it would get
alone (rules 8, 15, 18, 23)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.fencing import Holding, OutcomeAsk, OutcomeResult
from domain.db.outcomes import Outcomes
from domain.db.sms_outbox import enqueue_outcome_sms
from domain.errors import Invalid, InvalidTransition, SelectionLost
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    AssignmentSetup,
    CrmKind,
    FieldType,
    FollowUpKind,
    HistoryKind,
    Role,
    WorkMode,
)

FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("interested", "Interested"),
        Status("sale", "Sale"),
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
            sms_template="Thanks {name}, plan {plan}",
            details=(DetailField("plan", "Plan", FieldType.TEXT, required=True),),
        ),
    ),
)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


@dataclass
class Shop:
    owner: int
    assignment_id: int
    agents: list[int]
    customers: list[int]
    tokens: dict[int, int]

    def holding(self, i: int) -> Holding:
        customer = self.customers[i]
        return Holding(customer, self.agents[i], self.tokens[customer])


async def shop(
    engine: AsyncEngine, n: int, *, auto_sms: bool = False, flow: CustomerFlow = FLOW
) -> Shop:
    """A data owner with n agents, each holding one customer (with a phone) of one list."""
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"outcomes-{tag}")
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "List", flow, AssignmentSetup(auto_sms=auto_sms)
        )
        agents = [
            (
                await repo.create_user(
                    conn, owner.id, f"a{i}-{tag}", f"Agent {i}", Role.AGENT, "", password_hash="x"
                )
            ).id
            for i in range(n)
        ]
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"c{i:03d}",
                    "name": f"Customer {i}",
                    "phones": [f"+47 4000 {i:04d}"],
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                }
                for i in range(n)
            ],
        )
        rows = await conn.execute(
            select(t.customers.c.id)
            .where(t.customers.c.crm_id == crm.id)
            .order_by(t.customers.c.external_id)
        )
        customers = [r.id for r in rows]
        tokens = {}
        for i, (customer, agent) in enumerate(zip(customers, agents, strict=True)):
            tokens[customer] = 100 + i
            assert await fencing.record_selected(
                conn,
                owner=owner.id,
                customer_id=customer,
                user_id=agent,
                token=tokens[customer],
                at=NOW - timedelta(minutes=5),
                assignment_id=assignment.id,
                segment_id=assignment.unsegmented.id,
                mode=WorkMode.LIST,
            )
    return Shop(owner.id, assignment.id, agents, customers, tokens)


async def written(engine: AsyncEngine, customer_id: int) -> dict[str, Any]:
    """What an outcome may touch: status, history after the selection, follow-ups, SMS."""
    c = t.customers.c
    async with engine.connect() as conn:
        status = (await conn.execute(select(c.status).where(c.id == customer_id))).scalar_one()
        history = [
            (h.kind, {k: v for k, v in h.data.items() if k != "follow_up_id"})
            for h in await repo.list_history(conn, customer_id)
            if h.kind is not HistoryKind.SELECTED
        ]
        follow_ups = (
            await conn.execute(
                select(t.follow_ups.c.kind, t.follow_ups.c.owner_user_id).where(
                    t.follow_ups.c.customer_id == customer_id
                )
            )
        ).all()
        sms = (
            await conn.execute(
                select(t.sms_outbox.c.body).where(t.sms_outbox.c.customer_id == customer_id)
            )
        ).all()
    return {
        "status": status,
        "history": history,
        "follow_ups": [tuple(f) for f in follow_ups],
        "sms": [s.body for s in sms],
    }


async def save_together(outcomes: Outcomes, asks: list[OutcomeAsk]) -> list[Any]:
    return await asyncio.gather(*(outcomes.save(ask) for ask in asks), return_exceptions=True)


async def test_rule_18_outcomes_saved_together_are_each_answered_alone(
    engine: AsyncEngine,
) -> None:
    """Valid outcomes are saved; a stale token (rule 8), a transition the flow does not allow
    and details missing (rule 18) are refused for that agent only, with nothing written."""
    s = await shop(engine, 40)
    asks = [
        OutcomeAsk(s.holding(i), "sale", {"plan": f"P{i}"}, NOW)
        if i % 2
        else OutcomeAsk(s.holding(i), "interested", {}, NOW, LATER)
        for i in range(40)
    ]
    stale = Holding(s.customers[5], s.agents[5], s.tokens[s.customers[5]] - 1)
    asks[5] = OutcomeAsk(stale, "sale", {"plan": "x"}, NOW)
    asks[6] = OutcomeAsk(s.holding(6), "no_such_outcome", {}, NOW)
    asks[7] = OutcomeAsk(s.holding(7), "sale", {}, NOW)  # the required plan is missing
    outcomes = Outcomes(engine)
    answers = await save_together(outcomes, asks)

    assert isinstance(answers[5], SelectionLost)
    assert answers[5].held_by == s.agents[5]
    assert isinstance(answers[6], InvalidTransition)
    assert isinstance(answers[7], Invalid)
    for i in (5, 6, 7):
        assert await written(engine, s.customers[i]) == {
            "status": AVAILABLE,
            "history": [],
            "follow_ups": [],
            "sms": [],
        }
    for i, answer in enumerate(answers):
        if i in (5, 6, 7):
            continue
        assert isinstance(answer, OutcomeResult), answer
        assert answer.customer_id == s.customers[i]
        state = await written(engine, s.customers[i])
        if i % 2:
            assert state["status"] == "sale"
            assert [k for k, _ in state["history"]] == [HistoryKind.OUTCOME]
            assert state["history"][0][1]["details"] == {"plan": f"P{i}"}
        else:
            assert state["status"] == "interested"
            assert [k for k, _ in state["history"]] == [
                HistoryKind.OUTCOME,
                HistoryKind.FOLLOW_UP_CREATED,
            ]
            assert state["follow_ups"] == [(FollowUpKind.PERSONAL.value, s.agents[i])]
    if engine.dialect.name == "postgresql":
        assert outcomes.batches.batches < len(asks)  # saved together, not one by one


async def test_outcomes_saved_together_write_what_one_by_one_writes(engine: AsyncEngine) -> None:
    """The same outcomes, once through the group commit and once each in its own transaction
    (fencing.record_outcome), leave the same rows, history, follow-ups and SMS."""
    together, alone = await shop(engine, 24, auto_sms=True), await shop(engine, 24, auto_sms=True)

    def ask(s: Shop, i: int) -> OutcomeAsk:
        if i % 3 == 0:
            return OutcomeAsk(s.holding(i), "interested", {}, NOW, LATER)
        return OutcomeAsk(s.holding(i), "sale", {"plan": f"P{i % 5}"}, NOW)

    answers = await save_together(Outcomes(engine), [ask(together, i) for i in range(24)])
    assert all(isinstance(a, OutcomeResult) for a in answers), answers
    for i in range(24):
        a = ask(alone, i)
        async with engine.begin() as conn:
            result = await fencing.record_outcome(
                conn, a.holding, a.outcome_key, a.details, a.now, follow_up_at=a.follow_up_at
            )
            if result.sms_template is not None:
                await enqueue_outcome_sms(
                    conn,
                    event_key=f"history:{result.history_id}",
                    customer_id=result.customer_id,
                    outcome_key=result.outcome_key,
                    details=result.details,
                    user_id=a.holding.user_id,
                    now=a.now,
                )
    for i in range(24):
        got = await written(engine, together.customers[i])
        want = await written(engine, alone.customers[i])
        # The two shops' agents differ only in their ids: agent i owns customer i's follow-up.
        assert got["follow_ups"] == [(k, together.agents[i]) for k, _ in want["follow_ups"]]
        assert {**got, "follow_ups": []} == {**want, "follow_ups": []}, i
        assert bool(got["sms"]) == bool(i % 3)  # rule 23: auto SMS is on, sale has a template


async def test_rule_23_a_batch_the_database_refuses_is_saved_again_one_by_one(
    engine: AsyncEngine,
) -> None:
    """An SMS flow naming a field nobody has fails its outcome inside the shared transaction:
    the whole batch rolls back, then each outcome is saved alone, so only that list's agents
    are refused and nothing of theirs is kept."""
    broken = CustomerFlow(
        statuses=FLOW.statuses,
        outcomes=(
            Outcome(
                "sale",
                "Sale",
                frozenset({AVAILABLE}),
                "sale",
                sms_template="Hello {no_such_field}",
            ),
        ),
    )
    good, bad = (
        await shop(engine, 12, auto_sms=True),
        await shop(engine, 4, auto_sms=True, flow=broken),
    )
    asks = [OutcomeAsk(good.holding(i), "sale", {"plan": "P"}, NOW) for i in range(12)]
    asks[3:3] = [OutcomeAsk(bad.holding(i), "sale", {}, NOW) for i in range(4)]
    answers = await save_together(Outcomes(engine), asks)

    refused = [a for a in answers if isinstance(a, Exception)]
    assert len(refused) == 4 and all(isinstance(a, Invalid) for a in refused)
    for i in range(4):
        assert (await written(engine, bad.customers[i]))["status"] == AVAILABLE
        assert (await written(engine, bad.customers[i]))["history"] == []
    for i in range(12):
        state = await written(engine, good.customers[i])
        assert state["status"] == "sale"
        assert [k for k, _ in state["history"]] == [HistoryKind.OUTCOME]
        assert state["sms"] == [f"Thanks Customer {i}, plan P"]
