"""Repositories against the real, migrated database (SQLite, or PostgreSQL with DATABASE_URL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.db import screens
from domain.db import tables as t
from domain.db.codec import flow_from_json, flow_to_json, setup_from_json, setup_to_json
from domain.errors import FlowError, Invalid, WatertightError
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import (
    UNSEGMENTED_NAME,
    AssignmentSetup,
    Attempt,
    AttemptKind,
    CrmKind,
    DialMode,
    FieldType,
    FollowUpKind,
    HistoryEvent,
    HistoryKind,
    InfoField,
    Role,
    SortKey,
)
from domain.passwords import verify_password

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
            sms_template="Takk, {name}!",
            details=(
                DetailField("price_plan", "Price plan", FieldType.TEXT, required=True),
                DetailField("monthly_kwh", "Monthly kWh", FieldType.NUMBER),
            ),
        ),
        Outcome(
            "later", "Call later", frozenset({AVAILABLE}), AVAILABLE, follow_up=FollowUpKind.SHARED
        ),
    ),
)
SETUP = AssignmentSetup(
    sort_keys=(SortKey("segment_priority", descending=True), SortKey("info.birth_year")),
    max_attempts=4,
    retry_delay=timedelta(minutes=90),
    auto_sms=True,
    talk_timer_seconds=300,
    wrap_up_seconds=None,
    dial_mode=DialMode.PROGRESSIVE,
    abandon_target=0.05,
)
FIELDS = (
    InfoField("birth_year", "Birth year", FieldType.NUMBER),
    InfoField("municipality", "Municipality"),
)
NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def make_tenant(engine: AsyncEngine, *, segments=(("Oslo", 20), ("Bergen", 10))) -> dict:
    """A fresh data owner with a CRM, an assignment, an agent and an admin."""
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, unique("owner"))
        crm = await repo.create_crm(conn, owner.id, "Private", CrmKind.B2C, FIELDS)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "Campaign", FLOW, SETUP, segments
        )
        agent = await repo.create_user(
            conn, owner.id, unique("agent"), "Kari Nordmann", Role.AGENT, "s3cret"
        )
        admin = await repo.create_user(
            conn, owner.id, unique("admin"), "Ola Nordmann", Role.ADMIN, "s3cret"
        )
    return {"owner": owner, "crm": crm, "assignment": assignment, "agent": agent, "admin": admin}


async def add_customers(engine: AsyncEngine, tenant: dict, n: int, **extra) -> list[int]:
    a = tenant["assignment"]
    rows = [
        {
            "data_owner_id": a.data_owner_id,
            "crm_id": a.crm_id,
            "external_id": unique("ext"),
            "name": f"Customer {i}",
            "phones": [f"+479{i:07d}"] if i % 3 else [],
            "email": None if i % 2 else f"c{i}@example.no",
            "info": {"birth_year": 1950 + i, "municipality": "Oslo"},
            "assignment_id": a.id,
            "segment_id": a.unsegmented.id,
            **extra,
        }
        for i in range(n)
    ]
    async with engine.begin() as conn:
        assert await repo.insert_customers(conn, rows) == n
        result = await conn.execute(
            select(t.customers.c.id)
            .where(t.customers.c.external_id.in_([r["external_id"] for r in rows]))
            .order_by(t.customers.c.id)
        )
        return [r[0] for r in result]


# ---------------------------------------------------------------------------------------------
# codec


def test_flow_and_setup_json_round_trip() -> None:
    assert flow_from_json(flow_to_json(FLOW)) == FLOW
    assert setup_from_json(setup_to_json(SETUP)) == SETUP
    assert setup_to_json(SETUP)["retry_delay_seconds"] == 5400
    assert setup_from_json({}) == AssignmentSetup()


def test_stored_flow_that_cannot_work_is_refused() -> None:
    data = flow_to_json(FLOW)
    data["outcomes"][0]["to_status"] = "nowhere"
    with pytest.raises(FlowError):
        flow_from_json(data)
    with pytest.raises(FlowError):
        flow_from_json({"statuses": "available"})
    with pytest.raises(FlowError):
        flow_from_json({"statuses": [{"key": "x", "name": "X"}], "outcomes": []})
    with pytest.raises(Invalid):
        setup_from_json({"dial_mode": "telepathic"})


# ---------------------------------------------------------------------------------------------
# assignments


async def test_assignment_round_trip_with_flow_setup_and_segments(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    created = tenant["assignment"]
    async with engine.connect() as conn:
        loaded = await repo.get_assignment(conn, created.id)
    assert loaded == created
    assert loaded.flow == FLOW
    assert loaded.setup == SETUP
    assert [(s.name, s.priority) for s in loaded.segments] == [
        ("Oslo", 20),
        ("Bergen", 10),
        (UNSEGMENTED_NAME, 0),
    ]


async def test_unsegmented_is_always_created(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine, segments=())
    async with engine.connect() as conn:
        loaded = await repo.get_assignment(conn, tenant["assignment"].id)
    assert loaded is not None
    assert len(loaded.segments) == 1
    assert loaded.unsegmented.is_unsegmented
    assert loaded.unsegmented.name == UNSEGMENTED_NAME


async def test_assignment_refuses_another_owners_crm_and_unknown_sort_key(
    engine: AsyncEngine,
) -> None:
    one, other = await make_tenant(engine), await make_tenant(engine)
    async with engine.connect() as conn:
        with pytest.raises(WatertightError):
            await repo.create_assignment(conn, one["owner"].id, other["crm"].id, unique("a"), FLOW)
        with pytest.raises(Invalid):
            await repo.create_assignment(
                conn,
                one["owner"].id,
                one["crm"].id,
                unique("a"),
                FLOW,
                AssignmentSetup(sort_keys=(SortKey("info.shoe_size"),)),
            )
        await conn.rollback()


async def test_get_assignment_of_another_owner_is_none(engine: AsyncEngine) -> None:
    one, other = await make_tenant(engine), await make_tenant(engine)
    async with engine.connect() as conn:
        assert (
            await repo.get_assignment(conn, one["assignment"].id, data_owner_id=other["owner"].id)
            is None
        )
        assert await repo.get_assignment(conn, 10**12) is None


# ---------------------------------------------------------------------------------------------
# users and tenancy


async def test_users_store_an_argon2_hash_that_verifies(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    agent = tenant["agent"]
    async with engine.connect() as conn:
        found = await repo.get_user_by_username(conn, agent.username)
        assert await repo.get_user(conn, agent.id) == agent
        assert await repo.get_user_by_username(conn, unique("nobody")) is None
    assert found is not None
    user, password_hash = found
    assert user == agent
    assert user.role is Role.AGENT
    assert password_hash.startswith("$argon2id$")
    assert "s3cret" not in password_hash
    assert verify_password(password_hash, "s3cret")
    assert not verify_password(password_hash, "wrong")


async def test_grants_are_idempotent_and_listed(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    agent, assignment = tenant["agent"], tenant["assignment"]
    async with engine.begin() as conn:
        assert await repo.granted_assignment_ids(conn, agent.id) == set()
        await repo.grant(conn, agent.id, assignment.id)
        await repo.grant(conn, agent.id, assignment.id)
        assert await repo.granted_assignment_ids(conn, agent.id) == {assignment.id}


async def test_rule_03_users_see_only_granted_assignments_and_never_another_tenants(
    engine: AsyncEngine,
) -> None:
    one, other = await make_tenant(engine), await make_tenant(engine)
    agent, admin = one["agent"], one["admin"]
    await add_customers(engine, one, 5)
    await add_customers(engine, one, 2, status="interested")
    async with engine.begin() as conn:
        second = await repo.create_assignment(
            conn, one["owner"].id, one["crm"].id, "Second", FLOW, SETUP, ["Tromsø"]
        )
        # Not granted: the agent sees nothing.
        assert await repo.visible_assignments(conn, agent) == []
        await repo.grant(conn, agent.id, one["assignment"].id)
        visible = await repo.visible_assignments(conn, agent)
        assert [v["id"] for v in visible] == [one["assignment"].id]
        assert visible[0]["name"] == "Campaign"
        assert visible[0]["available"] == 5
        assert [s["name"] for s in visible[0]["segments"]] == ["Oslo", "Bergen", UNSEGMENTED_NAME]
        assert all(set(s) == {"id", "name"} for s in visible[0]["segments"])
        # An admin sees every assignment of its own data owner, granted or not.
        admin_view = await repo.visible_assignments(conn, admin)
        assert [v["id"] for v in admin_view] == [one["assignment"].id, second.id]
        assert admin_view[1]["available"] == 0
        # Another tenant's admin and agent see none of it.
        for outsider in (other["admin"], other["agent"]):
            ids = {v["id"] for v in await repo.visible_assignments(conn, outsider)}
            assert one["assignment"].id not in ids and second.id not in ids
        # And a grant across the wall is refused.
        with pytest.raises(WatertightError):
            await repo.grant(conn, other["agent"].id, one["assignment"].id)


async def test_get_customer_of_another_tenant_is_none(engine: AsyncEngine) -> None:
    one, other = await make_tenant(engine), await make_tenant(engine)
    [customer_id] = await add_customers(engine, one, 1)
    async with engine.connect() as conn:
        customer = await repo.get_customer(conn, one["owner"].id, customer_id)
        assert customer is not None
        assert customer.status == AVAILABLE
        assert customer.assignment_id == one["assignment"].id
        assert customer.info == {"birth_year": 1950, "municipality": "Oslo"}
        assert customer.phones == ()
        assert customer.email == "c0@example.no"
        assert customer.attempts == 0
        assert customer.created_at is not None and customer.created_at.tzinfo is not None
        assert await repo.get_customer(conn, other["owner"].id, customer_id) is None
        assert await repo.get_customer(conn, one["owner"].id, 10**12) is None


# ---------------------------------------------------------------------------------------------
# follow-ups, history, attempts


async def shared_due(engine: AsyncEngine, customer_id: int) -> datetime | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(t.customers.c.shared_follow_up_at).where(t.customers.c.id == customer_id)
            )
        ).scalar_one()


async def test_follow_ups_keep_shared_follow_up_at_in_sync(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    agent, assignment = tenant["agent"], tenant["assignment"]
    customer_id, other_id = await add_customers(engine, tenant, 2)
    due1, due2, due3 = (NOW + timedelta(hours=h) for h in (1, 2, 3))
    async with engine.begin() as conn:
        personal = await repo.create_follow_up(
            conn,
            customer_id=customer_id,
            assignment_id=assignment.id,
            kind=FollowUpKind.PERSONAL,
            due_at=due1,
            owner_user_id=agent.id,
            now=NOW,
        )
        shared = await repo.create_follow_up(
            conn,
            customer_id=customer_id,
            assignment_id=assignment.id,
            kind=FollowUpKind.SHARED,
            due_at=due2,
            now=NOW,
        )
        with pytest.raises(Invalid):
            await repo.create_follow_up(
                conn,
                customer_id=customer_id,
                assignment_id=assignment.id,
                kind=FollowUpKind.PERSONAL,
                due_at=due1,
            )
    assert personal.kind is FollowUpKind.PERSONAL and shared.owner_user_id is None
    assert await shared_due(engine, customer_id) == due2
    assert await shared_due(engine, other_id) is None

    # A new shared follow-up replaces the old one.
    async with engine.begin() as conn:
        replacement = await repo.create_follow_up(
            conn,
            customer_id=customer_id,
            assignment_id=assignment.id,
            kind="shared",
            due_at=due3,
        )
        open_ = await repo.open_follow_ups_for_customer(conn, customer_id)
    assert [f.id for f in open_] == [personal.id, replacement.id]
    assert await shared_due(engine, customer_id) == due3

    async with engine.begin() as conn:
        mine = await repo.open_follow_ups_for_user(conn, agent.id, [assignment.id])
        assert [f.id for f in mine] == [personal.id, replacement.id]
        assert await repo.open_follow_ups_for_user(conn, tenant["admin"].id, [assignment.id]) == [
            replacement
        ]
        assert await repo.open_follow_ups_for_user(conn, agent.id, []) == []
        ended = await repo.end_follow_ups(conn, customer_id, "followed_up", at=NOW)
    assert {f.id for f in ended} == {personal.id, replacement.id}
    assert all(f.ended_at == NOW for f in ended)
    assert await shared_due(engine, customer_id) is None
    async with engine.connect() as conn:
        assert await repo.open_follow_ups_for_user(conn, agent.id, [assignment.id]) == []
        reasons = (
            await conn.execute(
                select(t.follow_ups.c.ended_reason)
                .where(t.follow_ups.c.customer_id == customer_id)
                .order_by(t.follow_ups.c.id)
            )
        ).scalars()
        assert list(reasons) == ["followed_up", "replaced", "followed_up"]


async def test_ending_only_personal_follow_ups_keeps_the_shared_due_time(
    engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(engine)
    [customer_id] = await add_customers(engine, tenant, 1)
    due = NOW + timedelta(days=1)
    async with engine.begin() as conn:
        for kind, owner in (
            (FollowUpKind.SHARED, None),
            (FollowUpKind.PERSONAL, tenant["agent"].id),
        ):
            await repo.create_follow_up(
                conn,
                customer_id=customer_id,
                assignment_id=tenant["assignment"].id,
                kind=kind,
                due_at=due,
                owner_user_id=owner,
            )
        ended = await repo.end_follow_ups(conn, customer_id, "moved", kind=FollowUpKind.PERSONAL)
    assert [f.kind for f in ended] == [FollowUpKind.PERSONAL]
    assert await shared_due(engine, customer_id) == due


async def test_history_is_appended_and_listed_in_order(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    customer_id, other_id = await add_customers(engine, tenant, 2)
    agent, assignment = tenant["agent"], tenant["assignment"]
    events = [
        HistoryEvent(customer_id, HistoryKind.SELECTED, NOW, agent.id, assignment.id),
        HistoryEvent(
            customer_id,
            HistoryKind.ATTEMPT,
            NOW - timedelta(minutes=5),  # written later, though dated earlier
            agent.id,
            assignment.id,
            {"kind": "call_back_later", "at": NOW + timedelta(hours=1)},
        ),
        HistoryEvent(customer_id, HistoryKind.RELEASED, NOW, None, assignment.id, {"by": 1}),
    ]
    async with engine.begin() as conn:
        for e in events:
            await repo.add_history(conn, e)
        await repo.add_history(conn, HistoryEvent(other_id, HistoryKind.CREATED, NOW))
        listed = await repo.list_history(conn, customer_id)
    assert [e.kind for e in listed] == [
        HistoryKind.SELECTED,
        HistoryKind.ATTEMPT,
        HistoryKind.RELEASED,
    ]
    assert listed[0] == events[0]
    assert listed[1].data == {
        "kind": "call_back_later",
        "at": (NOW + timedelta(hours=1)).isoformat(),
    }
    assert listed[1].at == NOW - timedelta(minutes=5)


async def test_screens_show_the_last_history_events_in_order_with_names(
    engine: AsyncEngine,
) -> None:
    """A customer with more history than a screen shows: the newest HISTORY_LIMIT events, in
    the order they were written, each user's name beside it (none for a system event)."""
    tenant = await make_tenant(engine)
    (customer_id,) = await add_customers(engine, tenant, 1)
    agent, admin, assignment = tenant["agent"], tenant["admin"], tenant["assignment"]
    total = screens.HISTORY_LIMIT + 25
    async with engine.begin() as conn:
        for i in range(total):
            user_id = None if i % 5 == 4 else (agent.id if i % 2 else admin.id)
            await repo.add_history(
                conn,
                HistoryEvent(
                    customer_id, HistoryKind.FIELD_EDITED, NOW, user_id, assignment.id, {"n": i}
                ),
            )
        events, names = await screens.last_history(conn, customer_id)
        _card, details = await screens.customer_details(conn, tenant["owner"].id, customer_id)
    assert [e.data["n"] for e in events] == list(range(25, total))
    assert names == {agent.id: "Kari Nordmann", admin.id: "Ola Nordmann"}
    shown = details["history"]  # newest first
    assert [h["data"]["n"] for h in shown] == list(reversed(range(25, total)))
    assert {h["user_name"] for h in shown} == {"Kari Nordmann", "Ola Nordmann", None}
    assert all(h["user_name"] is None for h in shown if h["user_id"] is None)


