"""Agents moving on at the same moment share one transaction and one Redis step (a group
commit, presence.service.SelectionService.move_on), and every rule holds for each of them as if
it had moved on alone (rules 4, 7, 8, 12, 24)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from list_work import Stack, database_holders
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import tables as t
from domain.db.outcomes import Outcomes
from domain.errors import SelectionLost
from domain.model import AssignmentSetup, HistoryKind
from presence.selections import Selection

FAST = AssignmentSetup(max_attempts=None, retry_delay=timedelta(0))
h = t.history.c


async def histories(engine: AsyncEngine, owner_customers: list[int]) -> dict[int, list[Any]]:
    """customer id -> its history rows (kind, user, data), in order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(h.customer_id, h.kind, h.user_id, h.data)
            .where(h.customer_id.in_(owner_customers))
            .order_by(h.id)
        )
        by_customer: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_customer[row.customer_id].append((row.kind, row.user_id, dict(row.data or {})))
    return by_customer


async def test_rule_12_agents_moving_on_together_never_share_a_customer(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """60 agents sell and move on in parallel while a supervisor releases some of them: no
    customer goes to two agents, each ended selection has its history rows in order, and the
    database holds exactly what Redis holds."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    work = await new_list(n=900, agents=60, setup=FAST)
    outcomes = Outcomes(engine)
    handed: list[tuple[int, int, int]] = []
    revoked: set[tuple[int, int]] = set()
    lost: list[tuple[int, int]] = []
    live: dict[int, Selection] = {}

    async def agent(user_id: int) -> None:
        selection = await stack.dialer.claim(work.owner, user_id, work.assignment_id)
        for _ in range(40):
            if selection is None:
                return
            live[user_id] = selection
            handed.append((selection.customer_id, user_id, selection.token))
            await asyncio.sleep(rng.random() * 0.002)
            try:
                holding = fencing.Holding(selection.customer_id, user_id, selection.token)
                await outcomes.save(fencing.OutcomeAsk(holding, "sale", {}, datetime.now(UTC)))
                _released, selection = await stack.dialer.move_on(
                    work.owner, user_id, work.assignment_id, expected=selection
                )
            except SelectionLost:
                lost.append((selection.customer_id, selection.token))
                selection = await stack.dialer.claim(work.owner, user_id, work.assignment_id)

    async def supervisor() -> None:
        for _ in range(60):
            await asyncio.sleep(rng.random() * 0.01)
            if not live:
                continue
            target = live[rng.choice(list(live))]
            try:
                released = await stack.selections.release(
                    work.owner, target.customer_id, work.supervisor.id, supervisor=True
                )
            except SelectionLost:
                continue  # it ended on its own while the supervisor looked
            if released is not None:
                revoked.add((released.customer_id, released.token))

    await asyncio.wait_for(
        asyncio.gather(*(agent(a.id) for a in work.agents), supervisor()), timeout=180
    )
    for a in work.agents:
        await stack.selections.release_user(work.owner, a.id)

    counts = Counter(cid for cid, _u, _t in handed)
    # Every outcome here sells: only a customer the supervisor released before its sale comes
    # back into play (rule 12) and may be handed out again.
    again = {cid for cid, n in counts.items() if n > 1}
    assert again <= {cid for cid, _token in revoked}
    assert set(lost) <= revoked  # refused only where someone else ended the selection
    assert await stack.store.snapshot(work.owner) == []
    assert await database_holders(engine, work.owner) == {}

    # Rule 24: each selection handed out was recorded, then its release (by whom), in order;
    # a customer's selections never overlap.
    by_customer = await histories(engine, list(counts))
    for customer, user, token in handed:
        events = [(HistoryKind(k), u, d) for k, u, d in by_customer[customer]]
        marks = [k for k, _u, _d in events if k is not HistoryKind.OUTCOME]
        assert marks == [HistoryKind.SELECTED, HistoryKind.RELEASED] * counts[customer], events
        selected = [e for e in events if e[0] is HistoryKind.SELECTED and e[2]["token"] == token]
        released = [e for e in events if e[0] is HistoryKind.RELEASED and e[2]["token"] == token]
        assert len(selected) == len(released) == 1, events
        assert selected[0][1] == user and released[0][2]["holder_user_id"] == user
        expected_by = work.supervisor.id if (customer, token) in revoked else user
        assert released[0][2]["by_user_id"] == expected_by
    if engine.dialect.name == "postgresql":
        moves = stack.selections.move_ons
        assert moves.batches < moves.requests  # they did move on together


async def test_rule_08_a_move_on_whose_selection_ended_is_refused_alone(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """Ten agents move on in one batch; one of them was released by the supervisor just
    before: that one is refused (selection_lost) and changes nothing, the nine go on."""
    work = await new_list(n=40, agents=10, setup=FAST)
    held = [await stack.dialer.claim(work.owner, a.id, work.assignment_id) for a in work.agents]
    assert all(s is not None for s in held)
    victim = held[4]
    assert victim is not None
    await stack.selections.release(
        work.owner, victim.customer_id, work.supervisor.id, supervisor=True
    )
    before = (await histories(engine, [victim.customer_id]))[victim.customer_id]

    answers = await asyncio.gather(
        *(
            stack.dialer.move_on(work.owner, a.id, work.assignment_id, expected=s)
            for a, s in zip(work.agents, held, strict=True)
        ),
        return_exceptions=True,
    )
    assert isinstance(answers[4], SelectionLost)
    after = (await histories(engine, [victim.customer_id]))[victim.customer_id]
    assert after == before
    assert await stack.selections.current(work.owner, work.agents[4].id) is None
    nexts = []
    for i, answer in enumerate(answers):
        if i == 4:
            continue
        assert not isinstance(answer, BaseException), answer
        released, selection = answer
        assert released is not None and released.customer_id == held[i].customer_id
        assert selection is not None
        nexts.append(selection.customer_id)
        current = await stack.selections.current(work.owner, work.agents[i].id)
        assert current == selection
    assert len(set(nexts)) == 9
    assert not set(nexts) & {s.customer_id for s in held if s is not None}


async def test_rule_10_agents_starting_at_once_are_recorded_together(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """A shift starts: 60 agents claim their first customer at the same moment. Each gets a
    customer of its own, recorded as its holder with its history row, and (PostgreSQL) the
    records went in shared round trips, not one connection each."""
    work = await new_list(n=120, agents=60, setup=FAST)
    held = await asyncio.gather(
        *(stack.dialer.claim(work.owner, a.id, work.assignment_id) for a in work.agents)
    )
    assert all(s is not None for s in held)
    assert len({s.customer_id for s in held if s is not None}) == 60
    holders = await database_holders(engine, work.owner)
    assert holders == {s.customer_id: s.user_id for s in held if s is not None}
    by_customer = await histories(engine, list(holders))
    for s in held:
        assert s is not None
        assert [(HistoryKind(k), u) for k, u, _d in by_customer[s.customer_id]] == [
            (HistoryKind.SELECTED, s.user_id)
        ]
    if engine.dialect.name == "postgresql":
        records = stack.selections.records
        assert records.batches < records.requests
