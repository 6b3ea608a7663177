"""The durable copy of who holds what (rules 4, 5): each user's latest selection is kept beside
the customers (user_selections), so a holding a crash left unrecorded is cleared by the user's
next selection, and a rebuild of Redis from the database keeps each user's newest holding only.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.engine import alembic_config, make_engine, migrate
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import CrmKind, Role, WorkMode

FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale"),),
)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
c = t.customers.c


@dataclass
class Shop:
    owner: int
    assignment: int
    segment: int
    agent: int
    customers: list[int]


async def shop(engine: AsyncEngine, n: int = 3) -> Shop:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"holdings-{tag}")
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(conn, owner.id, crm.id, "List", FLOW)
        agent = await repo.create_user(
            conn, owner.id, f"agent-{tag}", "Agent", Role.AGENT, "", password_hash="x"
        )
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"c{i}",
                    "name": f"Customer {i}",
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                    "status": AVAILABLE,
                }
                for i in range(n)
            ],
        )
        ids = list(
            (
                await conn.execute(select(c.id).where(c.crm_id == crm.id).order_by(c.external_id))
            ).scalars()
        )
    return Shop(owner.id, assignment.id, assignment.unsegmented.id, agent.id, ids)


async def record(engine: AsyncEngine, s: Shop, customer_id: int, token: int) -> bool:
    async with engine.begin() as conn:
        return await fencing.record_selected(
            conn,
            owner=s.owner,
            customer_id=customer_id,
            user_id=s.agent,
            token=token,
            at=NOW + timedelta(seconds=token),
            assignment_id=s.assignment,
            segment_id=s.segment,
            mode=WorkMode.LIST,
        )


async def holders(engine: AsyncEngine, s: Shop) -> dict[int, int | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(c.id, c.holder_user_id).where(c.id.in_(s.customers)))
        return {row.id: row.holder_user_id for row in rows}


async def latest(engine: AsyncEngine, s: Shop) -> tuple[int, int] | None:
    u = t.user_selections.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(u.customer_id, u.token).where(u.user_id == s.agent))
        ).first()
    return None if row is None else (row.customer_id, row.token)


async def test_rule_04_next_selection_clears_a_holding_a_crash_left(engine: AsyncEngine) -> None:
    s = await shop(engine)
    first, second, _ = s.customers
    assert await record(engine, s, first, 5)
    # Redis released `first` and the node died before recording it: the row still names the
    # agent. The agent's next selection (Redis proved it holds nothing else) clears it.
    assert await record(engine, s, second, 7)
    assert await holders(engine, s) == {first: None, second: s.agent, s.customers[2]: None}
    assert await latest(engine, s) == (second, 7)


async def test_rule_04_a_late_older_selection_leaves_the_latest_alone(engine: AsyncEngine) -> None:
    s = await shop(engine)
    first, second, third = s.customers
    assert await record(engine, s, second, 7)
    # An older selection recorded late (its transaction lost the race) neither clears the newer
    # holding nor takes its place as the user's latest.
    assert await record(engine, s, first, 5)
    assert await latest(engine, s) == (second, 7)
    assert (await holders(engine, s))[second] == s.agent
    # The next selection clears the latest one still held.
    assert await record(engine, s, third, 9)
    assert (await holders(engine, s))[second] is None
    assert await latest(engine, s) == (third, 9)


async def test_rule_05_rebuild_keeps_each_users_newest_holding(engine: AsyncEngine) -> None:
    s = await shop(engine)
    first, second, third = s.customers
    assert await record(engine, s, first, 5)
    assert await record(engine, s, third, 9)
    # Two holdings of one user, as a crash between a release and its recording can leave them
    # where no later selection cleaned up (written here directly).
    async with engine.begin() as conn:
        await conn.execute(
            update(t.customers)
            .where(c.id == second)
            .values(holder_user_id=s.agent, selection_token=6, selected_at=NOW)
        )
        found, high_water = await fencing.durable_holders(conn, s.owner)
    assert [(h.customer_id, h.user_id, h.token) for h in found] == [(third, s.agent, 9)]
    assert high_water == 9
    # The older one is out of the way: back in play, its token kept (the high-water mark).
    assert await holders(engine, s) == {first: None, second: None, third: s.agent}
    async with engine.connect() as conn:
        assert (
            await conn.execute(select(c.selection_token).where(c.id == second))
        ).scalar_one() == 6


async def test_migration_0005_keeps_each_holders_newest_selection(
    engine: AsyncEngine, database: dict[str, str | None]
) -> None:
    """Upgrading a database with holders fills user_selections with each one's newest."""
    from sqlalchemy import text

    schema = None
    url = str(database["url"])
    if database["schema"]:
        schema = f"{database['schema']}_m5"
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    else:
        url = url.replace(".sqlite3", "-m5.sqlite3")
    old = make_engine(url, schema=schema)
    try:
        await migrate(old, "0004")
        s = await shop(old)
        first, second, third = s.customers
        async with old.begin() as conn:
            for cid, token in ((first, 5), (second, 8)):
                await conn.execute(
                    update(t.customers)
                    .where(c.id == cid)
                    .values(holder_user_id=s.agent, selection_token=token, selected_at=NOW)
                )
            await conn.execute(update(t.customers).where(c.id == third).values(selection_token=9))
        await migrate(old)
        assert await latest(old, s) == (second, 8)
        # And back: the holder's index and the keys return, the table goes.
        async with old.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0004"))
        async with old.connect() as conn:
            found = await conn.run_sync(
                lambda sync: (
                    {ix["name"] for ix in inspect(sync).get_indexes("customers")},
                    {fk["name"] for fk in inspect(sync).get_foreign_keys("history")},
                    inspect(sync).has_table("user_selections"),
                )
            )
        indexes, keys, has_table = found
        assert "ix_customers_holder" in indexes and not has_table
        assert "fk_history_assignment_id_assignments" in keys
        await migrate(old)
        assert await latest(old, s) == (second, 8)
    finally:
        await old.dispose()
        if schema:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