async def test_record_attempt_counts_and_stamps(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    [customer_id] = await add_customers(engine, tenant, 1)
    agent, assignment = tenant["agent"], tenant["assignment"]
    async with engine.begin() as conn:
        n1 = await repo.record_attempt(
            conn, Attempt(customer_id, assignment.id, agent.id, AttemptKind.NO_ANSWER, NOW)
        )
        later = NOW + timedelta(minutes=10)
        n2 = await repo.record_attempt(
            conn,
            Attempt(
                customer_id,
                assignment.id,
                agent.id,
                AttemptKind.CALL_BACK_LATER,
                later,
                call_back_at=later + timedelta(hours=2),
            ),
        )
        customer = await repo.get_customer(conn, tenant["owner"].id, customer_id)
        rows = (
            await conn.execute(
                select(t.attempts.c.kind).where(t.attempts.c.customer_id == customer_id)
            )
        ).scalars()
        kinds = sorted(rows)
    assert (n1, n2) == (1, 2)
    assert customer is not None
    assert customer.attempts == 2
    assert customer.last_attempt_at == later
    assert customer.status == AVAILABLE
    assert kinds == ["call_back_later", "no_answer"]


async def test_insert_customers_keeps_external_ids_unique_per_crm(engine: AsyncEngine) -> None:
    tenant = await make_tenant(engine)
    a = tenant["assignment"]
    row = {
        "data_owner_id": a.data_owner_id,
        "crm_id": a.crm_id,
        "external_id": unique("dup"),
        "name": "Twin",
    }
    async with engine.begin() as conn:
        assert await repo.insert_customers(conn, [row]) == 1
        assert await repo.insert_customers(conn, []) == 0
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await repo.insert_customers(conn, [row])
    async with engine.connect() as conn:
        found = await repo.get_customer_by_external_id(
            conn, a.data_owner_id, a.crm_id, row["external_id"]
        )
    assert found is not None and found.assignment_id is None and found.status is None
