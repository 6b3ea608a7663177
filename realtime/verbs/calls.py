"""The softphone over the wire: the agent calls the customer on screen, hangs up, reads its
dialing state. Progressive and predictive lists call by themselves (realtime/dialing.py tells
the agent); these verbs are the agent's own hand on the phone.

Every call goes through this node's dialer (``services.calls``), so the talk and wrap-up
timers of the assignment setup run the same whoever started the call, and busy or no answer
registers the attempt by itself (rule 13).
"""

from __future__ import annotations

from typing import Any, Literal

from dialer.dial_modes import Target
from domain.db import dnc
from domain.db import repositories as repo
from domain.errors import NotFound
from realtime.connection import Context
from realtime.dialing import dialing_data
from realtime.protocol import Request, WireId, verb


class CallDial(Request):
    type: Literal["call.dial"]
    customer_id: WireId
    selection_token: WireId


class CallHangUp(Request):
    type: Literal["call.hang_up"]


class CallState(Request):
    type: Literal["call.state"]


@verb(CallDial)
async def call_dial(ctx: Context, request: CallDial) -> dict[str, Any]:
    """Calls the customer the agent holds in list work (preview; or again, after a call). The
    first of its numbers not on the do-not-call list is dialed; `do_not_call` when every one
    is. Progress follows as `call.state` and `dialing.changed` events."""
    services, user = ctx.services, ctx.user
    customer_id, token = int(request.customer_id), int(request.selection_token)
    selection, work = await services.work.held_in_list(user, customer_id, token)
    async with services.engine.connect() as conn:
        customer = await repo.get_customer(conn, ctx.owner, customer_id)
        if customer is None:
            raise NotFound("no such customer")
        number = await dnc.number_to_call(conn, ctx.owner, customer.phones)
    target = Target(ctx.owner, customer_id, user.id, token, int(selection.assignment_id or 0))
    call_id = await services.calls.dial_held(user, work, target, number)
    snapshot = services.calls.snapshot(ctx.owner, user.id)
    return {"call_id": call_id, "dialing": dialing_data(snapshot)}


@verb(CallHangUp)
async def call_hang_up(ctx: Context, _request: CallHangUp) -> dict[str, Any]:
    """Ends the agent's call: a talk goes on to wrap-up; a call still ringing counts as not
    answered (rule 13). Without a call it does nothing."""
    services = ctx.services
    if services.calls.snapshot(ctx.owner, ctx.user.id).call_id is not None:
        await services.calls.hang_up(ctx.user)
    return {"dialing": dialing_data(services.calls.snapshot(ctx.owner, ctx.user.id))}


@verb(CallState)
async def call_state(ctx: Context, _request: CallState) -> dict[str, Any]:
    """The agent's dialing state and running timer on this node (after a reload)."""
    return {"dialing": dialing_data(ctx.services.calls.snapshot(ctx.owner, ctx.user.id))}