# Moves on recorded together (presence.service's group commit): on PostgreSQL one statement for
# a batch's moves, which must write what the moves one by one would have.


async def another_agent(engine: AsyncEngine, s: Shop) -> int:
    async with engine.begin() as conn:
        user = await repo.create_user(
            conn,
            s.owner,
            f"agent-{uuid.uuid4().hex[:10]}",
            "Agent",
            Role.AGENT,
            "",
            password_hash="x",
        )
    return user.id


def move(
    s: Shop, user: int, left: int, left_token: int, taken: int, token: int, **selection: Any
) -> tuple[fencing.ReleaseRecord, fencing.SelectionRecord]:
    at = NOW + timedelta(seconds=token)
    return (
        fencing.ReleaseRecord(s.owner, left, left_token, user, user, s.assignment, at),
        fencing.SelectionRecord(
            s.owner, taken, user, token, at, s.assignment, s.segment, WorkMode.LIST, **selection
        ),
    )


async def record_as(engine: AsyncEngine, s: Shop, user: int, customer_id: int, token: int) -> None:
    async with engine.begin() as conn:
        assert await fencing.record_selected(
            conn,
            owner=s.owner,
            customer_id=customer_id,
            user_id=user,
            token=token,
            at=NOW,
            assignment_id=s.assignment,
            segment_id=s.segment,
            mode=WorkMode.LIST,
        )


async def kinds(engine: AsyncEngine, customer_id: int) -> list[tuple[str, int | None]]:
    h = t.history.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(h.kind, h.user_id, h.data).where(h.customer_id == customer_id).order_by(h.id)
        )
        return [(row.kind, row.data.get("token")) for row in rows]


