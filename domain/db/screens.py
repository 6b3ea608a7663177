"""What an agent sees: the customer screen and My Work, read in one connection (rules 16-18).

Shapes are the wire's (docs/protocol.md): ids as strings, times as ISO 8601 in UTC, so the
realtime layer validates and sends them as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.driver import Statement
from domain.errors import NotFound
from domain.flows import AVAILABLE, Outcome, valid_outcomes
from domain.followups import my_work, side_panel
from domain.model import (
    Assignment,
    Crm,
    Customer,
    FollowUp,
    FollowUpKind,
    HistoryEvent,
    Role,
    User,
    WorkMode,
)
from domain.next_actions import next_options
from domain.times import iso

HISTORY_LIMIT = 200


def sid(value: int | None) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def customer_card(customer: Customer) -> dict[str, Any]:
    return {
        "id": str(customer.id),
        "external_id": customer.external_id,
        "name": customer.name,
        "phones": list(customer.phones),
        "email": customer.email,
        "info": _jsonable(customer.info),
        "attempts": customer.attempts,
        "last_attempt_at": iso(customer.last_attempt_at),
    }


def info_field_rows(crm: Crm | None) -> list[dict[str, Any]]:
    """The CRM's info fields in its order: what the card shows and edits, with labels and types
    (every defined field, also one the customer has no value for yet)."""
    if crm is None:
        return []
    return [{"key": f.key, "label": f.label, "type": f.type.value} for f in crm.info_fields]


def outcome_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "id": outcome.key,
        "name": outcome.name,
        "to_status": outcome.to_status,
        "follow_up": None if outcome.follow_up is None else outcome.follow_up.value,
        "sms": outcome.sms_template is not None,
        "details": [
            {"key": d.key, "label": d.label, "type": d.type.value, "required": d.required}
            for d in outcome.details
        ],
    }


def follow_up_row(f: FollowUp, names: dict[int, str] | None = None) -> dict[str, Any]:
    return {
        "id": str(f.id),
        "customer_id": str(f.customer_id),
        "customer_name": (names or {}).get(f.customer_id),
        "assignment_id": str(f.assignment_id),
        "kind": f.kind.value,
        "due_at": iso(f.due_at),
        "owner_user_id": sid(f.owner_user_id),
    }


def history_row(event: HistoryEvent, users: dict[int, str]) -> dict[str, Any]:
    return {
        "kind": event.kind.value,
        "at": iso(event.at),
        "user_id": sid(event.user_id),
        "user_name": users.get(event.user_id) if event.user_id is not None else None,
        "assignment_id": sid(event.assignment_id),
        "data": _jsonable(event.data),
    }


async def user_names(conn: AsyncConnection, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = await conn.execute(_USER_NAMES, {"ids": wanted})
    return {r.id: r.name for r in rows}


# Built once: the screen's reads run on every hand-out (see repositories' hot-path note).
_USER_NAMES = select(t.users.c.id, t.users.c.name).where(
    t.users.c.id.in_(bindparam("ids", expanding=True))
)
_CUSTOMER_NAMES = select(t.customers.c.id, t.customers.c.name).where(
    t.customers.c.id.in_(bindparam("ids", expanding=True))
)


async def customer_names(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await conn.execute(_CUSTOMER_NAMES, {"ids": wanted})
    return {r.id: r.name for r in rows}


# Newest first through the customer's history index, each name looked up by its user's key: no
# plan can read the whole users table for one customer's screen, whatever the statistics say.
_HISTORY_NAMED = Statement(
    select(
        t.history,
        select(t.users.c.name)
        .where(t.users.c.id == t.history.c.user_id)
        .scalar_subquery()
        .label("user_name"),
    )
    .where(t.history.c.customer_id == bindparam("cid"))
    .order_by(t.history.c.id.desc())
    .limit(HISTORY_LIMIT)
)  # read on the driver (domain.db.driver), as the panel's follow-ups: every screen reads both


async def last_history(
    conn: AsyncConnection, customer_id: int
) -> tuple[list[HistoryEvent], dict[int, str]]:
    """The customer's last HISTORY_LIMIT events in the order they were written, and the names
    of their users."""
    rows = await _HISTORY_NAMED.rows(conn, {"cid": customer_id})
    rows.reverse()
    events = [repo.history_event(r) for r in rows]
    return events, {r.user_id: r.user_name for r in rows if r.user_id is not None}


_fu = t.follow_ups.c
_a = t.assignments.c
# The side panel's follow-ups (domain.followups.side_panel picks from these): the user's open
# personal ones and the overdue shared ones, each with its customer's name. A shared one not
# due yet is not shown, so it is not read either.
_PANEL_FOLLOW_UPS = (
    select(t.follow_ups, t.customers.c.name.label("customer_name"))
    .join_from(t.follow_ups, t.customers, t.customers.c.id == _fu.customer_id)
    .where(
        _fu.ended_at.is_(None),
        or_(
            and_(_fu.kind == FollowUpKind.PERSONAL.value, _fu.owner_user_id == bindparam("uid")),
            and_(_fu.kind == FollowUpKind.SHARED.value, _fu.due_at < bindparam("now")),
        ),
    )
    .order_by(_fu.due_at, _fu.id)
)
_PANEL_IN = _PANEL_FOLLOW_UPS.where(_fu.assignment_id.in_(bindparam("aids", expanding=True)))
# Rule 3 in the same read (repo.visible_assignment_ids as a subquery): one round trip less.
_PANEL_ADMIN = Statement(
    _PANEL_FOLLOW_UPS.where(
        _fu.assignment_id.in_(select(_a.id).where(_a.data_owner_id == bindparam("owner")))
    )
)
_PANEL_GRANTED = Statement(
    _PANEL_FOLLOW_UPS.where(
        _fu.assignment_id.in_(
            select(_a.id).where(
                _a.data_owner_id == bindparam("owner"),
                _a.id.in_(
                    select(t.grants.c.assignment_id).where(t.grants.c.user_id == bindparam("uid"))
                ),
            )
        )
    )
)


async def _follow_ups_with_names(
    conn: AsyncConnection, user: User, assignment_ids: Collection[int] | None, now: datetime
) -> tuple[list[FollowUp], dict[int, str]]:
    """The side panel's open follow-ups in the given assignments (None: those the user may
    see), with the names of their customers."""
    params: dict[str, Any] = {"uid": user.id, "now": now}
    if assignment_ids is not None:
        if not assignment_ids:
            return [], {}
        params["aids"] = sorted(assignment_ids)
        rows = (await conn.execute(_PANEL_IN, params)).all()  # an IN list: SQLAlchemy's
    elif not user.active:
        return [], {}
    else:
        params["owner"] = user.data_owner_id
        panel = _PANEL_ADMIN if user.role is Role.ADMIN else _PANEL_GRANTED
        rows = await panel.rows(conn, params)
    return [repo.follow_up_of(r) for r in rows], {r.customer_id: r.customer_name for r in rows}


async def customer_screen(
    conn: AsyncConnection,
    user: User,
    customer: Customer,
    assignment: Assignment,
    *,
    token: int,
    mode: WorkMode,
    since: datetime,
    visible_assignment_ids: Collection[int] | None = None,
    now: datetime,
    crm: Crm | None = None,
) -> dict[str, Any]:
    """Rule 16-18: card, status, the outcomes valid from it, next options (default first),
    history and side panel, with the selection token every write presents (rule 8). The side
    panel covers ``visible_assignment_ids`` (None: the assignments the user may see)."""
    status = customer.status or AVAILABLE
    # Two reads, each with the names it shows: a screen is built on every hand-out.
    history, users = await last_history(conn, customer.id)
    follow_ups, names = await _follow_ups_with_names(conn, user, visible_assignment_ids, now)
    panel = side_panel(follow_ups, user.id, now)
    statuses = {s.key: s.name for s in assignment.flow.statuses}
    return {
        "customer": customer_card(customer),
        "info_fields": info_field_rows(crm),
        "assignment_id": str(assignment.id),
        "assignment_name": assignment.name,
        "segment_id": sid(customer.segment_id),
        "status": status,
        "status_name": statuses.get(status, status),
        "selection_token": str(token),
        "selected_at": iso(since),
        "mode": mode.value,
        "allowed_outcomes": [outcome_row(o) for o in valid_outcomes(assignment.flow, status)],
        "attempt_kinds": ["no_answer", "call_back_later"],
        "next_options": [a.value for a in next_options(mode)],
        "history": [history_row(e, users) for e in reversed(history)],
        "side_panel": {
            "upcoming_mine": [follow_up_row(f, names) for f in panel.upcoming_mine],
            "overdue_mine": [follow_up_row(f, names) for f in panel.overdue_mine],
            "overdue_shared": [follow_up_row(f, names) for f in panel.overdue_shared],
        },
    }


async def my_work_view(
    conn: AsyncConnection,
    user: User,
    visible: list[dict[str, Any]],
    timezone: str,
    now: datetime,
) -> dict[str, Any]:
    """Rule 16: customers I must work with today (mine / shared), overdue follow-ups, and the
    lists with available customers to start. ``visible`` is repo.visible_assignments(user)."""
    ids = [int(a["id"]) for a in visible]
    follow_ups = await repo.open_follow_ups_for_user(conn, user.id, ids)
    view = my_work(follow_ups, user.id, now, timezone)
    names = await customer_names(conn, [f.customer_id for f in follow_ups])
    return {
        "today_mine": [follow_up_row(f, names) for f in view.today_mine],
        "today_shared": [follow_up_row(f, names) for f in view.today_shared],
        "overdue_mine": [follow_up_row(f, names) for f in view.overdue_mine],
        "overdue_shared": [follow_up_row(f, names) for f in view.overdue_shared],
        "lists": [a for a in visible if a.get("available", 0) > 0],
    }


async def customer_details(
    conn: AsyncConnection, owner: int, customer_id: int
) -> tuple[Customer, dict[str, Any]]:
    """A customer's card and history for anyone who may see it (not a screen: no selection)."""
    customer = await repo.get_customer(conn, owner, customer_id)
    if customer is None:
        raise NotFound("no such customer")
    history, users = await last_history(conn, customer.id)
    crm = await repo.get_crm(conn, customer.crm_id, data_owner_id=owner)
    return customer, {
        "customer": customer_card(customer),
        "info_fields": info_field_rows(crm),
        "assignment_id": sid(customer.assignment_id),
        "segment_id": sid(customer.segment_id),
        "status": customer.status,
        "history": [history_row(e, users) for e in reversed(history)],
    }


async def count_available(conn: AsyncConnection, assignment_id: int) -> int:
    c = t.customers.c
    return (
        await conn.execute(
            select(func.count()).where(c.assignment_id == assignment_id, c.status == AVAILABLE)
        )
    ).scalar_one()
