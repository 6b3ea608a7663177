"""Preview, progressive and predictive dialing on the virtual clock, with the run's real Redis
and database: attempts as fenced history rows, abandons recorded, rule 17, DNC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from list_work import ListWork, Stack
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.clock import VirtualClock
from dialer.dial_modes import Dialer, DialerEvent
from dialer.lines import DatabaseCustomers
from dialer.pacing import PacingSettings
from dialer.simulator import CallProfile, LogNormal, SimulatedTelephony
from dialer.timers import AgentState
from dialer.work_loop import WorkList, WorkLoop
from domain.db import dnc
from domain.db import repositories as repo
from domain.db import tables as t
from domain.model import AssignmentSetup, DialMode, HistoryKind, NextAction, WorkMode

BUSY = CallProfile(answer_rate=0, busy_rate=1, failed_rate=0, busy_seconds=LogNormal(3, 0))
NO_ANSWER = CallProfile(answer_rate=0, busy_rate=0, failed_rate=0, no_answer_timeout=20)
ANSWERS = CallProfile(
    answer_rate=1,
    busy_rate=0,
    failed_rate=0,
    ring_seconds=LogNormal(5, 0),
    talk_seconds=LogNormal(60, 0),
)


@dataclass
class Rig:
    work: ListWork
    clock: VirtualClock
    telephony: SimulatedTelephony
    dialer: Dialer
    loop: WorkLoop
    events: list[DialerEvent] = field(default_factory=list)

    @property
    def list(self) -> WorkList:
        return WorkList(self.work.assignment_id)

    def pushed(self, user_id: int) -> list[DialerEvent]:
        return [e for e in self.events if e.kind == "pushed" and e.user_id == user_id]


@pytest.fixture
async def rig(engine: AsyncEngine, stack: Stack, new_list: Any) -> AsyncIterator[Any]:
    async def build(
        mode: DialMode,
        profile: CallProfile,
        *,
        n: int = 5,
        agents: int = 1,
        customers: list[dict[str, Any]] | None = None,
        pacing: PacingSettings | None = None,
    ) -> Rig:
        rows = customers or [{"phones": [f"+47 900 00 {i:03d}"]} for i in range(n)]
        setup = AssignmentSetup(dial_mode=mode, wrap_up_seconds=30, max_attempts=6)
        work = await new_list(customers=rows, agents=agents, setup=setup)
        clock = VirtualClock(start=time.time())
        telephony = SimulatedTelephony(clock, profile, seed=1)
        customers_port = DatabaseCustomers(engine, stack.dialer, lines_per_owner=10)
        dialer = Dialer(customers_port, telephony, clock, caller_id="+4722000000", pacing=pacing)
        loop = WorkLoop(engine, stack.selections, stack.dialer)
        built = Rig(work, clock, telephony, dialer, loop)

        async def record(event: DialerEvent) -> None:
            built.events.append(event)

        dialer.listen(record)
        return built

    yield build


async def history(engine: AsyncEngine, customer_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return await repo.list_history(conn, customer_id)


async def call_rows(engine: AsyncEngine, owner: int) -> list[Any]:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(t.calls)
                .where(t.calls.c.data_owner_id == owner)
                .order_by(t.calls.c.dialed_at)
            )
        ).all()


async def test_preview_the_agent_calls_and_busy_registers_an_attempt(
    rig: Any, engine: AsyncEngine
) -> None:
    r: Rig = await rig(DialMode.PREVIEW, BUSY)
    agent = r.work.agents[0]
    snapshot = await r.dialer.agent_ready(agent, r.list)
    assert snapshot.state is AgentState.PREVIEWING
    first = r.pushed(agent.id)[0].customer_id
    await r.clock.advance(60)
    assert r.telephony.stats["originated"] == 0  # preview: nothing is dialed before the agent
    await r.dialer.call(agent)
    assert r.dialer.snapshot(r.work.owner, agent.id).state is AgentState.DIALING
    await r.clock.advance(10)
    attempts = [h for h in await history(engine, first) if h.kind is HistoryKind.ATTEMPT]
    assert [(h.user_id, h.data["kind"]) for h in attempts] == [(agent.id, "no_answer")]
    # Rule 13: the customer stays available; the agent is shown the next one.
    second = r.pushed(agent.id)[-1].customer_id
    assert second != first
    assert r.dialer.snapshot(r.work.owner, agent.id).state is AgentState.PREVIEWING
    assert [row.result for row in await call_rows(engine, r.work.owner)] == ["busy"]


async def test_progressive_dials_as_the_customer_is_pushed_and_no_answer_moves_on(
    rig: Any, engine: AsyncEngine
) -> None:
    r: Rig = await rig(DialMode.PROGRESSIVE, NO_ANSWER, n=3)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    assert r.telephony.stats["originated"] == 1  # at once, with the push
    await r.clock.advance(20 * 3 + 5)
    assert r.telephony.stats["originated"] == 3
    assert r.telephony.overlaps == 0
    for customer_id in r.work.customer_ids:
        attempts = [h for h in await history(engine, customer_id) if h.kind is HistoryKind.ATTEMPT]
        assert len(attempts) == 1 and attempts[0].user_id == agent.id
        async with engine.connect() as conn:
            customer = await repo.get_customer(conn, r.work.owner, customer_id)
        assert customer is not None and customer.attempts == 1 and customer.status == "available"
    assert any(e.kind == "list_empty" for e in r.events)


async def test_predictive_connects_an_answered_call_to_a_free_agent(
    rig: Any, engine: AsyncEngine
) -> None:
    r: Rig = await rig(DialMode.PREDICTIVE, ANSWERS, n=5)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(6)
    pushed = r.pushed(agent.id)
    assert len(pushed) == 1 and pushed[0].data["answered"]
    customer_id, token = pushed[0].customer_id, pushed[0].token
    # The agent holds the customer itself: its screen writes pass the fence.
    current = await r.loop.selections.current(r.work.owner, agent.id)
    assert current is not None and (current.customer_id, current.token) == (customer_id, token)
    # Handed over in one step: the line's release and the agent's selection, both recorded,
    # with the list the line had; the database names the agent as the holder.
    assert current.assignment_id == r.list.assignment_id and current.mode is WorkMode.LIST
    async with engine.connect() as conn:
        history = await repo.list_history(conn, customer_id)
        holder = (
            await conn.execute(
                select(t.customers.c.holder_user_id, t.customers.c.selection_token).where(
                    t.customers.c.id == customer_id
                )
            )
        ).one()
    steps = [(e.kind.value, e.data.get("holder_user_id", e.user_id)) for e in history]
    line_id = steps[0][1]
    assert steps[:3] == [("selected", line_id), ("released", line_id), ("selected", agent.id)]
    assert tuple(holder) == (agent.id, token)
    snap = r.dialer.snapshot(r.work.owner, agent.id)
    assert snap.state is AgentState.TALKING and snap.customer_id == customer_id
    await r.clock.advance(60)  # the customer hangs up: wrap-up with the setup's 30 s
    snap = r.dialer.snapshot(r.work.owner, agent.id)
    assert snap.state is AgentState.WRAP_UP and snap.deadline == snap.since + 30
    assert r.telephony.overlaps == 0


async def test_abandon_when_no_agent_is_free_within_2_seconds(
    rig: Any, engine: AsyncEngine
) -> None:
    # A pacer told to take risks dials several calls for one agent; every one is answered.
    bold = PacingSettings(risk_start=30, risk_ceiling=40, prior_answer_rate=0.1)
    r: Rig = await rig(DialMode.PREDICTIVE, ANSWERS, n=6, pacing=bold)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(5.5)
    dialed = r.telephony.stats["originated"]
    assert dialed >= 2
    await r.clock.advance(2.0)
    rows = await call_rows(engine, r.work.owner)
    abandoned = [row for row in rows if row.result == "abandoned"]
    assert len(abandoned) == dialed - 1
    assert all(row.answered_at is not None and row.agent_user_id is None for row in abandoned)
    pacer = r.dialer.pacer(r.work.owner, r.list)
    assert pacer is not None and pacer.totals["abandoned"] == len(abandoned)
    for row in abandoned:  # the line's attempt: the customer stays available, comes back later
        attempts = [
            h for h in await history(engine, row.customer_id) if h.kind is HistoryKind.ATTEMPT
        ]
        assert len(attempts) == 1 and attempts[0].user_id != agent.id
    assert [e.customer_id for e in r.events if e.kind == "abandoned"] == [
        row.customer_id for row in abandoned
    ]


async def test_predictive_busy_registers_the_lines_attempt(rig: Any, engine: AsyncEngine) -> None:
    r: Rig = await rig(DialMode.PREDICTIVE, BUSY, n=4)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(30)
    rows = await call_rows(engine, r.work.owner)
    assert rows and {row.result for row in rows} == {"busy"}
    for row in rows:
        kinds = [h.kind for h in await history(engine, row.customer_id)]
        assert HistoryKind.SELECTED in kinds and HistoryKind.ATTEMPT in kinds
        assert kinds[-1] is HistoryKind.RELEASED  # the line let go after its attempt
    assert r.telephony.overlaps == 0


async def test_rule_17_my_work_ends_predictive_dialing(rig: Any, engine: AsyncEngine) -> None:
    r: Rig = await rig(DialMode.PREDICTIVE, ANSWERS, n=6)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(6 + 60 + 1)  # connected, talked, in wrap-up
    pushed = r.pushed(agent.id)[0]
    assert r.dialer.snapshot(r.work.owner, agent.id).state is AgentState.WRAP_UP
    step = await r.loop.save(
        agent, pushed.customer_id, pushed.token, "sale", {}, next_action=NextAction.MY_WORK
    )
    assert step.screen is None
    placed = r.telephony.stats["originated"]
    await r.clock.advance(600)
    snap = r.dialer.snapshot(r.work.owner, agent.id)
    assert (snap.state, snap.deadline) == (AgentState.OFF, None)  # timers stopped
    assert r.telephony.stats["originated"] == placed  # dialing ended
    assert len(r.pushed(agent.id)) == 1
    assert r.dialer.live_calls() == 0


async def test_dialing_stops_when_no_agent_is_in_list_work(rig: Any, engine: AsyncEngine) -> None:
    r: Rig = await rig(DialMode.PREDICTIVE, NO_ANSWER, n=8, agents=2)
    for agent in r.work.agents:
        await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(5)
    assert r.dialer.live_calls() > 0
    for agent in r.work.agents:
        await r.dialer.agent_stopped(agent)
    await r.clock.advance(2)
    placed = r.telephony.stats["originated"]
    assert r.dialer.live_calls() == 0 and r.telephony.active() == 0
    await r.clock.advance(600)
    assert r.telephony.stats["originated"] == placed
    rows = await call_rows(engine, r.work.owner)
    assert {row.result for row in rows} == {"cancelled"}
    async with engine.connect() as conn:
        for customer_id in r.work.customer_ids:  # nobody was reached: no attempt counted
            customer = await repo.get_customer(conn, r.work.owner, customer_id)
            assert customer is not None and customer.attempts == 0


async def test_dnc_numbers_are_never_dialed(rig: Any, engine: AsyncEngine) -> None:
    rows = [
        {"phones": ["+47 900 00 001"]},
        {"phones": ["0047 900-00-002"]},
        {"phones": ["+4790000003", "+4790000013"]},
        {"phones": ["+4790000004"]},
    ]
    r: Rig = await rig(DialMode.PROGRESSIVE, BUSY, customers=rows)
    sup = r.work.supervisor
    async with engine.begin() as conn:
        for number in ("+4790000002", "0047 900 00 003"):
            await dnc.add(conn, r.work.owner, number, datetime.now(UTC), by_user_id=sup.id)
    agent = r.work.agents[0]
    await r.dialer.agent_ready(agent, r.list)
    await r.clock.advance(120)
    dialed = {number for _call, number in r.telephony.originated}
    assert dialed == {"+4790000001", "+4790000013", "+4790000004"}
    async with engine.connect() as conn:
        skipped = await repo.get_customer(conn, r.work.owner, r.work.customer_ids[1])
    assert skipped is not None and skipped.attempts == 0
