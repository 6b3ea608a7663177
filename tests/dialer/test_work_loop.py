"""The agent's work loop as a service (rules 9, 13-18): what each step writes and where it goes
next, on the run's real Redis and database. The same steps over WebSocket are in
tests/realtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from list_work import ListWork, Stack, make_stack
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.work_loop import WorkLoop
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.engine import make_engine
from domain.errors import Invalid, InvalidTransition, SelectionLost, UserHasSelection
from domain.flows import AVAILABLE, CustomerFlow, DetailField, Outcome, Status
from domain.model import AssignmentSetup, AttemptKind, FieldType, FollowUpKind, NextAction
from presence.keys import HopperKey
from presence.service import SelectionService

OSLO = ZoneInfo("Europe/Oslo")  # the data owners' time zone here (repo.create_data_owner)
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
            details=(DetailField("amount", "Amount", FieldType.NUMBER, required=True),),
        ),
        Outcome("not_interested", "Not interested", frozenset({AVAILABLE}), "not_interested"),
        Outcome(
            "call_team",
            "Team calls back",
            frozenset({"interested"}),
            AVAILABLE,
            follow_up=FollowUpKind.SHARED,
        ),
    ),
)
SETUP = AssignmentSetup(max_attempts=3, retry_delay=timedelta(0))


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def loop(engine: AsyncEngine, stack: Stack) -> AsyncIterator[tuple[WorkLoop, Clock]]:
    clock = Clock()
    yield WorkLoop(engine, stack.selections, stack.dialer, clock=clock), clock


async def a_list(new_list: Any, n: int = 5, agents: int = 2, **options: Any) -> ListWork:
    return await new_list(n=n, agents=agents, flow=FLOW, setup=options.pop("setup", SETUP))


def token(screen: dict[str, Any]) -> int:
    return int(screen["selection_token"])


def cid(screen: dict[str, Any]) -> int:
    return int(screen["customer"]["id"])


async def test_work_start_hands_out_a_screen_with_what_the_agent_needs(
    loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list)
    agent = work.agents[0]
    step = await work_loop.start(agent, work.assignment_id)
    screen = step.screen
    assert screen is not None and len(step.selected) == 1
    assert screen["mode"] == "list" and screen["status"] == AVAILABLE
    assert [o["id"] for o in screen["allowed_outcomes"]] == ["interested", "sale", "not_interested"]
    assert screen["next_options"] == ["next_from_list", "my_work", "continue"]
    assert screen["history"][0]["kind"] == "selected"
    assert screen["side_panel"] == {"upcoming_mine": [], "overdue_mine": [], "overdue_shared": []}
    # Rule 9: starting again resumes the same customer; another list is refused.
    again = await work_loop.start(agent, work.assignment_id)
    assert again.screen is not None and cid(again.screen) == cid(screen) and not again.selected
    other = await a_list(new_list)
    with pytest.raises(Exception) as refused:
        await work_loop.start(agent, other.assignment_id)
    assert getattr(refused.value, "code", "") == "not_found"  # another data owner's list


async def test_rule_13_no_answer_counts_an_attempt_and_the_customer_stays_available(
    engine: AsyncEngine, loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list, n=1)
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    with pytest.raises(Invalid):  # no follow-up time with no_answer
        await work_loop.attempt(
            agent, cid(screen), token(screen), AttemptKind.NO_ANSWER, at=_clock.now
        )
    step = await work_loop.attempt(agent, cid(screen), token(screen), AttemptKind.NO_ANSWER)
    # Retry delay 0: it comes straight back as the next right customer of the list.
    assert step.screen is not None and cid(step.screen) == cid(screen)
    assert step.screen["customer"]["attempts"] == 1 and step.screen["status"] == AVAILABLE
    assert token(step.screen) > token(screen)
    async with engine.connect() as conn:
        assert await repo.open_follow_ups_for_customer(conn, cid(screen)) == []


async def test_rule_13_max_attempts_takes_the_customer_out_of_the_list(
    loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(
        new_list, n=1, setup=AssignmentSetup(max_attempts=2, retry_delay=timedelta(0))
    )
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    for _ in range(2):
        assert screen is not None
        screen = (
            await work_loop.attempt(agent, cid(screen), token(screen), AttemptKind.NO_ANSWER)
        ).screen
    assert screen is None


async def test_rule_11_a_shared_follow_up_falling_due_jumps_a_full_hopper(
    engine: AsyncEngine, redis_url: str, new_list: Any
) -> None:
    clock = Clock()
    # No refills after the first: the hopper keeps every customer queued before the follow-up.
    stack = make_stack(engine, redis_url, clock=clock, low_water=0, ahead_s=0)
    try:
        work_loop = WorkLoop(engine, stack.selections, stack.dialer, clock=clock)
        work = await a_list(new_list, n=30)
        agent, colleague = work.agents
        screen = (await work_loop.start(agent, work.assignment_id)).screen
        assert screen is not None
        first, due = cid(screen), clock.now + timedelta(minutes=20)
        step = await work_loop.attempt(
            agent, first, token(screen), AttemptKind.CALL_BACK_LATER, at=due,
            next_action=NextAction.NEXT_FROM_LIST,
        )  # fmt: skip
        for _ in range(3):  # held back before its time (rule 11)
            assert step.screen is not None and cid(step.screen) != first
            step = await work_loop.attempt(
                agent, cid(step.screen), token(step.screen), AttemptKind.NO_ANSWER,
                next_action=NextAction.NEXT_FROM_LIST,
            )  # fmt: skip
        assert len(await stack.store.hopper_ids(work.owner, HopperKey.of(work.assignment_id))) > 20
        clock.now = due + timedelta(seconds=1)
        # Due now: the next claim hands it out before the 20-odd customers queued ahead of it.
        started = (await work_loop.start(colleague, work.assignment_id)).screen
        assert started is not None and cid(started) == first
    finally:
        await stack.aclose()


async def test_rule_14_call_back_later_is_shared_on_available_and_personal_otherwise(
    engine: AsyncEngine, loop: Any, new_list: Any
) -> None:
    work_loop, clock = loop
    work = await a_list(new_list, n=2)
    agent = work.agents[0]
    later = clock.now + timedelta(hours=3)
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    first = cid(screen)
    step = await work_loop.attempt(
        agent,
        first,
        token(screen),
        AttemptKind.CALL_BACK_LATER,
        at=later,
        next_action=NextAction.CONTINUE,
    )
    assert step.screen is not None
    # Interested (personal follow-up), then call back later: personal, owned by the agent.
    step = await work_loop.save(
        agent,
        first,
        token(step.screen),
        "interested",
        {},
        follow_up_at=later,
        next_action=NextAction.CONTINUE,
    )
    assert step.screen is not None and step.screen["status"] == "interested"
    step = await work_loop.attempt(
        agent,
        first,
        token(step.screen),
        AttemptKind.CALL_BACK_LATER,
        at=later + timedelta(hours=1),
        next_action=NextAction.MY_WORK,
    )
    assert step.screen is None
    async with engine.connect() as conn:
        open_now = await repo.open_follow_ups_for_customer(conn, first)
        history = [
            e.data
            for e in await repo.list_history(conn, first)
            if e.kind.value == "follow_up_created"
        ]
    assert [(f.kind, f.owner_user_id) for f in open_now] == [(FollowUpKind.PERSONAL, agent.id)]
    assert [h["kind"] for h in history] == ["shared", "personal", "personal"]


async def test_rule_15_outcome_makes_the_follow_up_its_flow_asks_for(
    engine: AsyncEngine, loop: Any, new_list: Any
) -> None:
    work_loop, clock = loop
    work = await a_list(new_list, n=1)
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    with pytest.raises(Invalid):  # "interested" needs a follow-up time
        await work_loop.save(agent, cid(screen), token(screen), "interested", {})
    step = await work_loop.save(
        agent,
        cid(screen),
        token(screen),
        "interested",
        {},
        follow_up_at=clock.now + timedelta(days=1),
        next_action=NextAction.CONTINUE,
    )
    assert step.screen is not None
    assert [o["id"] for o in step.screen["allowed_outcomes"]] == ["sale", "call_team"]
    step = await work_loop.save(
        agent,
        cid(screen),
        token(step.screen),
        "call_team",
        {},
        follow_up_at=clock.now + timedelta(days=2),
        next_action=NextAction.MY_WORK,
    )
    async with engine.connect() as conn:
        follow_ups = await repo.open_follow_ups_for_customer(conn, cid(screen))
    # The outcome settled the personal one and made the shared one the flow asks for.
    assert [(f.kind, f.owner_user_id) for f in follow_ups] == [(FollowUpKind.SHARED, None)]


async def test_rule_16_my_work_and_side_panel_show_the_right_follow_ups(
    loop: Any, new_list: Any
) -> None:
    work_loop, clock = loop
    work = await a_list(new_list, n=3)
    agent, colleague = work.agents
    soon = clock.now + timedelta(minutes=30)
    # Keep "today" today, whatever the hour of the run: today is the data owner's day (Oslo).
    if soon.astimezone(OSLO).date() != clock.now.astimezone(OSLO).date():
        clock.now = clock.now.replace(hour=9, minute=0)
        soon = clock.now + timedelta(minutes=30)
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    mine = cid(screen)
    screen = (
        await work_loop.save(agent, mine, token(screen), "interested", {}, follow_up_at=soon)
    ).screen
    assert screen is not None  # the next customer of the list
    shared = cid(screen)
    await work_loop.attempt(
        agent,
        shared,
        token(screen),
        AttemptKind.CALL_BACK_LATER,
        at=soon,
        next_action=NextAction.MY_WORK,
    )
    view = await work_loop.my_work(agent)
    assert [f["customer_id"] for f in view["today_mine"]] == [str(mine)]
    assert [f["customer_id"] for f in view["today_shared"]] == [str(shared)]
    assert view["lists"] and view["lists"][0]["id"] == str(work.assignment_id)
    # The colleague sees the shared one, never the agent's personal one.
    other = await work_loop.my_work(colleague)
    assert other["today_mine"] == [] and [f["customer_id"] for f in other["today_shared"]] == [
        str(shared)
    ]
    # An hour later both are overdue: the side panel of the next screen says so.
    clock.now = soon + timedelta(hours=1)
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    panel = screen["side_panel"]
    assert [f["customer_id"] for f in panel["overdue_mine"]] == [str(mine)]
    assert [f["customer_id"] for f in panel["overdue_shared"]] == [str(shared)]


async def test_rule_17_next_options_by_mode_with_their_defaults(
    engine: AsyncEngine, loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list, n=4)
    agent = work.agents[0]
    # Manual selection: My Work (default) or continue.
    step = await work_loop.select(agent, work.customer_ids[0])
    screen = step.screen
    assert screen is not None and screen["mode"] == "manual"
    assert screen["next_options"] == ["my_work", "continue"]
    with pytest.raises(Invalid):
        await work_loop.attempt(
            agent,
            cid(screen),
            token(screen),
            AttemptKind.NO_ANSWER,
            next_action=NextAction.NEXT_FROM_LIST,
        )
    step = await work_loop.attempt(agent, cid(screen), token(screen), AttemptKind.NO_ANSWER)
    assert step.screen is None and [r.customer_id for r in step.released] == [cid(screen)]
    # List work: next from the list (default), continue (same selection), My Work (released).
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    step = await work_loop.save(
        agent, cid(screen), token(screen), "not_interested", {}, next_action=NextAction.CONTINUE
    )
    assert step.screen is not None and cid(step.screen) == cid(screen)
    assert token(step.screen) == token(screen) and step.screen["status"] == "not_interested"
    assert step.screen["allowed_outcomes"] == []
    step = await work_loop.attempt(agent, cid(screen), token(screen), AttemptKind.NO_ANSWER)
    assert step.screen is not None and cid(step.screen) != cid(screen)
    assert len(step.released) == 1 and len(step.selected) == 1
    step = await work_loop.attempt(
        agent,
        cid(step.screen),
        token(step.screen),
        AttemptKind.NO_ANSWER,
        next_action=NextAction.MY_WORK,
    )
    assert step.screen is None
    assert await work_loop.selections.current(work.owner, agent.id) is None
    assert await work_loop.in_list_work(work.owner, agent.id) is None


async def test_rule_18_only_valid_outcomes_with_their_details_are_saved(
    engine: AsyncEngine, loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list, n=1)
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    with pytest.raises(InvalidTransition):
        await work_loop.save(agent, cid(screen), token(screen), "call_team", {})
    with pytest.raises(Invalid):  # the required amount is missing
        await work_loop.save(agent, cid(screen), token(screen), "sale", {})
    step = await work_loop.save(
        agent,
        cid(screen),
        token(screen),
        "sale",
        {"amount": "1200"},
        next_action=NextAction.CONTINUE,
    )
    assert step.screen is not None and step.screen["status"] == "sale"
    outcome = next(h for h in step.screen["history"] if h["kind"] == "outcome")
    assert outcome["data"]["details"] == {"amount": 1200} and outcome["user_id"] == str(agent.id)


async def test_rule_08_a_released_screen_cannot_save(
    engine: AsyncEngine, loop: Any, stack: Stack, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list, n=2)
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    await stack.selections.release(work.owner, cid(screen), work.supervisor.id, supervisor=True)
    with pytest.raises(SelectionLost):
        await work_loop.save(agent, cid(screen), token(screen), "sale", {"amount": 1})
    async with engine.connect() as conn:
        customer = await repo.get_customer(conn, work.owner, cid(screen))
    assert customer is not None and customer.status == AVAILABLE


async def test_rule_04_manual_select_while_holding_names_the_held_customer(
    loop: Any, new_list: Any
) -> None:
    work_loop, _clock = loop
    work = await a_list(new_list, n=3)
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    other = next(c for c in work.customer_ids if c != cid(screen))
    with pytest.raises(UserHasSelection) as refused:
        await work_loop.select(agent, other)
    assert refused.value.customer_id == cid(screen)


async def test_a_selection_is_recorded_in_one_statement_without_begin_or_commit(
    engine: AsyncEngine, database: dict[str, str | None], stack: Stack, new_list: Any
) -> None:
    """On PostgreSQL a select's record is one statement, atomic on its own: it is sent without
    BEGIN and COMMIT around it (two round trips fewer), and it is durable at once."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite records a selection in four statements, in a transaction")
    work = await a_list(new_list, n=2)
    agent, customer_id = work.agents[0], work.customer_ids[0]
    one = make_engine(str(database["url"]), schema=database["schema"], pool_size=1)
    try:
        sent: list[str] = []
        async with one.connect() as conn:  # the pool's only connection, logged from now on
            driver = (await conn.get_raw_connection()).driver_connection
            driver.add_query_logger(lambda record: sent.append(record.query))
        selections = SelectionService(one, stack.store)
        # The owner's locks are loaded from the database first (a transaction of its own).
        await selections.select(work.owner, work.agents[1].id, work.customer_ids[1])
        sent.clear()
        customer = await selections.select(work.owner, agent.id, customer_id)
        writes = [q for q in sent if "history" in q]
        assert len(writes) == 1 and writes[0].lstrip().upper().startswith("WITH")
        assert not [q for q in sent if q.strip(" ;").upper() in ("BEGIN", "COMMIT")]
    finally:
        await one.dispose()
    held = select(t.customers.c.holder_user_id, t.customers.c.selection_token).where(
        t.customers.c.id == customer_id
    )
    async with engine.connect() as conn:  # another connection sees it: committed
        row = (await conn.execute(held)).one()
    assert tuple(row) == (agent.id, customer.token)


