"""The durable copy of selections, and the fence every holder's write passes (rules 4, 5, 8).

Redis holds the locks; the database keeps, per customer, its holder, the holder's fencing token
and since when. A selection or release is recorded here in the transaction that writes its
history row. A holder's write starts with ``fence`` in its own transaction: the row is locked and
must still name the holder and token, so a screen whose selection ended (released, replaced,
lost with Redis) can never write, and nothing of a refused write is applied.

``selection_token`` stays on the row after a release: the largest token of an owner's rows is
the high-water mark that lets Redis keep its tokens growing after it lost its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.codec import flow_from_json
from domain.errors import Invalid, NotFound, SelectionLost
from domain.fields import coerce_value
from domain.flows import AVAILABLE, check_outcome
from domain.followups import FollowUpPlan, plan_attempt, plan_outcome_follow_up
from domain.model import (
    Attempt,
    AttemptKind,
    FollowUp,
    HistoryEvent,
    HistoryKind,
    WorkMode,
)

c = t.customers.c


@dataclass(frozen=True, slots=True)
class Holding:
    """Who claims to hold a customer, with which token: what a screen presents to write."""

    customer_id: int
    user_id: int
    token: int


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What saving an outcome did: the status change, the follow-ups it ended and created, and
    the SMS template its flow names (rule 23 sends it, when automatic SMS is on)."""

    customer_id: int
    assignment_id: int
    outcome_key: str
    from_status: str
    status: str
    details: dict[str, Any]
    follow_up: FollowUp | None
    ended_follow_ups: tuple[FollowUp, ...]
    sms_template: str | None
    history_id: int = 0
    """The outcome's history row: names the event (an SMS is queued once per event)."""

    @property
    def progressive(self) -> bool:
        """The outcome took the customer out of `available` (a progressive outcome)."""
        return self.from_status == AVAILABLE and self.status != AVAILABLE


@dataclass(frozen=True, slots=True)
class DurableHolder:
    """A holder as the database remembers it, to rebuild Redis from."""

    customer_id: int
    user_id: int
    token: int
    selected_at: datetime
    assignment_id: int | None
    segment_id: int | None
    mode: WorkMode


async def fence(conn: AsyncConnection, customer_id: int, user_id: int, token: int) -> None:
    """Rule 8: lock the customer's row for this transaction, or raise SelectionLost when the
    user no longer holds it with this token. Call it first in every holder's write."""
    await _fence_reading(conn, customer_id, user_id, token, c.id)


async def _fence_reading(
    conn: AsyncConnection, customer_id: int, user_id: int, token: int, *columns: Any
) -> Row[Any]:
    """``fence``, returning ``columns`` of the locked row in the same statement."""
    locked = (
        await conn.execute(
            update(t.customers)
            .where(c.id == customer_id, c.holder_user_id == user_id, c.selection_token == token)
            .values(version=c.version + 1)
            .returning(*columns)
        )
    ).first()
    if locked is None:
        held_by = (
            await conn.execute(select(c.holder_user_id).where(c.id == customer_id))
        ).scalar_one_or_none()
        raise SelectionLost(customer_id, held_by)
    return locked


async def record_selected(
    conn: AsyncConnection,
    *,
    owner: int,
    customer_id: int,
    user_id: int,
    token: int,
    at: datetime,
    assignment_id: int | None,
    segment_id: int | None,
    mode: WorkMode,
    qualifies: ColumnElement[bool] | None = None,
) -> bool:
    """Write a selection Redis just made; False when the row refuses it (``qualifies`` no longer
    holds, or a newer token is already recorded: the selection was released meanwhile)."""
    conditions = [
        c.id == customer_id,
        c.data_owner_id == owner,
        or_(c.selection_token.is_(None), c.selection_token < token),
    ]
    if qualifies is not None:
        conditions.append(qualifies)
    row = (
        await conn.execute(
            update(t.customers)
            .where(*conditions)
            .values(
                holder_user_id=user_id,
                selection_token=token,
                selected_at=at,
                version=c.version + 1,
            )
            .returning(c.id)
        )
    ).first()
    if row is None:
        return False
    # Redis just proved the user holds nothing else (rule 4): an older holding the database
    # still names was left by a crash between a Redis release and its recording.
    await conn.execute(
        update(t.customers)
        .where(
            c.data_owner_id == owner,
            c.holder_user_id == user_id,
            c.id != customer_id,
            c.selection_token < token,
        )
        .values(holder_user_id=None, selected_at=None)
    )
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=customer_id,
            kind=HistoryKind.SELECTED,
            at=at,
            user_id=user_id,
            assignment_id=assignment_id,
            data={"token": token, "mode": WorkMode(mode).value, "segment_id": segment_id},
        ),
    )
    return True


