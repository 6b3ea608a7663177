"""Selection verbs of this hub: release (rule 7, 8), stop work, and the supervisors' overview."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import ARRAY, BigInteger, Table, any_, bindparam, select

from domain.db import driver
from domain.db import repositories as repo
from domain.db import tables as t
from domain.errors import NotFound
from domain.model import Role
from presence.agents import epoch_ms
from realtime import metrics
from realtime.connection import Context
from realtime.events import overview_row, selection_released
from realtime.protocol import Request, WireId, verb

SUPERVISORS = (Role.SUPERVISOR, Role.ADMIN)
NAMES_CHUNK = 500
_NAMES_OF = {
    table.name: driver.Statement(
        select(table.c.id, table.c.name).where(
            table.c.data_owner_id == bindparam("owner"),
            table.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))),
        )
    )
    for table in (t.users, t.customers)
}
"""id -> name of thousands of an owner's users or customers, one array parameter (PostgreSQL)."""


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
    async with services.reads.connect() as conn:
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
        async with services.reads.connect() as conn:
            if await repo.get_assignment(conn, assignment_id, data_owner_id=owner) is None:
                raise NotFound("no such assignment")
    ctx.connection.watching["selected"] = (
        None if assignment_id is None else frozenset({assignment_id})
    )
    timeout_ms = int(services.settings.presence_timeout_seconds * 1000)
    await services.events.watch(owner, ctx.user.id, epoch_ms() + timeout_ms)
    await services.selections.ensure_ready(owner)
    live = [
        row
        for row in await services.selections.store.live_rows(owner)
        if assignment_id is None or row["assignment_id"] == assignment_id
    ]
    online = await services.presence.online_users(owner)
    async with services.reads.connect() as conn:
        users = await _names(conn, t.users, owner, (row["user_id"] for row in live))
        customers = await _names(conn, t.customers, owner, (row["customer_id"] for row in live))
    return {
        "rows": [
            overview_row(
                row,
                users.get(row["user_id"], ""),
                customers.get(row["customer_id"], ""),
                row["user_id"] in online,
            )
            for row in live
        ]
    }


async def _names(conn: Any, table: Table, owner: int, ids: Iterable[int]) -> dict[int, str]:
    """id -> name of the owner's users or customers: one statement with an array parameter on
    PostgreSQL (thousands of ids), IN lists of NAMES_CHUNK elsewhere."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    if driver.supported(conn):
        return dict(await _NAMES_OF[table.name].tuples(conn, {"owner": owner, "ids": wanted}))
    query = select(table.c.id, table.c.name).where(table.c.data_owner_id == owner)
    names: dict[int, str] = {}
    for start in range(0, len(wanted), NAMES_CHUNK):
        chunk = wanted[start : start + NAMES_CHUNK]
        names.update((await conn.execute(query.where(table.c.id.in_(chunk)))).all())
    return names
