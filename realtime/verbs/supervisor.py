"""Supervisor verbs beyond the live overview: the release audit of an assignment (issue: who
released whose selection, and when), read from the customers' history (rule 24)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import screens
from domain.db import tables as t
from domain.errors import NotFound
from domain.model import Role
from domain.times import iso
from realtime.connection import Context
from realtime.protocol import Request, WireId, verb

SUPERVISORS = (Role.SUPERVISOR, Role.ADMIN)
AUDIT_PAGE = 100


class SelectionAudit(Request):
    type: Literal["selection.audit"]
    assignment_id: WireId
    before: WireId | None = Field(
        default=None, description="the `cursor` of the previous page: older releases only"
    )
    limit: int = Field(default=AUDIT_PAGE, ge=1, le=500)


@verb(SelectionAudit, roles=SUPERVISORS)
async def selection_audit(ctx: Context, request: SelectionAudit) -> dict[str, Any]:
    """Releases in one assignment, newest first: whose selection, who released it and when.
    Pages with `before` = the previous answer's `cursor` (null: no older ones)."""
    assignment_id = int(request.assignment_id)
    h = t.history.c
    async with ctx.services.engine.connect() as conn:
        if assignment_id not in await repo.visible_assignment_ids(conn, ctx.user):
            raise NotFound("no such assignment")  # also another data owner's (rule 3)
        query = (
            select(h.id, h.customer_id, h.at, h.user_id, h.data)
            .where(h.assignment_id == assignment_id, h.kind == t.RELEASED_KIND)
            .order_by(h.id.desc())
            .limit(request.limit)
        )
        if request.before is not None:
            query = query.where(h.id < int(request.before))
        rows = (await conn.execute(query)).all()
        holders = [int((r.data or {}).get("holder_user_id") or 0) or None for r in rows]
        users = await screens.user_names(conn, [*holders, *(r.user_id for r in rows)])
        customers = await screens.customer_names(conn, [r.customer_id for r in rows])
    releases = [
        {
            "at": iso(r.at),
            "customer_id": str(r.customer_id),
            "customer_name": customers.get(r.customer_id),
            "holder_user_id": screens.sid(holder),
            "holder_name": users.get(holder) if holder else None,
            "released_by_id": screens.sid(r.user_id),
            "released_by_name": users.get(r.user_id),
            "by_someone_else": holder is not None and holder != r.user_id,
        }
        for r, holder in zip(rows, holders, strict=True)
    ]
    cursor = str(rows[-1].id) if len(rows) == request.limit else None
    return {"releases": releases, "cursor": cursor}
