"""The events a selection change sends, from one place every verb that selects or releases uses.

`selection_made` and `selection_released` publish `selected.changed` to the owner's watching
supervisors and refresh the holder's presence (working <-> available); a release by someone else
also sends `selection.revoked` to every connection of the former holder (rule 8), first, since
that is the one an agent waits on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from domain.db import tables as t
from domain.model import User
from domain.times import iso_ms
from presence.selections import Released, Selection
from realtime.protocol import event
from realtime.services import Services


class UserRef(BaseModel):
    id: str
    name: str


class SelectionRow(BaseModel):
    """One line of the Selected Customers overview."""

    user_id: str
    user_name: str
    online: bool = Field(description="whether the holder has a live connection (rule 9)")
    customer_id: str
    customer_name: str
    assignment_id: str | None
    segment_id: str | None
    selected_at: str = Field(description="ISO 8601, UTC")


@event("selection.revoked")
class SelectionRevoked(BaseModel):
    """To every connection of the former holder: leave the customer screen (rule 8)."""

    customer_id: str
    released_by: UserRef
    message: str
    reason: Literal["released", "wrap_up_timer"] = Field(
        default="released",
        description="released: someone ended it (a supervisor, a bulk job); wrap_up_timer: the "
        "assignment's wrap-up time ran out",
    )


@event("selected.changed")
class SelectedChanged(SelectionRow):
    """To watching supervisors: the row's fields, and the same row under `row`."""

    op: Literal["selected", "released"]
    row: SelectionRow


@event("presence.changed")
class PresenceChanged(BaseModel):
    """To watching supervisors: a user's presence changed."""

    user_id: str
    online: bool
    state: Literal["offline", "available", "working", "paused", "wrap_up", "talking"]
    customer_id: str | None = Field(default=None, description="the customer it holds, if any")


@event("resync")
class Resync(BaseModel):
    """The events after the client's last seq are gone: reload the state. Its seq is the
    user's last; it is not kept in the stream."""

    reason: str


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


def overview_row(
    live: dict[str, Any], user_name: str, customer_name: str, online: bool
) -> dict[str, Any]:
    """A SelectionRow on the wire, from a live-list row (presence.selections, Selection.row).
    Built as a plain dict: the overview answers thousands of them at once."""
    return {
        "user_id": str(live["user_id"]),
        "user_name": user_name,
        "online": online,
        "customer_id": str(live["customer_id"]),
        "customer_name": customer_name,
        "assignment_id": _id(live["assignment_id"]),
        "segment_id": _id(live["segment_id"]),
        "selected_at": iso_ms(live["since"]),
    }


async def _names(services: Services, owner: int, user_id: int, customer_id: int) -> tuple[str, str]:
    """The holder's and the customer's names, in one round trip."""
    query = select(
        select(t.users.c.name).where(t.users.c.id == user_id).scalar_subquery(),
        select(t.customers.c.name)
        .where(t.customers.c.id == customer_id, t.customers.c.data_owner_id == owner)
        .scalar_subquery(),
    )
    async with services.reads.connect() as conn:
        user_name, customer_name = (await conn.execute(query)).one()
    return user_name or "", customer_name or ""


async def refreshed_row(
    services: Services,
    owner: int,
    live: dict[str, Any],
    names: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Refresh the holder's presence (working <-> available; its presence.changed goes out
    first) and read the names meanwhile (``names``: the holder's and the customer's, when the
    caller knows them); the overview row, with the holder's online flag as the refresh found
    it."""
    if names is None:
        state, names = await asyncio.gather(
            services.presence.refresh(owner, live["user_id"]),
            _names(services, owner, live["user_id"], live["customer_id"]),
        )
    else:
        state = await services.presence.refresh(owner, live["user_id"])
    return overview_row(live, names[0], names[1], state != "offline")


async def selection_made(
    services: Services, selection: Selection, names: tuple[str, str] | None = None
) -> None:
    """After any select or claim: supervisors see the new row, the holder shows `working`.
    ``names``: the holder's and the customer's, when the caller has them at hand."""
    row = await refreshed_row(services, selection.owner, selection.row(), names)
    services.names.remember(selection, (row["user_name"], row["customer_name"]))
    await _changed(services, selection.owner, "selected", row)


async def selection_released(
    services: Services, released: Released, by: User, *, started_ms: int | None = None
) -> None:
    """After any release: kick the former holder when someone else released it (rule 8),
    then tell the supervisors and refresh the holder's presence."""
    owner = released.owner
    if released.by_someone_else:
        revoked = SelectionRevoked(
            customer_id=str(released.customer_id),
            released_by=UserRef(id=str(by.id), name=by.name),
            message=f"{by.name} released this customer; your unsaved input is gone.",
        )
        await services.events.to_users(
            owner,
            [released.user_id],
            "selection.revoked",
            revoked.model_dump(mode="json"),
            started_ms=started_ms,
        )
    live = {
        "user_id": released.user_id,
        "customer_id": released.customer_id,
        "assignment_id": released.assignment_id,
        "segment_id": released.segment_id,
        "since": released.since,
    }
    row = await refreshed_row(services, owner, live, services.names.forget(released))
    await _changed(services, owner, "released", row)


async def _changed(services: Services, owner: int, op: str, row: dict[str, Any]) -> None:
    """selected.changed to the watchers: serialized once, whatever their number."""
    await services.events.to_watchers(owner, "selected.changed", {"op": op, **row, "row": row})
