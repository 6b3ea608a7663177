"""The SMS outbox (rule 23): an SMS is written in the outcome's own transaction, sent by
whichever node delivers, and recorded in the customer's history when sent.

At least once: a row stays pending until a send is recorded; a node that dies mid-send loses its
lease and another sends again (the provider gets the row's key to drop a duplicate). Never twice
for one outcome: ``event_key`` names the outcome event and is unique, so registering the same
outcome event again (a retried request, a resumed bulk batch) enqueues nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import NotFound
from domain.flows import Outcome
from domain.model import Assignment, Crm, HistoryKind
from domain.sms import SmsMessage, check_template, first_phone, render

o = t.sms_outbox.c
PENDING, SENT, FAILED = "pending", "sent", "failed"
MAX_TRIES = 5


class SmsProvider(Protocol):
    """Sends one SMS; returns the provider's id for it. Raises on failure (it is retried)."""

    async def send(self, message: SmsMessage) -> str: ...


@dataclass(frozen=True, slots=True)
class SmsCustomer:
    """What a template may read of a customer."""

    id: int
    name: str
    external_id: str
    email: str | None
    phones: Sequence[str]
    info: Mapping[str, Any] = field(default_factory=dict)


def sms_wanted(assignment: Assignment, outcome: Outcome) -> bool:
    """Rule 23: the outcome has an SMS flow and automatic SMS is on for the assignment."""
    return bool(outcome.sms_template) and assignment.setup.auto_sms


async def enqueue_outcome_sms(
    conn: AsyncConnection,
    *,
    event_key: str,
    customer_id: int,
    outcome_key: str,
    details: Mapping[str, Any],
    user_id: int | None,
    now: datetime,
) -> int | None:
    """Rule 23 for one registered outcome, inside the caller's transaction: queue the SMS its
    flow names. `event_key` names the outcome event (e.g. "history:<id of its outcome row>").

    Returns the outbox id, or None when nothing is sent: no SMS flow, automatic SMS off, no
    phone, or this event already queued its SMS."""
    row = (await conn.execute(select(t.customers).where(t.customers.c.id == customer_id))).first()
    if row is None or row.assignment_id is None:
        raise NotFound("no such customer in an assignment")
    assignment = await repo.get_assignment(conn, row.assignment_id)
    crm = await repo.get_crm(conn, row.crm_id)
    if assignment is None or crm is None:
        raise NotFound("no such assignment")
    outcome = assignment.flow.outcome(outcome_key)
    if outcome is None:
        raise NotFound(f"no outcome '{outcome_key}' in the assignment's flow")
    customer = SmsCustomer(
        row.id, row.name, row.external_id, row.email, tuple(row.phones or ()), row.info or {}
    )
    ids = await enqueue_outcome_sms_many(
        conn,
        assignment=assignment,
        crm=crm,
        outcome=outcome,
        details=details,
        customers=[(event_key, customer)],
        user_id=user_id,
        now=now,
    )
    return ids[0] if ids else None


async def enqueue_outcome_sms_many(
    conn: AsyncConnection,
    *,
    assignment: Assignment,
    crm: Crm,
    outcome: Outcome,
    details: Mapping[str, Any],
    customers: Sequence[tuple[str, SmsCustomer]],
    user_id: int | None,
    now: datetime,
) -> list[int]:
    """The same for many (event key, customer) pairs of one outcome: one statement. Returns the
    ids of the rows queued (customers without a phone and events already queued are left out)."""
    if not customers or not sms_wanted(assignment, outcome):
        return []
    assert outcome.sms_template is not None
    check_template(outcome.sms_template, crm, outcome)
    rows = []
    for key, customer in customers:
        phone = first_phone(customer.phones)
        if phone is None:
            continue
        rows.append(
            {
                "data_owner_id": assignment.data_owner_id,
                "customer_id": customer.id,
                "assignment_id": assignment.id,
                "event_key": key,
                "outcome_key": outcome.key,
                "to_phone": phone[:32],
                "body": render(
                    outcome.sms_template,
                    name=customer.name,
                    external_id=customer.external_id,
                    email=customer.email,
                    phones=customer.phones,
                    info=customer.info,
                    details=details,
                ),
                "status": PENDING,
                "created_by": user_id,
                "created_at": now,
                "next_attempt_at": now,
            }
        )
    if not rows:
        return []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(t.sms_outbox)
        .on_conflict_do_nothing(index_elements=[o.event_key])
        .returning(o.id)
    )
    result = await conn.execute(statement, rows)
    return [r[0] for r in result]


