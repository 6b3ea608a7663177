"""customer.save going on to the next of a preview list: the outcome, the release of the saved
customer and the claim of the next one in one transaction (NextCustomer.save_and_move_on),
shared with the agents saving at the same moment, and each agent answered alone (rules 7, 8,
10, 15, 18, 23, 24)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from list_work import FLOW, Stack, database_holders
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import fencing
from domain.db import tables as t
from domain.errors import Invalid, InvalidTransition, SelectionLost
from domain.flows import AVAILABLE, CustomerFlow, Outcome
from domain.model import AssignmentSetup, HistoryKind
from presence.selections import Selection

FAST = AssignmentSetup(max_attempts=None, retry_delay=timedelta(0))
h = t.history.c


def sale(selection: Selection, key: str = "sale") -> fencing.OutcomeAsk:
    holding = fencing.Holding(selection.customer_id, selection.user_id, selection.token)
    return fencing.OutcomeAsk(holding, key, {}, datetime.now(UTC))


async def kinds(engine: AsyncEngine, customer_id: int) -> list[HistoryKind]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(h.kind).where(h.customer_id == customer_id).order_by(h.id))
        return [HistoryKind(k) for (k,) in rows]


async def status_of(engine: AsyncEngine, customer_id: int) -> tuple[str, int | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(t.customers.c.status, t.customers.c.holder_user_id).where(
                    t.customers.c.id == customer_id
                )
            )
        ).one()
    return row.status, row.holder_user_id


async def claim_all(stack: Stack, work: Any) -> list[Selection]:
    held = [await stack.dialer.claim(work.owner, a.id, work.assignment_id) for a in work.agents]
    assert all(s is not None for s in held)
    return held  # type: ignore[return-value]


async def test_rule_15_a_save_and_next_is_one_transaction(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """The outcome, the saved customer's release and the next customer's selection are all
    written, in that order, and (PostgreSQL) by one transaction: their rows share its id."""
    work = await new_list(n=10, agents=1, setup=FAST)
    (held,) = await claim_all(stack, work)

    saved, moved = await stack.dialer.save_and_move_on(held, sale(held), work.assignment_id)

    assert saved.customer_id == held.customer_id and saved.status == "sale"
    assert not isinstance(moved, SelectionLost)
    released, selection = moved
    assert released is not None and released.customer_id == held.customer_id
    assert selection is not None and selection.customer_id != held.customer_id
    assert await stack.selections.current(work.owner, held.user_id) == selection
    assert await status_of(engine, held.customer_id) == ("sale", None)
    assert await status_of(engine, selection.customer_id) == (AVAILABLE, held.user_id)
    assert await kinds(engine, held.customer_id) == [
        HistoryKind.SELECTED,
        HistoryKind.OUTCOME,
        HistoryKind.RELEASED,
    ]
    assert await kinds(engine, selection.customer_id) == [HistoryKind.SELECTED]
    async with engine.connect() as conn:
        written = (
            await conn.execute(
                select(h.customer_id, h.kind)
                .where(h.id >= saved.history_id, h.customer_id.in_(work.customer_ids))
                .order_by(h.id)
            )
        ).all()
    assert [(cid, HistoryKind(kind)) for cid, kind in written] == [
        (held.customer_id, HistoryKind.OUTCOME),
        (held.customer_id, HistoryKind.RELEASED),
        (selection.customer_id, HistoryKind.SELECTED),
    ]
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            writers = (
                await conn.execute(
                    text(
                        "SELECT DISTINCT xmin::text FROM history WHERE id > :first"
                        " AND customer_id IN (:saved, :next)"
                    ),
                    {
                        "first": saved.history_id - 1,
                        "saved": held.customer_id,
                        "next": selection.customer_id,
                    },
                )
            ).all()
        assert len(writers) == 1, writers  # outcome, release and selection: one transaction


async def test_rule_18_a_refused_outcome_does_not_move_on(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """Agents saving together: one names an outcome the flow lacks, one saves with a stale
    token (rule 8). Those two are refused with nothing written and keep (or lost) what they
    had; the others' outcomes stand and they go on to the next."""
    work = await new_list(n=40, agents=8, setup=FAST)
    held = await claim_all(stack, work)
    asks = [sale(s) for s in held]
    asks[2] = sale(held[2], "no_such_outcome")
    stale = held[5]
    asks[5] = fencing.OutcomeAsk(
        fencing.Holding(stale.customer_id, stale.user_id, stale.token - 1),
        "sale",
        {},
        datetime.now(UTC),
    )

    answers = await asyncio.gather(
        *(
            stack.dialer.save_and_move_on(s, ask, work.assignment_id)
            for s, ask in zip(held, asks, strict=True)
        ),
        return_exceptions=True,
    )

    assert isinstance(answers[2], InvalidTransition)
    assert isinstance(answers[5], SelectionLost)
    for i in (2, 5):
        assert await kinds(engine, held[i].customer_id) == [HistoryKind.SELECTED]
        assert await status_of(engine, held[i].customer_id) == (AVAILABLE, held[i].user_id)
        assert await stack.selections.current(work.owner, held[i].user_id) == held[i]
    nexts = set()
    for i, answer in enumerate(answers):
        if i in (2, 5):
            continue
        assert not isinstance(answer, BaseException), answer
        saved, moved = answer
        assert saved.customer_id == held[i].customer_id
        assert not isinstance(moved, SelectionLost)
        _released, selection = moved
        assert selection is not None
        nexts.add(selection.customer_id)
        assert await status_of(engine, held[i].customer_id) == ("sale", None)
    assert len(nexts) == 6 and not nexts & {s.customer_id for s in held}
    if engine.dialect.name == "postgresql":
        moves = stack.selections.move_ons
        assert moves.batches < moves.requests  # they went together


