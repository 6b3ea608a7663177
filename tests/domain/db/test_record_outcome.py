"""Saving an outcome is the holder's write (rules 8, 15, 18): fenced, a valid transition of the
assignment's flow, follow-ups ended and made, history written, and nothing kept on a refusal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.codec import flow_to_json
from domain.db.fencing import Holding
from domain.errors import Invalid, InvalidTransition, SelectionLost
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import CrmKind, FieldType, FollowUpKind, HistoryKind, Role, WorkMode

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
            sms_template="sale_thanks",
            details=(
                DetailField("price_plan", "Price plan", FieldType.TEXT, required=True),
                DetailField("monthly_kwh", "Monthly kWh", FieldType.NUMBER),
            ),
        ),
        Outcome(
            "later", "Call later", frozenset({AVAILABLE}), AVAILABLE, follow_up=FollowUpKind.SHARED
        ),
        Outcome("no_thanks", "Not interested", frozenset({"interested"}), "not_interested"),
    ),
)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOKEN = 7


@dataclass
class Held:
    """One customer of a fresh data owner, selected by an agent with TOKEN."""

    customer_id: int
    assignment_id: int
    agent: int
    other: int
    holding: Holding


async def held_customer(engine: AsyncEngine, status: str = AVAILABLE) -> Held:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"outcome-{tag}")
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(conn, owner.id, crm.id, "List", FLOW)
        agent, other = [
            await repo.create_user(
                conn, owner.id, f"{name}-{tag}", name, Role.AGENT, "", password_hash="x"
            )
            for name in ("agent", "other")
        ]
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": "c1",
                    "name": "Kari Nordmann",
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                    "status": status,
                }
            ],
        )
        customer_id = (
            await conn.execute(select(t.customers.c.id).where(t.customers.c.crm_id == crm.id))
        ).scalar_one()
        assert await fencing.record_selected(
            conn,
            owner=owner.id,
            customer_id=customer_id,
            user_id=agent.id,
            token=TOKEN,
            at=NOW - timedelta(minutes=1),
            assignment_id=assignment.id,
            segment_id=assignment.unsegmented.id,
            mode=WorkMode.LIST,
        )
    return Held(
        customer_id, assignment.id, agent.id, other.id, Holding(customer_id, agent.id, TOKEN)
    )


async def save(engine: AsyncEngine, holding: Holding, outcome: str, details: Any = None, **kw: Any):
    async with engine.begin() as conn:
        return await fencing.record_outcome(conn, holding, outcome, details or {}, NOW, **kw)


async def state(engine: AsyncEngine, customer_id: int) -> dict[str, Any]:
    """Everything a saved outcome may touch: the row, its history, its follow-ups."""
    c = t.customers.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(c.status, c.version, c.updated_at, c.shared_follow_up_at).where(
                    c.id == customer_id
                )
            )
        ).one()
        history = await repo.list_history(conn, customer_id)
        follow_ups = (
            await conn.execute(
                select(t.follow_ups)
                .where(t.follow_ups.c.customer_id == customer_id)
                .order_by(t.follow_ups.c.id)
            )
        ).all()
    return {
        "row": tuple(row),
        "history": [(h.kind, h.data) for h in history],
        "follow_ups": [tuple(f) for f in follow_ups],
    }


async def add_follow_up(engine: AsyncEngine, held: Held, kind: FollowUpKind, owner: int | None):
    async with engine.begin() as conn:
        return await repo.create_follow_up(
            conn,
            customer_id=held.customer_id,
            assignment_id=held.assignment_id,
            kind=kind,
            due_at=NOW + timedelta(days=1),
            owner_user_id=owner,
            now=NOW - timedelta(hours=1),
        )


def kinds_after_selection(history: list[tuple[HistoryKind, dict[str, Any]]]) -> list[HistoryKind]:
    return [kind for kind, _ in history if kind is not HistoryKind.SELECTED]


# Rule 18: valid transitions, details saved --------------------------------------------------


async def test_rule_18_outcome_sets_status_and_records_details(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    before = await state(engine, held.customer_id)
    result = await save(
        engine, held.holding, "sale", {"price_plan": "Fixed 12", "monthly_kwh": "1500"}
    )
    assert (result.from_status, result.status, result.outcome_key) == (AVAILABLE, "sale", "sale")
    assert result.details == {"price_plan": "Fixed 12", "monthly_kwh": 1500}
    assert result.progressive
    after = await state(engine, held.customer_id)
    status, version, updated_at, _ = after["row"]
    assert status == "sale"
    assert version == before["row"][1] + 1
    assert updated_at == NOW
    kind, data = after["history"][-1]
    assert kind is HistoryKind.OUTCOME
    assert data == {
        "outcome": "sale",
        "from_status": AVAILABLE,
        "to_status": "sale",
        "details": {"price_plan": "Fixed 12", "monthly_kwh": 1500},
        "token": TOKEN,
    }
    async with engine.connect() as conn:
        rows = await repo.list_history(conn, held.customer_id)
    assert (rows[-1].user_id, rows[-1].at, rows[-1].assignment_id) == (
        held.agent,
        NOW,
        held.assignment_id,
    )


async def test_rule_18_outcome_from_a_later_status(engine: AsyncEngine) -> None:
    held = await held_customer(engine, status="interested")
    result = await save(engine, held.holding, "no_thanks")
    assert (result.from_status, result.status, result.progressive) == (
        "interested",
        "not_interested",
        False,
    )
    assert (await state(engine, held.customer_id))["row"][0] == "not_interested"


async def test_rule_18_invalid_transition_refused_with_nothing_written(
    engine: AsyncEngine,
) -> None:
    held = await held_customer(engine)
    before = await state(engine, held.customer_id)
    with pytest.raises(InvalidTransition) as refused:
        await save(engine, held.holding, "no_thanks")  # only valid from 'interested'
    assert refused.value.code == "invalid_transition"
    assert refused.value.details["allowed"] == ["interested", "sale", "later"]
    assert await state(engine, held.customer_id) == before


async def test_rule_18_unknown_outcome_refused_with_nothing_written(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    before = await state(engine, held.customer_id)
    with pytest.raises(InvalidTransition):
        await save(engine, held.holding, "no_such_outcome")
    assert await state(engine, held.customer_id) == before


@pytest.mark.parametrize(
    "details",
    [{}, {"price_plan": "Fixed", "colour": "red"}, {"price_plan": "Fixed", "monthly_kwh": "x"}],
    ids=["required-missing", "unknown-field", "not-a-number"],
)
async def test_rule_18_bad_details_refused_with_nothing_written(
    engine: AsyncEngine, details: dict[str, Any]
) -> None:
    held = await held_customer(engine)
    await add_follow_up(engine, held, FollowUpKind.SHARED, None)
    before = await state(engine, held.customer_id)
    with pytest.raises(Invalid):
        await save(engine, held.holding, "sale", details)
    assert await state(engine, held.customer_id) == before


# Rule 8: only the live holder writes --------------------------------------------------------


async def test_rule_08_stale_token_cannot_save(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    async with engine.begin() as conn:  # released, then selected again by the same agent
        owner = (
            await conn.execute(
                select(t.customers.c.data_owner_id).where(t.customers.c.id == held.customer_id)
            )
        ).scalar_one()
        await fencing.record_released(
            conn,
            owner=owner,
            customer_id=held.customer_id,
            token=TOKEN,
            by_user_id=held.other,
            at=NOW,
        )
        assert await fencing.record_selected(
            conn,
            owner=owner,
            customer_id=held.customer_id,
            user_id=held.agent,
            token=TOKEN + 1,
            at=NOW,
            assignment_id=held.assignment_id,
            segment_id=None,
            mode=WorkMode.MANUAL,
        )
    before = await state(engine, held.customer_id)
    with pytest.raises(SelectionLost) as lost:
        await save(engine, held.holding, "sale", {"price_plan": "Fixed"})
    assert lost.value.held_by == held.agent
    assert await state(engine, held.customer_id) == before
    fresh = Holding(held.customer_id, held.agent, TOKEN + 1)
    assert (await save(engine, fresh, "sale", {"price_plan": "Fixed"})).status == "sale"


async def test_rule_08_released_customer_cannot_save(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    async with engine.begin() as conn:
        owner = (
            await conn.execute(
                select(t.customers.c.data_owner_id).where(t.customers.c.id == held.customer_id)
            )
        ).scalar_one()
        await fencing.record_released(
            conn,
            owner=owner,
            customer_id=held.customer_id,
            token=TOKEN,
            by_user_id=held.other,
            at=NOW,
        )
    before = await state(engine, held.customer_id)
    with pytest.raises(SelectionLost) as lost:
        await save(engine, held.holding, "later", follow_up_at=NOW + timedelta(hours=2))
    assert lost.value.held_by is None
    assert await state(engine, held.customer_id) == before


async def test_rule_08_another_user_cannot_save_with_the_holders_token(
    engine: AsyncEngine,
) -> None:
    held = await held_customer(engine)
    before = await state(engine, held.customer_id)
    with pytest.raises(SelectionLost):
        await save(engine, Holding(held.customer_id, held.other, TOKEN), "interested")
    assert await state(engine, held.customer_id) == before


# Rule 15: an outcome's own follow-up ---------------------------------------------------------


async def test_rule_15_outcome_creates_follow_up(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    due = NOW + timedelta(days=2)
    result = await save(engine, held.holding, "interested", follow_up_at=due)
    assert result.follow_up is not None
    assert (result.follow_up.kind, result.follow_up.owner_user_id, result.follow_up.due_at) == (
        FollowUpKind.PERSONAL,
        held.agent,
        due,
    )
    async with engine.connect() as conn:
        [open_one] = await repo.open_follow_ups_for_customer(conn, held.customer_id)
        history = await repo.list_history(conn, held.customer_id)
    assert open_one.id == result.follow_up.id
    assert [h.kind for h in history[-2:]] == [HistoryKind.OUTCOME, HistoryKind.FOLLOW_UP_CREATED]
    assert history[-1].data["follow_up_id"] == result.follow_up.id
    assert history[-1].data["kind"] == "personal"
    assert history[-1].user_id == held.agent


async def test_rule_15_shared_follow_up_holds_the_customer_back(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    due = NOW + timedelta(hours=3)
    result = await save(engine, held.holding, "later", follow_up_at=due)
    assert result.status == AVAILABLE and not result.progressive
    assert result.follow_up is not None
    assert (result.follow_up.kind, result.follow_up.owner_user_id) == (FollowUpKind.SHARED, None)
    assert (await state(engine, held.customer_id))["row"][3] == due  # rule 11 reads it


@pytest.mark.parametrize(
    ("outcome", "details", "at", "message"),
    [
        ("interested", {}, None, "needs a follow-up time"),
        ("interested", {}, NOW - timedelta(minutes=1), "must lie in the future"),
        ("sale", {"price_plan": "Fixed"}, NOW + timedelta(days=1), "takes no follow-up time"),
    ],
    ids=["time-missing", "time-past", "no-follow-up-outcome-given-a-time"],
)
async def test_rule_15_follow_up_time_checked_with_nothing_written(
    engine: AsyncEngine,
    outcome: str,
    details: dict[str, Any],
    at: datetime | None,
    message: str,
) -> None:
    held = await held_customer(engine)
    before = await state(engine, held.customer_id)
    with pytest.raises(Invalid, match=message):
        await save(engine, held.holding, outcome, details, follow_up_at=at)
    assert await state(engine, held.customer_id) == before


# Follow-ups end when the customer gets an outcome ------------------------------------------


async def test_outcome_ends_open_follow_ups_with_history(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    mine = await add_follow_up(engine, held, FollowUpKind.PERSONAL, held.agent)
    shared = await add_follow_up(engine, held, FollowUpKind.SHARED, None)
    assert (await state(engine, held.customer_id))["row"][3] is not None
    result = await save(engine, held.holding, "sale", {"price_plan": "Fixed"})
    assert sorted(f.id for f in result.ended_follow_ups) == sorted([mine.id, shared.id])
    assert result.follow_up is None
    after = await state(engine, held.customer_id)
    assert after["row"][3] is None  # no shared follow-up holds it any more
    async with engine.connect() as conn:
        assert await repo.open_follow_ups_for_customer(conn, held.customer_id) == []
        reasons = (
            await conn.execute(
                select(t.follow_ups.c.ended_reason, t.follow_ups.c.ended_at).where(
                    t.follow_ups.c.customer_id == held.customer_id
                )
            )
        ).all()
    assert {tuple(r) for r in reasons} == {("outcome", NOW)}
    ended = [d for k, d in after["history"] if k is HistoryKind.FOLLOW_UP_ENDED]
    assert sorted(d["follow_up_id"] for d in ended) == sorted([mine.id, shared.id])
    assert {d["reason"] for d in ended} == {"outcome"}


async def test_rule_15_new_follow_up_replaces_the_open_ones(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    old = await add_follow_up(engine, held, FollowUpKind.SHARED, None)
    due = NOW + timedelta(days=3)
    result = await save(engine, held.holding, "interested", follow_up_at=due)
    assert [f.id for f in result.ended_follow_ups] == [old.id]
    async with engine.connect() as conn:
        open_now = await repo.open_follow_ups_for_customer(conn, held.customer_id)
    assert [(f.kind, f.due_at) for f in open_now] == [(FollowUpKind.PERSONAL, due)]
    kinds = kinds_after_selection((await state(engine, held.customer_id))["history"])
    assert kinds[-3:] == [
        HistoryKind.OUTCOME,
        HistoryKind.FOLLOW_UP_ENDED,
        HistoryKind.FOLLOW_UP_CREATED,
    ]


# Rule 23 hook: the caller learns which SMS the outcome asks for -----------------------------


async def test_rule_23_outcome_names_its_sms_template(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    assert (await save(engine, held.holding, "sale", {"price_plan": "F"})).sms_template == (
        "sale_thanks"
    )
    other = await held_customer(engine)
    result = await save(engine, other.holding, "interested", follow_up_at=NOW + timedelta(days=1))
    assert result.sms_template is None


async def test_outcome_on_a_customer_in_no_assignment_is_refused(engine: AsyncEngine) -> None:
    held = await held_customer(engine)
    async with engine.begin() as conn:
        await conn.execute(
            t.customers.update()
            .where(t.customers.c.id == held.customer_id)
            .values(assignment_id=None, segment_id=None, status=None)
        )
    before = await state(engine, held.customer_id)
    with pytest.raises(Invalid, match="in no assignment"):
        await save(engine, held.holding, "sale", {"price_plan": "F"})
    assert await state(engine, held.customer_id) == before


async def test_rule_18_an_edited_flow_rules_the_next_outcome(engine: AsyncEngine) -> None:
    """The flow an outcome is checked against is the assignment's as it is now: an edit made
    between two outcomes (a status flow changed, automatic SMS turned on) rules the second."""
    held = await held_customer(engine)
    later = NOW + timedelta(days=1)
    first = await save(engine, held.holding, "later", follow_up_at=later)
    assert first.status == AVAILABLE and not first.sms_wanted
    edited = CustomerFlow(
        statuses=FLOW.statuses,
        outcomes=tuple(
            replace(o, from_statuses=frozenset({AVAILABLE})) if o.key == "sale" else o
            for o in FLOW.outcomes
            if o.key != "later"
        ),
    )
    a = t.assignments.c
    async with engine.begin() as conn:
        setup = (await conn.execute(select(a.setup).where(a.id == held.assignment_id))).scalar_one()
        await conn.execute(
            update(t.assignments)
            .where(a.id == held.assignment_id)
            .values(flow=flow_to_json(edited), setup={**setup, "auto_sms": True})
        )
    with pytest.raises(InvalidTransition):
        await save(engine, held.holding, "later", follow_up_at=later)
    sold = await save(engine, held.holding, "sale", {"price_plan": "fixed"})
    assert sold.status == "sale" and sold.sms_wanted