async def test_rule_04_moves_recorded_together_release_and_select_each(
    engine: AsyncEngine,
) -> None:
    s = await shop(engine, n=5)
    other = await another_agent(engine, s)
    c0, c1, c2, c3, c4 = s.customers
    await record_as(engine, s, s.agent, c0, 5)
    await record_as(engine, s, other, c1, 6)
    # c4 no longer qualifies for the list when the third agent's move is recorded.
    third = await another_agent(engine, s)
    await record_as(engine, s, third, c3, 4)
    async with engine.begin() as conn:
        await conn.execute(update(t.customers).where(c.id == c4).values(status="sale"))
    available = c.status == AVAILABLE
    async with engine.begin() as conn:
        answers = await fencing.record_moves_on(
            conn,
            [
                move(s, s.agent, c0, 5, c2, 7, qualifies=available),
                (fencing.ReleaseRecord(s.owner, c1, 6, other, other, s.assignment, NOW), None),
                move(s, third, c3, 4, c4, 8, qualifies=available),
            ],
        )
    assert answers == [True, False, False]
    assert await holders(engine, s) == {c0: None, c1: None, c2: s.agent, c3: None, c4: None}
    assert await latest(engine, s) == (c2, 7)
    assert await kinds(engine, c0) == [("selected", 5), ("released", 5)]
    assert await kinds(engine, c2) == [("selected", 7)]
    assert await kinds(engine, c3) == [("selected", 4), ("released", 4)]
    assert await kinds(engine, c4) == []  # refused: nothing written
    h = t.history.c
    async with engine.connect() as conn:
        written = (
            await conn.execute(select(h.at, h.assignment_id).where(h.customer_id == c2))
        ).one()
        selected_at = (await conn.execute(select(c.selected_at).where(c.id == c2))).scalar_one()
    assert written.at == selected_at == NOW + timedelta(seconds=7)
    assert written.assignment_id == s.assignment


async def test_rule_04_moves_with_a_naive_time_are_refused_and_write_nothing(
    engine: AsyncEngine,
) -> None:
    """A time without a zone is refused as a UTC column refuses it, also where a batch's rows
    go to the database as one document (PostgreSQL) and skip the column's own check."""
    s = await shop(engine, n=2)
    c0, c1 = s.customers
    await record_as(engine, s, s.agent, c0, 5)
    release, selection = move(s, s.agent, c0, 5, c1, 7)
    naive = dataclasses.replace(selection, at=selection.at.replace(tzinfo=None))
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        async with engine.begin() as conn:
            await fencing.record_moves_on(conn, [(release, naive)])
    assert await holders(engine, s) == {c0: s.agent, c1: None}
    assert await kinds(engine, c1) == []


async def test_rule_04_a_customer_released_and_taken_at_one_moment_goes_to_its_taker(
    engine: AsyncEngine,
) -> None:
    """One move leaves a customer that another move of the same batch takes: each row is
    written in the moves' order, so the taker holds it and no release undoes that."""
    s = await shop(engine, n=3)
    other = await another_agent(engine, s)
    c0, c1, c2 = s.customers
    await record_as(engine, s, s.agent, c0, 5)
    await record_as(engine, s, other, c1, 6)
    async with engine.begin() as conn:
        answers = await fencing.record_moves_on(
            conn, [move(s, s.agent, c0, 5, c2, 7), move(s, other, c1, 6, c0, 8)]
        )
    assert answers == [True, True]
    assert await holders(engine, s) == {c0: other, c1: None, c2: s.agent}
    assert await kinds(engine, c0) == [("selected", 5), ("released", 5), ("selected", 8)]


async def test_rule_04_moving_on_together_clears_a_holding_a_crash_left(
    engine: AsyncEngine,
) -> None:
    s = await shop(engine, n=3)
    c0, c1, c2 = s.customers
    await record_as(engine, s, s.agent, c0, 5)
    # Redis moved the agent on from c0 to c1 (token 7) and the node died before recording it:
    # the database still names the agent on c0. Its next move on (c1 -> c2) clears it.
    async with engine.begin() as conn:
        assert await fencing.record_moves_on(conn, [move(s, s.agent, c1, 7, c2, 9)]) == [True]
    assert await holders(engine, s) == {c0: None, c1: None, c2: s.agent}
    assert await latest(engine, s) == (c2, 9)
