"""A day's work, and the next days: 20 agents work one list of 2,000 customers to the end.

Random attempts and outcomes on a virtual clock (the work loop, the hopper and the claims all
read it): every customer is worked, none by two agents at once, every follow-up shows up where
and when it should (shared ones first in the list once due, personal ones in their owner's My
Work), and every customer's history is complete. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from list_work import ListWork, make_stack
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_work_loop import FLOW

from dialer.work_loop import WorkLoop
from domain.db import repositories as repo
from domain.db import tables as t
from domain.model import AssignmentSetup, AttemptKind, HistoryKind, NextAction

CUSTOMERS = 2000
AGENTS = 20
MAX_ATTEMPTS = 3
SETUP = AssignmentSetup(max_attempts=MAX_ATTEMPTS, retry_delay=timedelta(hours=1))
DAYS = 30
FINAL = {"sale", "not_interested"}


class VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Ledger:
    """What the agents did, to hold the database's record against."""

    def __init__(self) -> None:
        self.attempts: Counter[int] = Counter()
        self.outcomes: Counter[int] = Counter()
        self.follow_ups: Counter[int] = Counter()
        self.shared_due: dict[int, datetime] = {}
        self.personal_due: dict[int, tuple[int, datetime]] = {}
        self.holding: dict[int, int] = {}  # customer -> agent, while held
        self.double: list[tuple[int, int, int]] = []

    def hold(self, customer: int, agent: int) -> None:
        if customer in self.holding and self.holding[customer] != agent:
            self.double.append((customer, self.holding[customer], agent))
        self.holding[customer] = agent

    def let_go(self, customer: int) -> None:
        self.holding.pop(customer, None)


async def act(
    loop: WorkLoop, agent: Any, screen: dict[str, Any], ledger: Ledger, rng: random.Random
) -> dict[str, Any] | None:
    """One random, valid action on the screen; the next screen (list work) or None."""
    now = loop.clock()
    customer, token = int(screen["customer"]["id"]), int(screen["selection_token"])
    allowed = [o["id"] for o in screen["allowed_outcomes"]]
    roll = rng.random()
    next_action = NextAction.NEXT_FROM_LIST if screen["mode"] == "list" else NextAction.MY_WORK
    ledger.let_go(customer)
    if (roll < 0.35 or not allowed) and screen["status"] == "available":
        step = await loop.attempt(
            agent, customer, token, AttemptKind.NO_ANSWER, next_action=next_action
        )
        ledger.attempts[customer] += 1
        ledger.shared_due.pop(customer, None)
        ledger.personal_due.pop(customer, None)
    elif roll < 0.45 or not allowed:
        at = now + timedelta(minutes=rng.randrange(30, 600))
        step = await loop.attempt(
            agent, customer, token, AttemptKind.CALL_BACK_LATER, at=at, next_action=next_action
        )
        ledger.attempts[customer] += 1
        ledger.follow_ups[customer] += 1
        ledger.shared_due.pop(customer, None)
        ledger.personal_due.pop(customer, None)
        if screen["status"] == "available":
            ledger.shared_due[customer] = at
        else:
            ledger.personal_due[customer] = (agent.id, at)
    else:
        outcome = rng.choice(allowed)
        details: dict[str, Any] = {"amount": rng.randrange(100, 5000)} if outcome == "sale" else {}
        at = None
        if outcome in ("interested", "call_team"):
            at = now + timedelta(minutes=rng.randrange(30, 900))
        step = await loop.save(
            agent, customer, token, outcome, details, follow_up_at=at, next_action=next_action
        )
        ledger.outcomes[customer] += 1
        ledger.shared_due.pop(customer, None)
        ledger.personal_due.pop(customer, None)
        if outcome == "interested":
            ledger.follow_ups[customer] += 1
            assert at is not None
            ledger.personal_due[customer] = (agent.id, at)
        elif outcome == "call_team":
            ledger.follow_ups[customer] += 1
            assert at is not None
            ledger.shared_due[customer] = at
    if step.screen is not None:
        ledger.hold(int(step.screen["customer"]["id"]), agent.id)
    return step.screen


