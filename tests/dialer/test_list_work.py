"""List work through the service layer: Redis decides, the database records and fences.

Rules 4, 7, 8, 10-12 and the durability of selections (recorded with history, rebuilt after a
Redis loss), on the run's real Redis and database; loss tests use a private Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from list_work import ListWork, Stack
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.hopper import RATE_WINDOW_S, candidates
from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import AlreadySelected, NotFound, SelectionLost, UserHasSelection
from domain.model import AssignmentSetup, AttemptKind, HistoryKind, WorkMode
from presence.keys import HopperKey
from presence.selections import NotHolder, Selection
from presence.service import FENCE_GAP

FAST = AssignmentSetup(max_attempts=None, retry_delay=timedelta(0))
c = t.customers.c


async def db_holders(engine: AsyncEngine, work: ListWork) -> dict[int, tuple[int, int]]:
    """customer id -> (holder, token) as the database records it."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(c.id, c.holder_user_id, c.selection_token).where(
                c.data_owner_id == work.owner, c.holder_user_id.isnot(None)
            )
        )
        return {r.id: (r.holder_user_id, r.selection_token) for r in rows}


async def history_kinds(engine: AsyncEngine, customer_id: int) -> list[tuple[str, dict[str, Any]]]:
    async with engine.connect() as conn:
        return [(e.kind.value, dict(e.data)) for e in await repo.list_history(conn, customer_id)]


async def sell(engine: AsyncEngine, selection: Selection) -> None:
    """A holder's write that takes the customer out of the list: fenced, as every write is."""
    async with engine.begin() as conn:
        await fencing.fence(conn, selection.customer_id, selection.user_id, selection.token)
        await conn.execute(
            update(t.customers).where(c.id == selection.customer_id).values(status="sale")
        )


def holding(selection: Selection) -> fencing.Holding:
    return fencing.Holding(selection.customer_id, selection.user_id, selection.token)


async def test_rule_10_claims_follow_the_list_order(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=30, agents=1, setup=FAST)
    async with engine.connect() as conn:
        crm = await repo.get_crm(conn, work.crm_id)
        expected = [
            cid for cid, _ in await candidates(conn, work.assignment, crm, datetime.now(UTC))
        ]
    agent = work.agents[0].id
    got = []
    selection = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    while selection is not None:
        got.append(selection.customer_id)
        await sell(engine, selection)
        selection = await stack.dialer.next(work.owner, agent, work.assignment_id)
    assert got == expected
    assert sorted(got) == sorted(work.customer_ids)


async def test_rule_04_claim_is_recorded_with_holder_and_history(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=5, agents=1, setup=FAST)
    agent = work.agents[0].id
    selection = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    assert selection is not None and selection.mode is WorkMode.LIST
    assert await db_holders(engine, work) == {selection.customer_id: (agent, selection.token)}
    events = await history_kinds(engine, selection.customer_id)
    assert events[-1][0] == HistoryKind.SELECTED.value
    assert events[-1][1]["token"] == selection.token and events[-1][1]["mode"] == "list"
    # Rule 4: one customer per user; the service answers who holds what.
    other = next(cid for cid in work.customer_ids if cid != selection.customer_id)
    with pytest.raises(UserHasSelection) as refused:
        await stack.selections.select(work.owner, agent, other)
    assert refused.value.customer_id == selection.customer_id


async def test_rule_06_manual_select_of_a_held_customer_names_the_holder(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=3, agents=2, setup=FAST)
    first, second = (a.id for a in work.agents)
    held = await stack.selections.select(work.owner, first, work.customer_ids[0])
    with pytest.raises(AlreadySelected) as refused:
        await stack.selections.select(work.owner, second, work.customer_ids[0])
    assert refused.value.held_by == first and refused.value.since == held.since
    # Rule 9: selecting it again (another tab, a reconnect) resumes the same selection.
    again = await stack.selections.select(work.owner, first, work.customer_ids[0])
    assert again.resumed and again.token == held.token
    # Rule 10: a manually held customer is not handed out by list work.
    claimed = await stack.dialer.claim(work.owner, second, work.assignment_id)
    assert claimed is not None and claimed.customer_id != work.customer_ids[0]


