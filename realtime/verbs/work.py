"""The agent's work loop over the wire (rules 4-18): start list work, select, attempt, save,
edit fields, My Work and customer details. Each step answers with the customer screen to show
(null: back to My Work) and tells watching supervisors what it selected and released.

Writes are idempotent per request id: a request retried after a reconnect (same user, same
id) is applied once and answered with the first answer (docs/protocol.md, "Retries").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from dialer.work_loop import Step
from domain.db import repositories as repo
from domain.db import screens
from domain.errors import DomainError, NotFound
from domain.model import AttemptKind, NextAction
from domain.times import iso
from presence.keys import owner_prefix
from presence.selections import Selection
from presence.service import to_datetime
from realtime.connection import Context
from realtime.events import selection_made, selection_released
from realtime.protocol import Request, WireId, verb

NextChoice = Literal["next_from_list", "my_work", "continue"]

DONE_TTL_S = 15 * 60
"""How long an answer is kept for a retry of the same request."""
PENDING_TTL_S = 60
RETRY_WAIT_S = 10.0


class WorkStart(Request):
    type: Literal["work.start"]
    assignment_id: WireId
    segment_ids: list[WireId] = Field(
        default_factory=list, max_length=200, description="empty: every segment of the list"
    )


class CustomerSelect(Request):
    type: Literal["customer.select"]
    customer_id: WireId


class CustomerAttempt(Request):
    type: Literal["customer.attempt"]
    customer_id: WireId
    selection_token: WireId
    kind: Literal["no_answer", "call_back_later"]
    at: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with offset; required for call_back_later"
    )
    next: NextChoice | None = Field(default=None, description="omitted: the mode's default")


class CustomerSave(Request):
    type: Literal["customer.save"]
    customer_id: WireId
    selection_token: WireId
    outcome_id: str = Field(min_length=1, max_length=100)
    details: dict[str, Any] = Field(default_factory=dict)
    follow_up_at: AwareDatetime | None = Field(
        default=None, description="when the outcome makes a follow-up (rule 15)"
    )
    next: NextChoice | None = Field(default=None, description="omitted: the mode's default")


class CustomerEdit(Request):
    type: Literal["customer.edit"]
    customer_id: WireId
    selection_token: WireId
    info: dict[str, Any] = Field(description="info field key -> new value (null clears)")


class CustomerGet(Request):
    type: Literal["customer.get"]
    customer_id: WireId


class MyWorkGet(Request):
    type: Literal["my_work.get"]


class WorkResume(Request):
    type: Literal["work.resume"]


# Idempotency ---------------------------------------------------------------------------------


def _request_key(ctx: Context, request: Request) -> str:
    return f"{owner_prefix(ctx.owner)}req:{ctx.user.id}:{request.type}:{request.id}"


async def once(
    ctx: Context, request: Request, run: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run a write once per (user, verb, request id); a retry gets the first answer (or error)."""
    redis = ctx.services.redis
    key = _request_key(ctx, request)
    if not await redis.set(key, "pending", nx=True, ex=PENDING_TTL_S):
        for _ in range(int(RETRY_WAIT_S / 0.05)):
            stored = await redis.get(key)
            if stored is None:
                break  # the first try vanished (its node died): run it now
            if stored != "pending":
                answer = json.loads(stored)
                if "error" in answer:
                    raise StoredError(answer["error"])
                return answer["data"]
            await asyncio.sleep(0.05)
        await redis.set(key, "pending", ex=PENDING_TTL_S)
    try:
        data = await run()
    except DomainError as error:
        body = {"code": error.code, "message": error.message, **error.details}
        await redis.set(key, json.dumps({"error": body}, default=str), ex=DONE_TTL_S)
        raise
    except BaseException:
        await redis.delete(key)  # not answered: a retry runs it again
        raise
    await redis.set(key, json.dumps({"data": data}, default=str), ex=DONE_TTL_S)
    return data


class StoredError(DomainError):
    """The first answer of a retried request was this error: answer it again."""

    def __init__(self, body: dict[str, Any]) -> None:
        details = {k: v for k, v in body.items() if k not in ("code", "message")}
        super().__init__(str(body.get("message", "")), **details)
        self.code = str(body.get("code", "internal"))


async def publish(ctx: Context, step: Step) -> dict[str, Any]:
    """Tell supervisors what the step released and selected, in that order; answer its screen."""
    await announce(ctx, step)
    return step.reply()


async def announce(ctx: Context, step: Step, names: tuple[str, str] | None = None) -> None:
    """Tell supervisors what the step released and selected, in that order. ``names``: the
    holder's and the customer's of its selection, when the step has no screen yet."""
    for released in step.released:
        await selection_released(ctx.services, released, ctx.user)
    for selection in step.selected:
        await selection_made(
            ctx.services, selection, names or _names_on_screen(ctx, step, selection)
        )


def _names_on_screen(ctx: Context, step: Step, selection: Selection) -> tuple[str, str] | None:
    """The holder's and the customer's names when the step's screen shows that customer to
    its holder (the overview row then needs no look-up); None: read them."""
    customer = (step.screen or {}).get("customer") or {}
    if selection.user_id != ctx.user.id or customer.get("id") != str(selection.customer_id):
        return None
    return ctx.user.name, customer.get("name") or ""