async def record_released(
    conn: AsyncConnection,
    *,
    owner: int,
    customer_id: int,
    token: int,
    by_user_id: int,
    at: datetime,
) -> int | None:
    """Clear the holder of selection ``token`` (also when its selection is not recorded yet: the
    token stays, so that late record is refused). Returns the former holder, or None."""
    before = (
        await conn.execute(
            select(c.holder_user_id, c.selection_token, c.assignment_id).where(
                c.id == customer_id, c.data_owner_id == owner
            )
        )
    ).first()
    if before is None:
        return None
    await conn.execute(
        update(t.customers)
        .where(
            c.id == customer_id,
            or_(c.selection_token.is_(None), c.selection_token <= token),
        )
        .values(holder_user_id=None, selected_at=None, selection_token=token)
    )
    return before.holder_user_id if before.selection_token == token else None


async def add_released_history(
    conn: AsyncConnection,
    *,
    customer_id: int,
    user_id: int,
    token: int,
    by_user_id: int,
    assignment_id: int | None,
    at: datetime,
) -> None:
    """Rule 24: a release, with whose selection it was and who ended it."""
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=customer_id,
            kind=HistoryKind.RELEASED,
            at=at,
            user_id=by_user_id,
            assignment_id=assignment_id,
            data={"token": token, "holder_user_id": user_id, "by_user_id": by_user_id},
        ),
    )


async def durable_holders(conn: AsyncConnection, owner: int) -> tuple[list[DurableHolder], int]:
    """The owner's holders and its token high-water mark (largest token ever recorded)."""
    rows = (
        await conn.execute(
            select(c.id, c.holder_user_id, c.selection_token, c.selected_at, c.assignment_id).where(
                c.data_owner_id == owner, c.holder_user_id.isnot(None)
            )
        )
    ).all()
    high_water = (
        await conn.execute(
            select(func.max(c.selection_token)).where(
                c.data_owner_id == owner, c.selection_token.isnot(None)
            )
        )
    ).scalar_one()
    # Segment and mode of each selection, from its latest 'selected' history row.
    details: dict[int, dict[str, Any]] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        latest = (
            select(func.max(t.history.c.id))
            .where(
                t.history.c.customer_id.in_(chunk),
                t.history.c.kind == HistoryKind.SELECTED.value,
            )
            .group_by(t.history.c.customer_id)
        )
        for h in await conn.execute(
            select(t.history.c.customer_id, t.history.c.data).where(t.history.c.id.in_(latest))
        ):
            details[h.customer_id] = dict(h.data or {})
    holders = []
    for r in rows:
        data = details.get(r.id, {})
        same = data.get("token") == r.selection_token
        holders.append(
            DurableHolder(
                customer_id=r.id,
                user_id=r.holder_user_id,
                token=int(r.selection_token or 0),
                selected_at=r.selected_at,
                assignment_id=r.assignment_id,
                segment_id=data.get("segment_id") if same else None,
                mode=WorkMode(data.get("mode", WorkMode.MANUAL.value) if same else "manual"),
            )
        )
    return holders, int(high_water or 0)


# Holders' writes: each passes the fence first -------------------------------------------------


async def record_attempt(
    conn: AsyncConnection,
    holding: Holding,
    kind: AttemptKind | str,
    now: datetime,
    *,
    call_back_at: datetime | None = None,
) -> int:
    """Rules 13, 14 as the holder's write: count the attempt, make the follow-up a
    call_back_later asks for, write history. Returns the new attempt count."""
    await fence(conn, holding.customer_id, holding.user_id, holding.token)
    kind = AttemptKind(kind)
    row = (
        await conn.execute(select(c.status, c.assignment_id).where(c.id == holding.customer_id))
    ).one()
    if row.assignment_id is None:
        raise Invalid("the customer is in no assignment")
    plan = plan_attempt(kind, row.status or "", holding.user_id, call_back_at, now)
    await end_follow_ups(conn, holding, row.assignment_id, "attempt", now)
    count = await repo.record_attempt(
        conn,
        Attempt(
            customer_id=holding.customer_id,
            assignment_id=row.assignment_id,
            user_id=holding.user_id,
            kind=kind,
            at=now,
            call_back_at=call_back_at,
        ),
    )
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.ATTEMPT,
            at=now,
            user_id=holding.user_id,
            assignment_id=row.assignment_id,
            data={"kind": kind.value, "token": holding.token, "call_back_at": call_back_at},
        ),
    )
    if plan is not None:
        await create_follow_up(conn, holding, row.assignment_id, plan, now)
    return count


async def create_follow_up(
    conn: AsyncConnection,
    holding: Holding,
    assignment_id: int,
    plan: FollowUpPlan,
    now: datetime,
) -> FollowUp:
    """The follow-up an attempt (rule 14) or an outcome (rule 15) planned, with its history
    row."""
    follow_up = await repo.create_follow_up(
        conn,
        customer_id=holding.customer_id,
        assignment_id=assignment_id,
        kind=plan.kind,
        due_at=plan.due_at,
        owner_user_id=plan.owner_user_id,
        created_by=holding.user_id,
        now=now,
    )
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.FOLLOW_UP_CREATED,
            at=now,
            user_id=holding.user_id,
            assignment_id=assignment_id,
            data={"follow_up_id": follow_up.id, "kind": plan.kind.value, "due_at": plan.due_at},
        ),
    )
    return follow_up