async def test_rule_03_another_owners_customer_is_not_found(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    mine = await new_list(n=1, agents=1)
    theirs = await new_list(n=1, agents=1)
    with pytest.raises(NotFound):
        await stack.selections.select(mine.owner, mine.agents[0].id, theirs.customer_ids[0])
    with pytest.raises(NotFound):
        await stack.dialer.claim(mine.owner, mine.agents[0].id, theirs.assignment_id)


async def test_rule_07_supervisor_release_is_recorded_with_who(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=2, agents=2, setup=FAST)
    agent, colleague = (a.id for a in work.agents)
    selection = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    assert selection is not None
    with pytest.raises(NotHolder):  # an agent cannot end a colleague's selection
        await stack.selections.release(work.owner, selection.customer_id, colleague)
    released = await stack.selections.release(
        work.owner, selection.customer_id, work.supervisor.id, supervisor=True
    )
    assert released is not None and released.by_someone_else
    assert released.user_id == agent and released.by_user_id == work.supervisor.id
    assert await db_holders(engine, work) == {}
    kind, data = (await history_kinds(engine, selection.customer_id))[-1]
    assert kind == HistoryKind.RELEASED.value
    assert data == {
        "token": selection.token,
        "holder_user_id": agent,
        "by_user_id": work.supervisor.id,
    }
    # A release of nothing is not an error; with a token it says the selection is gone.
    assert await stack.selections.release(work.owner, selection.customer_id, agent) is None
    with pytest.raises(SelectionLost):
        await stack.selections.release(
            work.owner, selection.customer_id, agent, token=selection.token
        )


async def test_rule_08_a_released_screen_cannot_write(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=2, agents=2, setup=FAST)
    agent, colleague = (a.id for a in work.agents)
    old = await stack.selections.select(work.owner, agent, work.customer_ids[0])
    await stack.selections.release(work.owner, old.customer_id, work.supervisor.id, supervisor=True)
    new = await stack.selections.select(work.owner, colleague, work.customer_ids[0])
    assert new.token > old.token
    now = datetime.now(UTC)
    before = await history_kinds(engine, old.customer_id)
    for stale in (holding(old), fencing.Holding(old.customer_id, colleague, old.token)):
        with pytest.raises(SelectionLost):
            async with engine.begin() as conn:
                await fencing.record_attempt(conn, stale, AttemptKind.NO_ANSWER, now)
        with pytest.raises(SelectionLost):
            async with engine.begin() as conn:
                await fencing.edit_info_fields(conn, stale, {"city": "Oslo"}, now)
    assert await history_kinds(engine, old.customer_id) == before  # nothing half-applied
    async with engine.connect() as conn:
        customer = await repo.get_customer(conn, work.owner, old.customer_id)
    assert customer is not None and customer.attempts == 0 and "city" not in customer.info
    # The live holder writes.
    async with engine.begin() as conn:
        assert await fencing.record_attempt(conn, holding(new), AttemptKind.NO_ANSWER, now) == 1


async def test_rule_12_released_customer_goes_back_into_play(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=3, agents=2, setup=FAST)
    agent, colleague = (a.id for a in work.agents)
    first = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    assert first is not None
    await stack.selections.release_user(work.owner, agent)  # My Work: back into play
    seen = []
    selection = await stack.dialer.claim(work.owner, colleague, work.assignment_id)
    while selection is not None:
        seen.append(selection.customer_id)
        await sell(engine, selection)
        selection = await stack.dialer.next(work.owner, colleague, work.assignment_id)
    assert sorted(seen) == sorted(work.customer_ids)


async def test_a_busy_hopper_refills_ahead_of_its_claims(stack: Stack) -> None:
    """Past the fixed low water, a hopper refills while it still holds REFILL_AHEAD_S of this
    process's recent claims (at most a batch): claims at 2,000 a second would empty 200
    candidates before a refill lands."""
    hopper, key = stack.dialer.hopper, HopperKey.of(1, None)
    hopper.low_water, hopper.batch, hopper.ahead_s = 10, 1000, 0.5
    assert not hopper.low_on(1, key, 150)  # no rate known yet: the fixed low water alone
    assert hopper.low_on(1, key, 10)
    for _ in range(600):
        hopper.low_on(1, key, 900)
    await asyncio.sleep(RATE_WINDOW_S)
    # About 600 claims a second: half a second of them is about 300 candidates.
    assert hopper.low_on(1, key, 150)
    assert not hopper.low_on(1, key, 400)
    hopper.ahead_s = 100.0  # never more than a batch ahead
    assert hopper.low_on(1, key, 1000) and not hopper.low_on(1, key, 1001)
    assert not hopper.low_on(1, HopperKey.of(2, None), 150)  # each hopper its own rate


async def test_stale_hopper_candidates_are_skipped(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """A customer worked after the hopper was filled (sold by hand, moved, attempted) is not
    handed out: the database record of the claim checks the row again."""
    work = await new_list(n=6, agents=1, setup=AssignmentSetup(max_attempts=1))
    agent = work.agents[0].id
    async with engine.connect() as conn:
        crm = await repo.get_crm(conn, work.crm_id)
    result = await stack.dialer.hopper.refill(
        work.owner, work.assignment, crm, HopperKey.of(work.assignment_id)
    )
    assert result.refilled is not None and result.refilled.length == 6
    async with engine.begin() as conn:  # behind the hopper's back
        await conn.execute(
            update(t.customers).where(c.id.in_(work.customer_ids[:3])).values(status="sale")
        )
        await conn.execute(
            update(t.customers).where(c.id == work.customer_ids[3]).values(attempts=1)
        )
    handed = []
    selection = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    while selection is not None:
        handed.append(selection.customer_id)
        await sell(engine, selection)
        selection = await stack.dialer.next(work.owner, agent, work.assignment_id)
    assert sorted(handed) == sorted(work.customer_ids[4:])
    for cid in work.customer_ids[:4]:
        assert HistoryKind.SELECTED.value not in [k for k, _ in await history_kinds(engine, cid)]


async def test_rule_11_future_shared_follow_up_is_held_back_then_comes_first(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    work = await new_list(n=4, agents=1, setup=FAST)
    later, due = work.customer_ids[1], work.customer_ids[3]
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            update(t.customers)
            .where(c.id == later)
            .values(shared_follow_up_at=now + timedelta(days=1))
        )
        await conn.execute(
            update(t.customers)
            .where(c.id == due)
            .values(shared_follow_up_at=now - timedelta(minutes=5))
        )
    agent = work.agents[0].id
    handed = []
    selection = await stack.dialer.claim(work.owner, agent, work.assignment_id)
    while selection is not None:
        handed.append(selection.customer_id)
        await sell(engine, selection)
        selection = await stack.dialer.next(work.owner, agent, work.assignment_id)
    assert handed[0] == due
    assert later not in handed and len(handed) == 3


async def test_rule_12_hundreds_of_agents_never_share_a_customer(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """200 agents work 1,500 customers to the end from a small hopper that refills all the
    time: each customer is handed out exactly once, and nobody is left behind."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    work = await new_list(n=1500, agents=200, setup=FAST)
    # Small batches: many refills racing each other and the claims.
    stack.dialer.hopper.batch = 50
    stack.dialer.hopper.low_water = 20
    handed: list[tuple[int, int]] = []

    async def agent(user_id: int) -> None:
        selection = await stack.dialer.claim(work.owner, user_id, work.assignment_id)
        for _ in range(200):
            if selection is None:
                return
            handed.append((selection.customer_id, user_id))
            if rng.random() < 0.2:
                await asyncio.sleep(0)
            await sell(engine, selection)
            selection = await stack.dialer.next(work.owner, user_id, work.assignment_id)

    await asyncio.wait_for(asyncio.gather(*(agent(a.id) for a in work.agents)), timeout=180)
    counts = Counter(cid for cid, _ in handed)
    assert [cid for cid, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(work.customer_ids)
    assert await db_holders(engine, work) == {}
    assert await stack.store.snapshot(work.owner) == []


async def test_selections_are_rebuilt_from_the_database_after_redis_loses_them(
    engine: AsyncEngine, private_stack: Stack, new_list: Any
) -> None:
    stack = private_stack
    work = await new_list(n=6, agents=3, setup=FAST)
    a, b, manual = (x.id for x in work.agents)
    held_a = await stack.dialer.claim(work.owner, a, work.assignment_id)
    held_m = await stack.selections.select(work.owner, manual, work.customer_ids[-1])
    assert held_a is not None
    await stack.redis.flushall()

    # Rule 4 holds across the loss: b is never handed a customer somebody still holds.
    held_b = await stack.dialer.claim(work.owner, b, work.assignment_id)
    assert held_b is not None
    assert held_b.customer_id not in (held_a.customer_id, held_m.customer_id)
    assert held_b.token > max(held_a.token, held_m.token) + FENCE_GAP - 1  # tokens keep growing
    with pytest.raises(AlreadySelected):
        await stack.selections.select(work.owner, b, held_m.customer_id)
    # Rule 9: the holders are back in their selections, with their tokens, and can write.
    current = await stack.selections.current(work.owner, a)
    assert current is not None and current.customer_id == held_a.customer_id
    assert current.token == held_a.token and current.mode is WorkMode.LIST
    async with engine.begin() as conn:
        await fencing.record_attempt(
            conn, holding(held_m), AttemptKind.NO_ANSWER, datetime.now(UTC)
        )
    snapshot = {s.customer_id: s.user_id for s in await stack.store.snapshot(work.owner)}
    assert snapshot == {held_a.customer_id: a, held_m.customer_id: manual, held_b.customer_id: b}
    assert {cid: u for cid, (u, _t) in (await db_holders(engine, work)).items()} == snapshot


async def test_release_and_claim_during_a_redis_restart_lose_nothing(
    engine: AsyncEngine, private_redis_url: str, new_list: Any, tmp_path: Any
) -> None:
    """A Redis that restarts empty (no persistence) in the middle of work: every selection is
    rebuilt from the database before the next claim, and the list is still worked to the end."""
    from list_work import make_stack

    from realtime.embedded import EmbeddedRedis, free_port

    port = free_port()
    work = await new_list(n=40, agents=4, setup=FAST)
    handed: Counter[int] = Counter()
    with EmbeddedRedis(tmp_path / "one", port=port) as server:
        stack = make_stack(engine, server.url)
        for agent in work.agents:
            selection = await stack.dialer.claim(work.owner, agent.id, work.assignment_id)
            assert selection is not None
            handed[selection.customer_id] += 1
        await stack.aclose()
    with EmbeddedRedis(tmp_path / "two", port=port) as server:  # same address, empty
        stack = make_stack(engine, server.url)
        try:
            for agent in work.agents:  # each resumes its own, then works on
                current = await stack.selections.current(work.owner, agent.id)
                assert current is not None
                selection: Selection | None = current
                while selection is not None:
                    await sell(engine, selection)
                    selection = await stack.dialer.next(work.owner, agent.id, work.assignment_id)
                    if selection is not None:
                        handed[selection.customer_id] += 1
        finally:
            await stack.aclose()
    assert max(handed.values()) == 1
    assert sorted(handed) == sorted(work.customer_ids)
