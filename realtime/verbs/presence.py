"""Presence verbs: an agent sets its state; a supervisor watches everyone's."""

from __future__ import annotations

from typing import Any, Literal

from domain.db import repositories as repo
from domain.model import Role
from presence.agents import epoch_ms
from realtime.connection import Context
from realtime.protocol import Request, verb

SUPERVISORS = (Role.SUPERVISOR, Role.ADMIN)


class PresenceSet(Request):
    type: Literal["presence.set"]
    state: Literal["available", "paused", "wrap_up"]


class PresenceWatch(Request):
    type: Literal["presence.watch"]


@verb(PresenceSet)
async def presence_set(ctx: Context, request: PresenceSet) -> dict[str, Any]:
    """Sets the agent's own state; answers the state supervisors now see (`working` while it
    holds a customer and is neither paused nor in wrap-up)."""
    state = await ctx.services.presence.set_state(ctx.owner, ctx.user.id, request.state)
    if request.state in ("available", "paused"):
        # In a dialed list, a pause holds back the next customer until the agent is back.
        await ctx.services.calls.agent_paused(ctx.owner, ctx.user.id, request.state == "paused")
    return {"state": state}


@verb(PresenceWatch, roles=SUPERVISORS)
async def presence_watch(ctx: Context, _request: PresenceWatch) -> dict[str, Any]:
    """Answers every user of the data owner with its presence, then `presence.changed`
    events follow on this connection."""
    services, owner = ctx.services, ctx.owner
    # Watch first, then read: a change in between arrives as an event, never goes missing.
    ctx.connection.watching["presence"] = None
    timeout_ms = int(services.settings.presence_timeout_seconds * 1000)
    await services.events.watch(owner, ctx.user.id, epoch_ms() + timeout_ms)
    shown = await services.presence.snapshot(owner)
    async with services.engine.connect() as conn:
        users = await repo.list_users(conn, owner)
    rows = []
    for user in users:
        if not user.active:
            continue
        now = shown.get(user.id)
        row = {
            "user_id": str(user.id),
            "name": user.name,
            "role": user.role.value,
            "online": bool(now and now.online),
            "state": now.state if now else "offline",
        }
        if now and now.customer_id is not None:
            row["customer_id"] = str(now.customer_id)
        rows.append(row)
    return {"users": rows}