async def work_the_list(loop: WorkLoop, work: ListWork, ledger: Ledger, seed: int) -> list[int]:
    """Every agent works the list until it is empty; the customers handed out, by token."""
    handed: list[tuple[int, int]] = []

    async def agent_loop(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        agent = work.agents[index]
        step = await loop.start(agent, work.assignment_id)
        screen = step.screen
        for _ in range(CUSTOMERS * 2):
            if screen is None:
                return
            handed.append((int(screen["selection_token"]), int(screen["customer"]["id"])))
            ledger.hold(int(screen["customer"]["id"]), agent.id)
            screen = await act(loop, agent, screen, ledger, rng)
        raise AssertionError("the list never ran dry")

    await asyncio.wait_for(asyncio.gather(*(agent_loop(i) for i in range(AGENTS))), timeout=600)
    return [customer for _token, customer in sorted(handed)]


async def work_my_follow_ups(loop: WorkLoop, work: ListWork, ledger: Ledger, seed: int) -> None:
    """Each agent's My Work shows exactly its due personal follow-ups (and the shared ones the
    ledger knows); then every agent works its own off."""
    now = loop.clock()
    views = await asyncio.gather(*(loop.my_work(agent) for agent in work.agents))
    for agent, view in zip(work.agents, views, strict=True):
        shown = {int(f["customer_id"]) for k in ("overdue_mine", "today_mine") for f in view[k]}
        mine = {c for c, (owner, _at) in ledger.personal_due.items() if owner == agent.id}
        due = {c for c in mine if ledger.personal_due[c][1] <= now}
        overdue = {int(f["customer_id"]) for f in view["overdue_mine"]}
        assert due == overdue and shown <= mine, f"agent {agent.id}"
        for f in (*view["overdue_shared"], *view["today_shared"]):
            assert ledger.shared_due.get(int(f["customer_id"])) is not None
            assert f["owner_user_id"] is None

    async def agent_loop(index: int, overdue: list[dict[str, Any]]) -> None:
        rng = random.Random(seed * 7 + index)
        agent = work.agents[index]
        for customer in sorted({int(f["customer_id"]) for f in overdue}):
            screen = (await loop.select(agent, customer)).screen
            assert screen is not None and screen["mode"] == "manual"
            ledger.hold(customer, agent.id)
            await act(loop, agent, screen, ledger, rng)

    await asyncio.wait_for(
        asyncio.gather(*(agent_loop(i, v["overdue_mine"]) for i, v in enumerate(views))),
        timeout=600,
    )


async def test_twenty_agents_work_a_list_of_two_thousand_to_the_end(
    engine: AsyncEngine, redis_url: str, new_list: Any
) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    clock = VirtualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))  # a Monday, 09:00 in Oslo
    work = await new_list(n=CUSTOMERS, agents=AGENTS, setup=SETUP, flow=FLOW)
    stack = make_stack(engine, redis_url, clock=clock)
    loop = WorkLoop(engine, stack.selections, stack.dialer, clock=clock)
    ledger = Ledger()
    try:
        for day in range(DAYS):
            due_shared = {c for c, at in ledger.shared_due.items() if at <= clock.now}
            due_personal = [c for c, (_u, at) in ledger.personal_due.items() if at <= clock.now]
            handed = await work_the_list(loop, work, ledger, seed + day)
            # Rule 11: the due shared follow-ups were handed out first.
            assert set(handed[: len(due_shared)]) == due_shared, f"day {day}"
            await work_my_follow_ups(loop, work, ledger, seed + day)
            assert ledger.double == [], "a customer was held by two agents at once"
            if not handed and not due_personal:
                break  # nothing left to work: the list is worked to the end
            clock.now += timedelta(days=1)
        else:
            raise AssertionError(f"still work left after {DAYS} days")
    finally:
        await stack.aclose()

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    t.customers.c.id,
                    t.customers.c.status,
                    t.customers.c.attempts,
                    t.customers.c.holder_user_id,
                ).where(t.customers.c.data_owner_id == work.owner)
            )
        ).all()
        open_follow_ups = Counter(
            r.customer_id
            for r in await conn.execute(
                select(t.follow_ups.c.customer_id).where(
                    t.follow_ups.c.customer_id.in_(work.customer_ids),
                    t.follow_ups.c.ended_at.is_(None),
                )
            )
        )
        histories = defaultdict(list)
        for customer_id in work.customer_ids:
            histories[customer_id] = await repo.list_history(conn, customer_id)

    # Worked to the end: every customer reached an outcome or used its attempts.
    for row in rows:
        assert row.holder_user_id is None
        assert (
            row.status in FINAL
            or (row.status == "available" and row.attempts >= MAX_ATTEMPTS)
            or open_follow_ups[row.id]
        ), row
        assert ledger.attempts[row.id] + ledger.outcomes[row.id] > 0, (
            f"customer {row.id} never worked"
        )
    # The history of every customer is complete and ordered: selections alternate with
    # releases (never two at once), and every attempt, outcome and follow-up is there.
    for customer_id, events in histories.items():
        kinds = Counter(e.kind for e in events)
        assert kinds[HistoryKind.ATTEMPT] == ledger.attempts[customer_id]
        assert kinds[HistoryKind.OUTCOME] == ledger.outcomes[customer_id]
        assert kinds[HistoryKind.FOLLOW_UP_CREATED] == ledger.follow_ups[customer_id]
        held_by = None
        for event in events:
            if event.kind is HistoryKind.SELECTED:
                assert held_by is None, f"customer {customer_id} selected twice at once"
                held_by = event.user_id
            elif event.kind is HistoryKind.RELEASED:
                assert held_by is not None
                held_by = None
            elif event.kind in (HistoryKind.ATTEMPT, HistoryKind.OUTCOME):
                assert event.user_id == held_by, (
                    f"customer {customer_id}: write outside a selection"
                )
                assert event.at.tzinfo is not None
        assert held_by is None
