"""Saving outcomes (rules 15, 18, 23) for many agents at once: a group commit.

The outcomes agents save at the same moment go in one transaction on PostgreSQL, their fences
and writes pipelined (``fencing.record_outcomes``), each outcome's SMS queued in it (rule 23).
Each agent still gets its own answer: its result, or the refusal its write alone met
(``selection_lost``, ``invalid_transition``), which wrote nothing. When the database refuses
the batch as a whole (one write broke a constraint, a deadlock), nothing of it stays and each
outcome is saved again alone, so only the one at fault fails. SQLite, one writer at a time
anyway, saves them one transaction each.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import fencing
from domain.db.fencing import OutcomeAsk, OutcomeResult
from domain.db.group_commit import GroupCommit, batches_at_once
from domain.db.sms_outbox import enqueue_outcome_sms
from domain.errors import DomainError

MOST = 64
"""Outcomes per transaction at most."""


class Outcomes:
    """One process's outcome writes, grouped."""

    def __init__(self, engine: AsyncEngine, *, most: int = MOST) -> None:
        self.engine = engine
        self.batches: GroupCommit[OutcomeAsk, OutcomeResult] = GroupCommit(
            self._run,
            key=lambda ask: ask.holding.customer_id,
            most=most,
            concurrent=batches_at_once(engine),
        )

    async def save(self, ask: OutcomeAsk) -> OutcomeResult:
        """Rules 15, 18, 23: the holder's outcome with its follow-ups and SMS, committed."""
        return await self.batches.submit(ask)

    async def _run(self, asks: list[OutcomeAsk]) -> Sequence[OutcomeResult | Exception]:
        if self.engine.dialect.name != "postgresql":
            return [await save_alone(self.engine, ask) for ask in asks]
        try:
            async with self.engine.begin() as conn:
                return await record_together(conn, asks)
        except Exception:
            if len(asks) == 1:
                raise
            return [await save_alone(self.engine, ask) for ask in asks]


async def record_together(
    conn: AsyncConnection, asks: Sequence[OutcomeAsk]
) -> list[OutcomeResult | DomainError]:
    """Many holders' outcomes with their SMS in the caller's transaction (PostgreSQL), each
    answered in order: its result, or the refusal it alone met, which wrote nothing. A save
    that goes on to the next customer in the same transaction starts here
    (presence.service.SelectionService.save_and_move_on)."""
    answers = await fencing.record_outcomes(conn, asks)
    for ask, answer in zip(asks, answers, strict=True):
        if isinstance(answer, OutcomeResult):
            await _queue_sms(conn, ask, answer)
    return answers


async def save_alone(engine: AsyncEngine, ask: OutcomeAsk) -> OutcomeResult | Exception:
    """One outcome with its SMS in a transaction of its own: its result, or the exception it
    met (a refusal, or the database's), which left nothing."""
    try:
        async with engine.begin() as conn:
            result = await fencing.record_outcome(
                conn,
                ask.holding,
                ask.outcome_key,
                ask.details,
                ask.now,
                follow_up_at=ask.follow_up_at,
            )
            await _queue_sms(conn, ask, result)
        return result
    except Exception as refused:  # a refusal, or the database's: this ask's answer alone
        return refused


async def _queue_sms(conn: AsyncConnection, ask: OutcomeAsk, result: OutcomeResult) -> None:
    """Rule 23: queued in the outcome's own transaction, once per outcome event; sent when
    automatic SMS is on for the assignment (domain.db.sms_outbox)."""
    if not result.sms_wanted:
        return
    await enqueue_outcome_sms(
        conn,
        event_key=f"history:{result.history_id}",
        customer_id=result.customer_id,
        outcome_key=result.outcome_key,
        details=result.details,
        user_id=ask.holding.user_id,
        now=ask.now,
    )
