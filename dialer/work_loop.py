"""The agent's work loop (rules 7, 9-18): start list work, select by hand, attempt, save, and
where to go next, each answered with the customer screen to show (or none: back to My Work).

Every write is a holder's write through the database fence (domain.db.fencing), so a screen
whose selection ended is refused with `selection_lost` and nothing of it is applied. What a
step selected and released is returned with it, for the realtime layer to tell supervisors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.next_customer import NextCustomer
from domain.db import fencing, screens
from domain.db import repositories as repo
from domain.db.engine import reads
from domain.db.outcomes import Outcomes
from domain.errors import Forbidden, Invalid, NotFound, SelectionLost, UserHasSelection
from domain.model import (
    Assignment,
    AttemptKind,
    Customer,
    DialMode,
    FollowUpKind,
    NextAction,
    User,
    WorkMode,
)
from domain.next_actions import check_next
from presence.keys import owner_prefix
from presence.selections import Released, Selection
from presence.service import SelectionService, to_datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Step:
    """What a work-loop call did: the screen to show now (None: My Work), and the selections it
    made and ended on the way (for `selected.changed`)."""

    screen: dict[str, Any] | None = None
    selected: list[Selection] = field(default_factory=list)
    released: list[Released] = field(default_factory=list)
    dialing: dict[str, Any] | None = None
    """The agent's dialing state when the dialer works for it (progressive, predictive):
    with no screen, ``available`` means "waiting for the next call", not My Work."""

    def reply(self) -> dict[str, Any]:
        if self.dialing is None:
            return {"screen": self.screen}
        return {"screen": self.screen, "dialing": self.dialing}


@dataclass(frozen=True)
class WorkList:
    """The list an agent works: an assignment and a set of its segments (empty: all)."""

    assignment_id: int
    segment_ids: tuple[int, ...] = ()


class Dialing(Protocol):
    """What the work loop asks of the dialer (``dialer.dial_modes.Dialer``)."""

    async def agent_ready(self, user: User, work: WorkList) -> Any: ...

    async def agent_stopped(self, user: User) -> None: ...

    def snapshot(self, owner: int, user_id: int) -> Any: ...

    def seated(self, owner: int, user_id: int) -> bool: ...


def work_list_key(owner: int, user_id: int) -> str:
    """String: the list the user works (JSON), so "next from list" knows where to go on."""
    return f"{owner_prefix(owner)}worklist:{int(user_id)}"


class WorkLoop:
    """One process's work loop over the selection service and the dialer."""

    def __init__(
        self,
        engine: AsyncEngine,
        selections: SelectionService,
        dialer: NextCustomer,
        *,
        clock: Clock = utc_now,
        calls: Dialing | None = None,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.engine = engine
        self.outcomes = outcomes or Outcomes(engine)
        self.reads = reads(engine)
        """For blocks that only read (domain.db.engine.reads)."""
        self.selections = selections
        self.dialer = dialer
        self.redis = selections.store.redis
        self.clock = clock
        self.calls = calls
        """The node's dialer: progressive and predictive lists are handed out through it."""

    # Rule 10: list work ------------------------------------------------------------------

    async def start(
        self, user: User, assignment_id: int, segment_ids: Collection[int] = ()
    ) -> Step:
        """work.start: the next right customer of the list, selected. A user who already holds
        a customer of this list gets it back (rule 9); one holding another is refused."""
        owner = user.data_owner_id
        assignment = await self._visible_assignment(user, assignment_id)
        segments = tuple(sorted({int(s) for s in segment_ids}))
        known = {s.id for s in assignment.segments}
        unknown = [s for s in segments if s not in known]
        if unknown:
            raise NotFound(f"no such segment in this assignment: {unknown[0]}")
        current = await self.selections.current(owner, user.id)
        if current is not None:
            if current.mode is WorkMode.LIST and current.assignment_id == assignment.id:
                await self._remember(owner, user.id, WorkList(assignment.id, segments))
                return Step(await self.screen(user, current))
            raise UserHasSelection(current.customer_id)
        work = WorkList(assignment.id, segments)
        await self._remember(owner, user.id, work)
        if self._dialed(assignment):
            return await self._ready(user, work)
        return await self._claim(user, work)

    def _dialed(self, assignment: Assignment) -> bool:
        """Progressive and predictive lists: the dialer hands out (and calls) customers."""
        return self.calls is not None and assignment.setup.dial_mode is not DialMode.PREVIEW

    async def _ready(self, user: User, work: WorkList, step: Step | None = None) -> Step:
        """The agent is ready for the next customer of a dialed list: progressive pushes (and
        calls) one now, predictive when an answered call comes in; both arrive as events too."""
        assert self.calls is not None
        step = step or Step()
        snapshot = await self.calls.agent_ready(user, work)
        # The dialer's selections are told to supervisors as it makes them.
        current = await self.selections.current(user.data_owner_id, user.id)
        if current is not None:
            step.screen = await self.screen(user, current)
        step.dialing = snapshot.wire()
        return step

    async def _claim(self, user: User, work: WorkList, step: Step | None = None) -> Step:
        step = step or Step()
        selection = await self.dialer.claim(
            user.data_owner_id, user.id, work.assignment_id, work.segment_ids or None
        )
        if selection is not None:
            step.selected.append(selection)
            step.screen = await self.screen(user, selection)
        return step

    # Rules 4, 6, 9: manual selection -------------------------------------------------------

    async def select(self, user: User, customer_id: int) -> Step:
        """customer.select: select a customer by hand (from customer details)."""
        selection, _customer = await self.take(user, customer_id)
        step = Step(await self.screen(user, selection))
        if not selection.resumed:
            step.selected.append(selection)
        return step

    async def take(self, user: User, customer_id: int) -> tuple[Selection, Customer]:
        """customer.select without its screen: the selection (``resumed`` when the user held
        it already) and the customer's row as read before it was taken. The caller reads the
        screen (``screen``) while it tells supervisors, who need nothing from the screen."""
        owner = user.data_owner_id
        async with self.reads.connect() as conn:
            customer = await repo.get_customer(conn, owner, customer_id)
            if customer is None:
                raise NotFound("no such customer")  # also another data owner's (rule 3)
            visible = await self._visible_ids(conn, user)
        if customer.assignment_id is None or customer.assignment_id not in visible:
            raise Forbidden("the customer is in an assignment you do not work on")
        selection = await self.selections.select(owner, user.id, customer_id, customer=customer)
        return selection, customer

    # Rules 13, 14, 17: attempts ------------------------------------------------------------

    async def attempt(
        self,
        user: User,
        customer_id: int,
        token: int,
        kind: AttemptKind,
        *,
        at: datetime | None = None,
        next_action: NextAction | None = None,
    ) -> Step:
        """customer.attempt: `no_answer`, or `call_back_later` at a time; then go next."""
        if kind is AttemptKind.NO_ANSWER and at is not None:
            raise Invalid("no follow-up time can be given with no_answer")
        if kind is AttemptKind.CALL_BACK_LATER and at is None:
            raise Invalid("call_back_later needs a time (at)")
        selection = await self._held(user, customer_id, token)
        choice = check_next(selection.mode, next_action)
        async with self.engine.begin() as conn:
            await fencing.record_attempt(
                conn,
                fencing.Holding(customer_id, user.id, token),
                kind,
                self.clock(),
                call_back_at=at,
            )
        if at is not None and selection.assignment_id is not None:
            # Shared on an available customer (rule 14): first in the list once due (rule 11).
            await self.dialer.note_due(
                user.data_owner_id, int(selection.assignment_id), customer_id, at
            )
        return await self._go_next(user, selection, choice)

    # Rules 15, 17, 18: outcomes ------------------------------------------------------------

    async def save(
        self,
        user: User,
        customer_id: int,
        token: int,
        outcome_id: str,
        details: Mapping[str, Any],
        *,
        follow_up_at: datetime | None = None,
        next_action: NextAction | None = None,
    ) -> Step:
        """customer.save: the outcome with its details (and follow-up); then go next."""
        selection = await self._held(user, customer_id, token)
        choice = check_next(selection.mode, next_action)
        ask = fencing.OutcomeAsk(
            fencing.Holding(customer_id, user.id, token),
            outcome_id,
            details,
            self.clock(),
            follow_up_at,
        )
        work = await self._moving_on_in(user, selection, choice)
        if work is None:
            # Rules 15, 18, 23: the outcome, its follow-ups and its SMS in one transaction,
            # shared with the other agents saving at this moment (domain.db.outcomes).
            result = await self.outcomes.save(ask)
            await self._note_follow_up(user, result)
            return await self._go_next(user, selection, choice)
        # Next from a preview list: the outcome, the release and the next claim in one
        # transaction, shared with the agents saving or moving on at this moment.
        result, moved = await self.dialer.save_and_move_on(
            selection, ask, work.assignment_id, work.segment_ids or None
        )
        await self._note_follow_up(user, result)
        if isinstance(moved, SelectionLost):
            raise moved
        return await self._moved_on(user, *moved)

    async def _note_follow_up(self, user: User, result: fencing.OutcomeResult) -> None:
        """A shared follow-up the outcome made goes first in its list once due (rule 11)."""
        made = result.follow_up
        if made is not None and made.kind is FollowUpKind.SHARED:
            await self.dialer.note_due(
                user.data_owner_id, result.assignment_id, result.customer_id, made.due_at
            )

    async def edit(
        self, user: User, customer_id: int, token: int, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """customer.edit: the holder changes CRM info fields (rule 5). Returns the new info."""
        await self._held(user, customer_id, token)
        async with self.engine.begin() as conn:
            return await fencing.edit_info_fields(
                conn, fencing.Holding(customer_id, user.id, token), values, self.clock()
            )

    # Rule 7: stop --------------------------------------------------------------------------

    async def stop(self, user: User) -> Step:
        """work.stop: release what the user holds and leave list work."""
        step = Step()
        released = await self.selections.release_user(user.data_owner_id, user.id)
        if released is not None:
            step.released.append(released)
        await self._forget(user.data_owner_id, user.id)
        if self.calls is not None:
            await self.calls.agent_stopped(user)  # its call ends, its timers stop
        return step

    async def resume(self, user: User) -> Step:
        """Rule 9: the screen of what the user still holds (after a reload or reconnect)."""
        current = await self.selections.current(user.data_owner_id, user.id)
        return Step(None if current is None else await self.screen(user, current))

    async def my_work(self, user: User) -> dict[str, Any]:
        """Rule 16: My Work for the user."""
        async with self.reads.connect() as conn:
            owner = await repo.get_data_owner(conn, user.data_owner_id)
            visible = await repo.visible_assignments(conn, user)
            view = await screens.my_work_view(
                conn,
                user,
                visible,
                owner.timezone if owner else "Europe/Oslo",
                self.clock(),
            )
        for row in view["lists"]:
            row["id"] = str(row["id"])
            row["segments"] = [{"id": str(s["id"]), "name": s["name"]} for s in row["segments"]]
        return view

    # Helpers ----------------------------------------------------------------------------------

    async def _go_next(self, user: User, selection: Selection, choice: NextAction) -> Step:
        """Rule 17 after a write that passed the fence."""
        owner = user.data_owner_id
        if choice is NextAction.CONTINUE:
            return Step(await self.screen(user, selection))
        step = Step()
        if choice is NextAction.MY_WORK:
            released = await self.selections.release(
                owner, selection.customer_id, user.id, token=selection.token
            )
            if released is not None:
                step.released.append(released)
            await self._forget(owner, user.id)  # ends list work (and predictive dialing)
            if self.calls is not None:
                await self.calls.agent_stopped(user)  # rule 17: and stops running timers
            return step
        work = await self._work_list(owner, user.id) or WorkList(int(selection.assignment_id or 0))
        assignment, _crm = await self.dialer.list_of(owner, work.assignment_id)
        if self._dialed(assignment):
            released = await self.selections.release(
                owner, selection.customer_id, user.id, token=selection.token
            )
            if released is not None:
                step.released.append(released)
            await self._remember(owner, user.id, work)
            return await self._ready(user, work, step)
        if self.calls is not None:
            await self.calls.agent_stopped(user)  # preview: a call of the saved customer ends
        # The release and the next claim go together (one transaction on the hot path).
        released, claimed = await self.dialer.move_on(
            owner, user.id, work.assignment_id, work.segment_ids or None, expected=selection
        )
        return await self._moved_on(user, released, claimed)

    async def _moving_on_in(
        self, user: User, selection: Selection, choice: NextAction
    ) -> WorkList | None:
        """The preview list a save goes on in with its outcome in the move on's transaction
        (``NextCustomer.save_and_move_on``); None: it goes next the usual way, after the
        outcome (My Work, continue, a dialed list, or an agent on a dialer seat, whose call
        of the saved customer ends before it moves on)."""
        if choice is not NextAction.NEXT_FROM_LIST:
            return None
        owner = user.data_owner_id
        if self.calls is not None and self.calls.seated(owner, user.id):
            return None
        work = await self._work_list(owner, user.id) or WorkList(int(selection.assignment_id or 0))
        assignment, _crm = await self.dialer.list_of(owner, work.assignment_id)
        return None if self._dialed(assignment) else work

    async def _moved_on(
        self, user: User, released: Released | None, claimed: Selection | None
    ) -> Step:
        step = Step()
        if released is not None:
            step.released.append(released)
        if claimed is not None:
            step.selected.append(claimed)
            step.screen = await self.screen(user, claimed)
        return step

    async def held_in_list(
        self, user: User, customer_id: int, token: int
    ) -> tuple[Selection, WorkList]:
        """A call is placed on the customer the user holds in list work: that selection and
        its list (selection_lost: not the live selection; invalid: not list work)."""
        selection = await self._held(user, customer_id, token)
        work = await self._work_list(user.data_owner_id, user.id)
        if selection.mode is not WorkMode.LIST or work is None:
            raise Invalid("calls are placed from list work")
        return selection, work

    async def _held(self, user: User, customer_id: int, token: int) -> Selection:
        """The user's live selection of this customer with this token, or selection_lost."""
        current = await self.selections.current(user.data_owner_id, user.id)
        if current is None or current.customer_id != customer_id or current.token != token:
            raise SelectionLost(customer_id, None if current is None else current.user_id)
        return current

    async def screen(self, user: User, selection: Selection) -> dict[str, Any]:
        """The customer screen of a selection, read now (after its lock was taken)."""
        async with self.reads.connect() as conn:
            customer = await repo.get_customer(conn, user.data_owner_id, selection.customer_id)
            if customer is None or customer.assignment_id is None:
                raise NotFound("no such customer")
            assignment, crm = await self.dialer.list_of(user.data_owner_id, customer.assignment_id)
            return await screens.customer_screen(
                conn,
                user,
                customer,
                assignment,
                token=selection.token,
                mode=selection.mode,
                since=to_datetime(selection.since),
                visible_assignment_ids=None,  # those the user may see, read with the panel
                now=self.clock(),
                crm=crm,
            )

    async def _visible_ids(self, conn: Any, user: User) -> set[int]:
        return await repo.visible_assignment_ids(conn, user)

    async def _visible_assignment(self, user: User, assignment_id: int) -> Assignment:
        async with self.reads.connect() as conn:
            if assignment_id not in await self._visible_ids(conn, user):
                raise NotFound("no such assignment")  # rule 3: also another owner's
        assignment, _crm = await self.dialer.list_of(user.data_owner_id, assignment_id)
        return assignment

    async def _remember(self, owner: int, user_id: int, work: WorkList) -> None:
        value = {"assignment_id": work.assignment_id, "segment_ids": list(work.segment_ids)}
        await self.redis.set(work_list_key(owner, user_id), json.dumps(value))

    async def _forget(self, owner: int, user_id: int) -> None:
        await self.redis.delete(work_list_key(owner, user_id))

    async def _work_list(self, owner: int, user_id: int) -> WorkList | None:
        raw = await self.redis.get(work_list_key(owner, user_id))
        if raw is None:
            return None
        value = json.loads(raw)
        return WorkList(int(value["assignment_id"]), tuple(value["segment_ids"]))

    async def in_list_work(self, owner: int, user_id: int) -> WorkList | None:
        """The list the user works now (predictive dialing dials only for such agents)."""
        return await self._work_list(owner, user_id)