SMS_FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(
        Outcome(
            "sale",
            "Sale",
            frozenset({AVAILABLE}),
            "sale",
            sms_template="Thank you, {name}! Your order is registered.",
        ),
    ),
)


@pytest.mark.parametrize("auto_sms", [True, False])
async def test_rule_23_an_sms_flow_queues_one_sms_only_when_automatic_sms_is_on(
    engine: AsyncEngine, loop: Any, new_list: Any, auto_sms: bool
) -> None:
    from sqlalchemy import select

    from domain.db import tables as t

    work_loop, _clock = loop
    setup = AssignmentSetup(auto_sms=auto_sms, max_attempts=None, retry_delay=timedelta(0))
    work = await new_list(
        customers=[{"name": "Kari Nordmann", "phones": ["+4791234567"]}],
        agents=1,
        flow=SMS_FLOW,
        setup=setup,
    )
    agent = work.agents[0]
    screen = (await work_loop.start(agent, work.assignment_id)).screen
    assert screen is not None
    await work_loop.save(agent, cid(screen), token(screen), "sale", {})
    async with engine.connect() as conn:
        queued = (
            await conn.execute(
                select(t.sms_outbox.c.to_phone, t.sms_outbox.c.body).where(
                    t.sms_outbox.c.customer_id == cid(screen)
                )
            )
        ).all()
    if auto_sms:
        assert [tuple(r) for r in queued] == [
            ("+4791234567", "Thank you, Kari Nordmann! Your order is registered.")
        ]
    else:
        assert queued == []
