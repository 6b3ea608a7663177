"""The demo seed: idempotent, the documented users and tenants, and bulk customers."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import demo
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.seed import seed_customers, seed_demo
from domain.flows import AVAILABLE
from domain.model import DialMode, Role
from domain.passwords import verify_password

NORDLYS_USERNAMES = [f"agent{i}" for i in range(1, 21)] + ["supervisor1", "admin1"]
FJORD_USERNAMES = ["fjord_agent1", "fjord_supervisor1"]


async def test_seed_demo_is_idempotent_with_the_documented_users(engine: AsyncEngine) -> None:
    first = await seed_demo(engine)
    again = await seed_demo(engine)
    assert again["created"] is False
    assert {k: v for k, v in again.items() if k != "created"} == {
        k: v for k, v in first.items() if k != "created"
    }
    assert again["users"] == NORDLYS_USERNAMES + FJORD_USERNAMES
    assert [o["name"] for o in again["data_owners"]] == [demo.NORDLYS, demo.FJORD]
    assert [a["name"] for a in again["assignments"]] == [
        demo.FIXED_PRICE,
        demo.WIN_BACK,
        demo.ENERGY_AUDIT,
        demo.HOME_INSURANCE,
    ]
    assert all(a["customers"] >= 150 for a in again["assignments"])
    async with engine.connect() as conn:
        owners = (
            await conn.execute(
                select(func.count())
                .select_from(t.data_owners)
                .where(t.data_owners.c.name.in_([demo.NORDLYS, demo.FJORD]))
            )
        ).scalar_one()
    assert owners == 2


async def test_demo_users_roles_passwords_and_grants(engine: AsyncEngine) -> None:
    summary = await seed_demo(engine)
    nordlys_id, fjord_id = (o["id"] for o in summary["data_owners"])
    nordlys_assignments = [
        a["id"] for a in summary["assignments"] if a["data_owner_id"] == nordlys_id
    ]
    async with engine.connect() as conn:
        for username in NORDLYS_USERNAMES + FJORD_USERNAMES:
            found = await repo.get_user_by_username(conn, username)
            assert found is not None, username
            user, password_hash = found
            assert verify_password(password_hash, "demo")
            expected_owner = fjord_id if username.startswith("fjord_") else nordlys_id
            assert user.data_owner_id == expected_owner
        agent, _ = await repo.get_user_by_username(conn, "agent7")
        supervisor, _ = await repo.get_user_by_username(conn, "supervisor1")
        admin, _ = await repo.get_user_by_username(conn, "admin1")
        fjord_agent, _ = await repo.get_user_by_username(conn, "fjord_agent1")
        assert (agent.role, supervisor.role, admin.role) == (
            Role.AGENT,
            Role.SUPERVISOR,
            Role.ADMIN,
        )
        for user in (agent, supervisor):
            assert await repo.granted_assignment_ids(conn, user.id) == set(nordlys_assignments)
            visible = await repo.visible_assignments(conn, user)
            assert [v["id"] for v in visible] == nordlys_assignments
            assert all(v["available"] > 0 for v in visible)
        assert [v["id"] for v in await repo.visible_assignments(conn, admin)] == (
            nordlys_assignments
        )
        fjord_visible = await repo.visible_assignments(conn, fjord_agent)
        assert [v["name"] for v in fjord_visible] == [demo.HOME_INSURANCE]


async def test_demo_assignments_are_realistic(engine: AsyncEngine) -> None:
    summary = await seed_demo(engine)
    by_name = {a["name"]: a for a in summary["assignments"]}
    async with engine.connect() as conn:
        fixed = await repo.get_assignment(conn, by_name[demo.FIXED_PRICE]["id"])
        audit = await repo.get_assignment(conn, by_name[demo.ENERGY_AUDIT]["id"])
        crm = await repo.get_crm(conn, fixed.crm_id)
        b2b = await repo.get_crm(conn, audit.crm_id)
        statuses = set(
            (
                await conn.execute(
                    select(t.customers.c.status).where(t.customers.c.assignment_id == fixed.id)
                )
            ).scalars()
        )
        shared = (
            await conn.execute(
                select(func.count())
                .select_from(t.customers)
                .where(
                    t.customers.c.assignment_id == fixed.id,
                    t.customers.c.shared_follow_up_at.isnot(None),
                )
            )
        ).scalar_one()
    assert fixed.setup.auto_sms
    assert fixed.flow.outcome("sale").sms_template
    assert fixed.flow.outcome("sale_to_followup").follow_up == "personal"
    assert fixed.flow.outcome("call_in_spring").follow_up == "shared"
    assert [s.name for s in fixed.segments] == ["Oslo", "Bergen", "Trondheim", "Unsegmented"]
    assert audit.setup.dial_mode is DialMode.PROGRESSIVE
    assert crm.kind == "b2c" and {f.key for f in crm.info_fields} >= {
        "birth_year",
        "municipality",
        "current_supplier",
        "consent_date",
        "has_solar",
    }
    assert b2b.kind == "b2b" and crm.id != b2b.id
    assert AVAILABLE in statuses and "sale" in statuses
    assert shared > 0


async def test_seed_customers_adds_unique_external_ids(engine: AsyncEngine) -> None:
    summary = await seed_demo(engine)
    fixed = next(a for a in summary["assignments"] if a["name"] == demo.FIXED_PRICE)
    crm_id = fixed["crm_id"]

    async def counts() -> tuple[int, int, int]:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count(func.distinct(t.customers.c.external_id)),
                        func.count().filter(t.customers.c.assignment_id == fixed["id"]),
                    ).where(t.customers.c.crm_id == crm_id)
                )
            ).one()
        return tuple(row)

    before, distinct_before, in_fixed_before = await counts()
    assert before == distinct_before
    batches: list[int] = []
    assert await seed_customers(engine, 2000, batch=700, progress=batches.append) == 2000
    assert batches == [700, 1400, 2000]  # cumulative
    after, distinct_after, in_fixed_after = await counts()
    assert after == before + 2000
    assert distinct_after == after
    assert in_fixed_after == in_fixed_before + 2000
    # Again: the external ids continue after the largest.
    await seed_customers(engine, 10)
    total, distinct, _ = await counts()
    assert total == distinct == after + 10
    async with engine.connect() as conn:
        available = (
            await conn.execute(
                select(func.count())
                .select_from(t.customers)
                .where(
                    t.customers.c.assignment_id == fixed["id"],
                    t.customers.c.status == AVAILABLE,
                    t.customers.c.segment_id.is_(None),
                )
            )
        ).scalar_one()
    assert available == 0  # every seeded customer sits in a segment