def _next(choice: str | None) -> NextAction | None:
    return None if choice is None else NextAction(choice)


# Verbs ----------------------------------------------------------------------------------------


@verb(WorkStart)
async def work_start(ctx: Context, request: WorkStart) -> dict[str, Any]:
    """List work (rule 10): the next right customer of the assignment's list (one segment,
    several, or all), selected by this user; `screen` null when nobody is free. A user who
    still holds a customer of this list gets it back (rule 9)."""

    async def run() -> dict[str, Any]:
        step = await ctx.services.work.start(
            ctx.user, int(request.assignment_id), [int(s) for s in request.segment_ids]
        )
        return await publish(ctx, step)

    return await once(ctx, request, run)


@verb(CustomerSelect)
async def customer_select(ctx: Context, request: CustomerSelect) -> dict[str, Any]:
    """Manual selection from customer details (rules 4, 6): `already_selected` names who holds
    it and since when; `user_has_selection` names the customer the user still holds."""

    async def run() -> dict[str, Any]:
        work = ctx.services.work
        selection, customer = await work.take(ctx.user, int(request.customer_id))
        step = Step(selected=[] if selection.resumed else [selection])
        # Supervisors see the new row while the agent's screen is read: it needs nothing of it.
        step.screen, _ = await asyncio.gather(
            work.screen(ctx.user, selection), announce(ctx, step, (ctx.user.name, customer.name))
        )
        return step.reply()

    return await once(ctx, request, run)


@verb(CustomerAttempt)
async def customer_attempt(ctx: Context, request: CustomerAttempt) -> dict[str, Any]:
    """An attempt (rules 13, 14): `no_answer`, or `call_back_later` at `at` (a shared follow-up
    on an available customer, a personal one otherwise); then `next` (rule 17)."""

    async def run() -> dict[str, Any]:
        step = await ctx.services.work.attempt(
            ctx.user,
            int(request.customer_id),
            int(request.selection_token),
            AttemptKind(request.kind),
            at=request.at,
            next_action=_next(request.next),
        )
        return await publish(ctx, step)

    return await once(ctx, request, run)


@verb(CustomerSave)
async def customer_save(ctx: Context, request: CustomerSave) -> dict[str, Any]:
    """An outcome valid from the customer's status (rule 18) with its details, and the
    follow-up its flow asks for (rule 15); then `next` (rule 17)."""

    async def run() -> dict[str, Any]:
        step = await ctx.services.work.save(
            ctx.user,
            int(request.customer_id),
            int(request.selection_token),
            request.outcome_id,
            request.details,
            follow_up_at=request.follow_up_at,
            next_action=_next(request.next),
        )
        return await publish(ctx, step)

    return await once(ctx, request, run)


@verb(CustomerEdit)
async def customer_edit(ctx: Context, request: CustomerEdit) -> dict[str, Any]:
    """The holder edits CRM info fields (rule 5); answers the customer's info after the edit."""

    async def run() -> dict[str, Any]:
        info = await ctx.services.work.edit(
            ctx.user, int(request.customer_id), int(request.selection_token), request.info
        )
        return {"info": json.loads(json.dumps(info, default=_iso))}

    return await once(ctx, request, run)


@verb(CustomerGet)
async def customer_get(ctx: Context, request: CustomerGet) -> dict[str, Any]:
    """Customer details: card, status and history; `held_by` (who and since when) when
    someone else holds it, instead of a select action (rule 6)."""
    services, owner = ctx.services, ctx.owner
    async with services.reads.connect() as conn:
        customer, details = await screens.customer_details(conn, owner, int(request.customer_id))
        visible = await repo.visible_assignment_ids(conn, ctx.user)
        if customer.assignment_id not in visible and not ctx.user.supervises:
            raise NotFound("no such customer")
        held = await services.selections.when_ready(
            owner, lambda: services.selections.store.holder(owner, customer.id)
        )
        holder_name = None
        if held is not None:
            holder_name = (await screens.user_names(conn, [held.user_id])).get(held.user_id)
    details["held_by"] = (
        None
        if held is None
        else {
            "user_id": str(held.user_id),
            "user_name": holder_name,
            "since": iso(to_datetime(held.since)),
            "mine": held.user_id == ctx.user.id,
        }
    )
    details["can_select"] = held is None
    details["can_release"] = held is not None and (
        held.user_id == ctx.user.id or ctx.user.supervises
    )
    return details


@verb(MyWorkGet)
async def my_work_get(ctx: Context, _request: MyWorkGet) -> dict[str, Any]:
    """My Work (rule 16): today's follow-ups (mine / shared), overdue ones, and the lists
    with available customers to start."""
    return await ctx.services.work.my_work(ctx.user)


@verb(WorkResume)
async def work_resume(ctx: Context, _request: WorkResume) -> dict[str, Any]:
    """The screen of the customer the user still holds (rule 9), or null."""
    return (await ctx.services.work.resume(ctx.user)).reply()


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return str(value)
