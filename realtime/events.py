"""The events a selection change sends, from one place every verb that selects or releases uses.

`selection_made` and `selection_released` publish `selected.changed` to the owner's watching
supervisors and refresh the holder's presence (working <-> available); a release by someone else
also sends `selection.revoked` to every connection of the former holder (rule 8), first, since
that is the one an agent waits on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.db import repositories as repo
from domain.model import User
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
    state: Literal["offline", "available", "working", "paused", "wrap_up"]
    customer_id: str | None = Field(default=None, description="the customer it holds, if any")


@event("resync")
class Resync(BaseModel):
    """The events after the client's last seq are gone: reload the state. Its seq is the
    user's last; it is not kept in the stream."""

    reason: str


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


async def selection_row(
    services: Services,
    owner: int,
    *,
    user_id: int,
    customer_id: int,
    assignment_id: int | None,
    segment_id: int | None,
    since: int,
) -> SelectionRow:
    """The overview row of one selection, with the names and the holder's online flag."""
    async with services.engine.connect() as conn:
        user = await repo.get_user(conn, user_id)
        customer = await repo.get_customer(conn, owner, customer_id)
    shown = await services.presence.shown(owner, user_id)
    return SelectionRow(
        user_id=str(user_id),
        user_name=user.name if user else "",
        online=shown.online,
        customer_id=str(customer_id),
        customer_name=customer.name if customer else "",
        assignment_id=_id(assignment_id),
        segment_id=_id(segment_id),
        selected_at=iso_ms(since),
    )


async def selection_made(services: Services, selection: Selection) -> None:
    """After any select or claim: supervisors see the new row, the holder shows `working`."""
    owner = selection.owner
    await services.presence.refresh(owner, selection.user_id)
    row = await selection_row(
        services,
        owner,
        user_id=selection.user_id,
        customer_id=selection.customer_id,
        assignment_id=selection.assignment_id,
        segment_id=selection.segment_id,
        since=selection.since,
    )
    await _changed(services, owner, "selected", row)


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
    await services.presence.refresh(owner, released.user_id)
    row = await selection_row(
        services,
        owner,
        user_id=released.user_id,
        customer_id=released.customer_id,
        assignment_id=released.assignment_id,
        segment_id=released.segment_id,
        since=released.since,
    )
    await _changed(services, owner, "released", row)


async def _changed(services: Services, owner: int, op: str, row: SelectionRow) -> None:
    data: dict[str, Any] = {"op": op, **row.model_dump(mode="json"), "row": row.model_dump()}
    await services.events.to_watchers(owner, "selected.changed", data)