async def test_rule_23_a_save_and_next_batch_the_database_refuses_goes_again_alone(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """An outcome whose SMS names a field nobody has fails inside the shared transaction,
    before anything moved in Redis: the batch rolls back and each save goes again alone, so
    only the agents at fault are refused (holding what they had) and the rest go on."""
    flow = CustomerFlow(
        statuses=FLOW.statuses,
        outcomes=(
            *FLOW.outcomes,
            Outcome("broken", "Broken", frozenset({AVAILABLE}), "sale", sms_template="{nope}"),
        ),
    )
    setup = AssignmentSetup(max_attempts=None, retry_delay=timedelta(0), auto_sms=True)
    work = await new_list(n=40, agents=10, setup=setup, flow=flow)
    held = await claim_all(stack, work)
    broken = {1, 6}
    answers = await asyncio.gather(
        *(
            stack.dialer.save_and_move_on(
                s, sale(s, "broken" if i in broken else "sale"), work.assignment_id
            )
            for i, s in enumerate(held)
        ),
        return_exceptions=True,
    )
    for i, answer in enumerate(answers):
        if i in broken:
            assert isinstance(answer, Invalid), answer
            assert await kinds(engine, held[i].customer_id) == [HistoryKind.SELECTED]
            assert await stack.selections.current(work.owner, held[i].user_id) == held[i]
            continue
        assert not isinstance(answer, BaseException), answer
        _saved, moved = answer
        assert not isinstance(moved, SelectionLost) and moved[1] is not None
        assert await kinds(engine, held[i].customer_id) == [
            HistoryKind.SELECTED,
            HistoryKind.OUTCOME,
            HistoryKind.RELEASED,
        ]


async def test_rule_12_agents_saving_and_moving_on_together_never_share_a_customer(
    engine: AsyncEngine, stack: Stack, new_list: Any
) -> None:
    """40 agents save and go next in one step, over and over, while others of the same list
    move on without an outcome: no sold customer is handed out again, every sale is written
    once, and in the end nothing is held in Redis or the database."""
    work = await new_list(n=1200, agents=40, setup=FAST)
    sold: list[int] = []
    handed_after_sale: list[int] = []

    async def agent(index: int, user_id: int) -> None:
        selection = await stack.dialer.claim(work.owner, user_id, work.assignment_id)
        for _ in range(20):
            if selection is None:
                return
            if selection.customer_id in sold:
                handed_after_sale.append(selection.customer_id)
            if index % 4:
                saved, moved = await stack.dialer.save_and_move_on(
                    selection, sale(selection), work.assignment_id
                )
                assert not isinstance(moved, SelectionLost)
                sold.append(saved.customer_id)
                _released, selection = moved
            else:
                _released, selection = await stack.dialer.move_on(
                    work.owner, user_id, work.assignment_id, expected=selection
                )

    await asyncio.wait_for(
        asyncio.gather(*(agent(i, a.id) for i, a in enumerate(work.agents))), timeout=180
    )
    for a in work.agents:
        await stack.selections.release_user(work.owner, a.id)
    assert handed_after_sale == []
    assert len(sold) == len(set(sold)) > 0
    async with engine.connect() as conn:
        outcomes = (
            await conn.execute(
                select(h.customer_id).where(
                    h.customer_id.in_(work.customer_ids), h.kind == HistoryKind.OUTCOME.value
                )
            )
        ).all()
    assert sorted(cid for (cid,) in outcomes) == sorted(sold)
    assert await database_holders(engine, work.owner) == {}
    assert await stack.store.snapshot(work.owner) == []
    if engine.dialect.name == "postgresql":
        moves = stack.selections.move_ons
        assert moves.batches < moves.requests  # saves and moves on went together