async def end_follow_ups(
    conn: AsyncConnection, holding: Holding, assignment_id: int, reason: str, now: datetime
) -> list[FollowUp]:
    """A new attempt or outcome settles the follow-ups the customer was waiting on (rule 16:
    they leave My Work), each with its history row."""
    ended = await repo.end_follow_ups(conn, holding.customer_id, reason, at=now)
    for follow_up in ended:
        await repo.add_history(
            conn,
            HistoryEvent(
                customer_id=holding.customer_id,
                kind=HistoryKind.FOLLOW_UP_ENDED,
                at=now,
                user_id=holding.user_id,
                assignment_id=assignment_id,
                data={"follow_up_id": follow_up.id, "kind": follow_up.kind.value, "reason": reason},
            ),
        )
    return ended


async def record_outcome(
    conn: AsyncConnection,
    holding: Holding,
    outcome_key: str,
    details: Mapping[str, Any],
    now: datetime,
    *,
    follow_up_at: datetime | None = None,
) -> OutcomeResult:
    """Rules 15, 18 as the holder's write: a valid transition of the assignment's flow with its
    details, open follow-ups ended, the outcome's own follow-up made, history written."""
    # The fence's own UPDATE reads what the outcome needs: one statement on the hot path.
    # SQLite renders RETURNING columns unqualified, so these subqueries name the customer by
    # value and through an alias: nothing in them depends on correlating with the fenced row.
    fenced = t.customers.alias("fenced")
    assignment_id = select(fenced.c.assignment_id).where(fenced.c.id == holding.customer_id)
    flow = select(t.assignments.c.flow).where(t.assignments.c.id == assignment_id.scalar_subquery())
    fu = t.follow_ups.c
    open_follow_ups = select(fu.id).where(
        fu.customer_id == holding.customer_id, fu.ended_at.is_(None)
    )
    row = await _fence_reading(
        conn,
        holding.customer_id,
        holding.user_id,
        holding.token,
        c.status,
        c.assignment_id,
        flow.scalar_subquery().label("flow"),
        open_follow_ups.exists().label("has_follow_ups"),
    )
    if row.assignment_id is None:
        raise Invalid("the customer is in no assignment")
    from_status = row.status or ""
    # Everything that can refuse runs before the first write past the fence; a refusal after
    # it still leaves nothing, since the caller's transaction rolls back.
    outcome, clean = check_outcome(flow_from_json(row.flow), from_status, outcome_key, details)
    plan = plan_outcome_follow_up(outcome, holding.user_id, follow_up_at, now)
    # The fence bumped the version; the status change rides on that bump.
    await conn.execute(
        update(t.customers)
        .where(c.id == holding.customer_id)
        .values(status=outcome.to_status, updated_at=now)
    )
    history_id = await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.OUTCOME,
            at=now,
            user_id=holding.user_id,
            assignment_id=row.assignment_id,
            data={
                "outcome": outcome.key,
                "from_status": from_status,
                "to_status": outcome.to_status,
                "details": clean,
                "token": holding.token,
            },
        ),
    )
    # A new outcome settles whatever follow-up the customer was waiting on (the fence's read
    # says whether there is any: most outcomes skip the look-up).
    ended: list[FollowUp] = []
    if row.has_follow_ups:
        ended = await end_follow_ups(conn, holding, row.assignment_id, "outcome", now)
    created = None
    if plan is not None:
        created = await create_follow_up(conn, holding, row.assignment_id, plan, now)
    return OutcomeResult(
        customer_id=holding.customer_id,
        assignment_id=row.assignment_id,
        outcome_key=outcome.key,
        from_status=from_status,
        status=outcome.to_status,
        details=clean,
        follow_up=created,
        ended_follow_ups=tuple(ended),
        sms_template=outcome.sms_template,
        history_id=history_id,
    )


async def edit_info_fields(
    conn: AsyncConnection, holding: Holding, values: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Rule 5: the holder edits CRM info fields (typed by the CRM's definitions). Returns the
    customer's info after the edit."""
    await fence(conn, holding.customer_id, holding.user_id, holding.token)
    row = (
        await conn.execute(
            select(c.info, c.crm_id, c.data_owner_id, c.assignment_id).where(
                c.id == holding.customer_id
            )
        )
    ).one()
    crm = await repo.get_crm(conn, row.crm_id, data_owner_id=row.data_owner_id)
    if crm is None:
        raise NotFound("no such CRM")
    info = dict(row.info or {})
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        field = crm.info_field(key)
        if field is None:
            raise Invalid(f"unknown info field '{key}'")
        value = coerce_value(field.type, raw, label=field.label)
        if info.get(key) != value:
            changes[key] = {"from": info.get(key), "to": value}
            info[key] = value
    if changes:
        await conn.execute(
            update(t.customers)
            .where(and_(c.id == holding.customer_id))
            .values(info=info, updated_at=now)
        )
        await repo.add_history(
            conn,
            HistoryEvent(
                customer_id=holding.customer_id,
                kind=HistoryKind.FIELD_EDITED,
                at=now,
                user_id=holding.user_id,
                assignment_id=row.assignment_id,
                data={"changes": changes, "token": holding.token},
            ),
        )
    return info