@dataclass
class Delivery:
    """What one delivery round did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


async def deliver_due(
    engine: AsyncEngine,
    provider: SmsProvider,
    *,
    now: datetime | None = None,
    node: str | None = None,
    limit: int = 100,
    lease: timedelta = timedelta(seconds=60),
    max_tries: int = MAX_TRIES,
    data_owner_id: int | None = None,
) -> Delivery:
    """Send the due SMS (of every data owner, or of one), each recorded in its customer's
    history once sent. A failed send is retried later (backoff), after `max_tries` recorded as
    failed."""
    now = now or repo.utcnow()
    node = node or secrets.token_hex(8)
    claimed = await _claim(
        engine, now=now, node=node, limit=limit, lease=lease, data_owner_id=data_owner_id
    )
    done = Delivery()
    for row in claimed:
        try:
            provider_id = await provider.send(
                SmsMessage(key=f"sms-{row.id}", to=row.to_phone, body=row.body)
            )
        except Exception as error:  # any provider failure: keep the row and retry it
            final = row.tries >= max_tries
            await _record_failure(engine, row, node, now, str(error) or type(error).__name__, final)
            if final:
                done.failed += 1
            else:
                done.retried += 1
            continue
        if await _record_sent(engine, row, node, now, provider_id):
            done.sent += 1
    return done


async def _claim(
    engine: AsyncEngine,
    *,
    now: datetime,
    node: str,
    limit: int,
    lease: timedelta,
    data_owner_id: int | None,
) -> list[Any]:
    async with engine.begin() as conn:
        due = (
            select(o.id)
            .where(
                o.status == PENDING,
                o.next_attempt_at <= now,
                or_(o.lease_until.is_(None), o.lease_until < now),
            )
            .order_by(o.id)
            .limit(limit)
        )
        if data_owner_id is not None:
            due = due.where(o.data_owner_id == data_owner_id)
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list((await conn.execute(due)).scalars())
        if not ids:
            return []
        result = await conn.execute(
            update(t.sms_outbox)
            .where(o.id.in_(ids))
            .values(lease_owner=node, lease_until=now + lease, tries=o.tries + 1)
            .returning(
                o.id, o.customer_id, o.assignment_id, o.to_phone, o.body, o.tries, o.outcome_key
            )
        )
        return sorted(result.all(), key=lambda r: r.id)


def _ours(row: Any, node: str) -> Any:
    return and_(o.id == row.id, o.lease_owner == node, o.status == PENDING)


async def _record_sent(
    engine: AsyncEngine, row: Any, node: str, now: datetime, provider_id: str
) -> bool:
    async with engine.begin() as conn:
        updated = (
            await conn.execute(
                update(t.sms_outbox)
                .where(_ours(row, node))
                .values(
                    status=SENT,
                    sent_at=now,
                    provider_message_id=str(provider_id)[:200],
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(o.id)
            )
        ).first()
        if updated is None:
            return False  # our lease ran out and another node owns the row now
        await _history(conn, row, now, {"status": SENT, "provider_message_id": provider_id})
    return True


async def _record_failure(
    engine: AsyncEngine, row: Any, node: str, now: datetime, error: str, final: bool
) -> None:
    backoff = timedelta(seconds=30 * 2 ** max(0, row.tries - 1))
    async with engine.begin() as conn:
        updated = (
            await conn.execute(
                update(t.sms_outbox)
                .where(_ours(row, node))
                .values(
                    status=FAILED if final else PENDING,
                    last_error=error[:2000],
                    next_attempt_at=now + backoff,
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(o.id)
            )
        ).first()
        if updated is not None and final:
            await _history(conn, row, now, {"status": FAILED, "error": error[:500]})


async def _history(conn: AsyncConnection, row: Any, now: datetime, data: dict[str, Any]) -> None:
    await conn.execute(
        insert(t.history).values(
            customer_id=row.customer_id,
            at=now,
            kind=HistoryKind.SMS.value,
            user_id=None,
            assignment_id=row.assignment_id,
            data={
                "outbox_id": row.id,
                "outcome": row.outcome_key,
                "to": row.to_phone,
                "body": row.body,
                **data,
            },
        )
    )


async def outbox_rows(conn: AsyncConnection, customer_id: int) -> list[dict[str, Any]]:
    """The customer's SMS (queued, sent, failed), oldest first."""
    rows = await conn.execute(
        select(t.sms_outbox).where(o.customer_id == customer_id).order_by(o.id)
    )
    return [dict(r._mapping) for r in rows]
