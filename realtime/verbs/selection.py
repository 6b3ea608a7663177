"""Selection verbs of this hub: release (rule 7, 8), stop work, and the supervisors' overview."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import NotFound
from domain.model import Role
from presence.agents import epoch_ms
from realtime import metrics
from realtime.connection import Context
from realtime.events import SelectionRow, iso_ms, selection_released
from realtime.protocol import Request, WireId, verb

SUPERVISORS = (Role.SUPERVISOR, Role.ADMIN)


class SelectionRelease(Request):
    type: Literal["selection.release"]
    customer_id: WireId


class WorkStop(Request):
    type: Literal["work.stop"]


class SelectedWatch(Request):
    type: Literal["selected.watch"]
    assignment_id: WireId | None = Field(default=None, description="only this assignment's rows")


@verb(SelectionRelease)
async def selection_release(ctx: Context, request: SelectionRelease) -> dict[str, Any]:
    """Ends the customer's selection: a supervisor or administrator anyone's of its data owner,
    an agent only its own (`forbidden` otherwise). Released by someone else, the holder gets
    `selection.revoked` on every connection at once (rule 8)."""
    started = epoch_ms()
    services, owner, user = ctx.services, ctx.owner, ctx.user
    customer_id = int(request.customer_id)
    async with services.engine.connect() as conn:
        customer = await repo.get_customer(conn, owner, customer_id)
    if customer is None:
        raise NotFound("no such customer")  # also another data owner's (rule 3)
    try:
        released = await services.selections.release(
            owner, customer_id, user.id, supervisor=user.supervises
        )
    except Exception as error:
        metrics.LOCK_OPERATIONS.labels("release", getattr(error, "code", "error")).inc()
        raise
    metrics.LOCK_OPERATIONS.labels("release", "released" if released else "none").inc()
    if released is not None:
        await selection_released(services, released, user, started_ms=started)
    return {"released": released is not None}


@verb(WorkStop)
async def work_stop(ctx: Context, _request: WorkStop) -> dict[str, Any]:
    """Ends whatever selection the user holds (rule 7) and leaves list work."""
    services = ctx.services
    step = await services.work.stop(ctx.user)
    released = step.released[0] if step.released else None
    metrics.LOCK_OPERATIONS.labels("stop", "released" if released else "none").inc()
    if released is None:
        return {"released": False}
    await selection_released(services, released, ctx.user)
    return {"released": True, "customer_id": str(released.customer_id)}


@verb(SelectedWatch, roles=SUPERVISORS)
async def selected_watch(ctx: Context, request: SelectedWatch) -> dict[str, Any]:
    """Answers the Selected Customers rows (of one assignment, if given), then
    `selected.changed` events follow on this connection."""
    services, owner = ctx.services, ctx.owner
    assignment_id = None if request.assignment_id is None else int(request.assignment_id)
    if assignment_id is not None:
        async with services.engine.connect() as conn:
            if await repo.get_assignment(conn, assignment_id, data_owner_id=owner) is None:
                raise NotFound("no such assignment")
    ctx.connection.watching["selected"] = (
        None if assignment_id is None else frozenset({assignment_id})
    )
    timeout_ms = int(services.settings.presence_timeout_seconds * 1000)
    await services.events.watch(owner, ctx.user.id, epoch_ms() + timeout_ms)
    await services.selections.ensure_ready(owner)
    selections = [
        s
        for s in await services.selections.store.snapshot(owner)
        if assignment_id is None or s.assignment_id == assignment_id
    ]
    shown = await services.presence.snapshot(owner)
    async with services.engine.connect() as conn:
        users = dict(
            (
                await conn.execute(
                    select(t.users.c.id, t.users.c.name).where(t.users.c.data_owner_id == owner)
                )
            ).all()
        )
        names: dict[int, str] = {}
        ids = [s.customer_id for s in selections]
        for start in range(0, len(ids), 500):
            rows = await conn.execute(
                select(t.customers.c.id, t.customers.c.name).where(
                    t.customers.c.data_owner_id == owner,
                    t.customers.c.id.in_(ids[start : start + 500]),
                )
            )
            names.update(dict(rows.all()))
    return {
        "rows": [
            SelectionRow(
                user_id=str(s.user_id),
                user_name=users.get(s.user_id, ""),
                online=bool(shown.get(s.user_id) and shown[s.user_id].online),
                customer_id=str(s.customer_id),
                customer_name=names.get(s.customer_id, ""),
                assignment_id=None if s.assignment_id is None else str(s.assignment_id),
                segment_id=None if s.segment_id is None else str(s.segment_id),
                selected_at=iso_ms(s.since),
            ).model_dump()
            for s in selections
        ]
    }
