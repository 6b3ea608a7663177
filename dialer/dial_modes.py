"""Dial modes (preview, progressive, predictive) over a telephony port, with agent timers.

``Dialer`` is what the realtime layer drives: ``agent_ready`` when an agent in list work is
ready for the next customer (after start, after a save), ``call`` for preview, ``hang_up``,
``agent_stopped`` when list work ends; it calls ``listen``-ers back with ``DialerEvent``s.

- preview: the agent is handed the next right customer and calls when ready.
- progressive: the call starts as the customer is pushed to the agent.
- predictive: dialer lines (system users: see ``dialer.lines``) claim customers and call ahead
  for the list's agents at the pacer's rate; an answered call is handed over to the agent free
  longest and pushed to it; an answered call with no free agent within ``GRACE_SECONDS`` is
  abandoned: hung up, counted by the pacer, recorded.

Busy, no answer and failed calls register a ``no_answer`` attempt (rule 13) as the holder's
fenced write, whoever holds the customer (agent or line). Who may be called is the rule-4 lock:
a customer is dialed only by whoever holds its selection, so never twice at once. Where the
customers come from is the ``Customers`` port: the database and Redis (``dialer.lines``) on the
server, an in-memory list in the bench.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dialer.clock import Clock, Timer
from dialer.pacing import GRACE_SECONDS, Pacer, PacingSettings, Pool
from dialer.telephony import FINAL, CallEvent, CallEventKind, Telephony
from dialer.timers import AgentSnapshot, AgentState, AgentTimers
from dialer.work_loop import WorkList
from domain.errors import Invalid, SelectionLost
from domain.model import AssignmentSetup, DialMode, User

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
"""How often a list with agents in list work re-paces (besides every call event)."""
MAX_SKIPS = 20
"""Customers skipped per hand-out (no callable number, DNC) before giving up for now."""
MEMBERSHIP_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """A customer the dialer may call: held (rule 4) by ``holder_id`` with ``token``."""

    owner: int
    customer_id: int
    holder_id: int
    token: int
    assignment_id: int


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A finished call, for the call log. ``result``: answered, busy, no_answer, failed,
    abandoned or cancelled (hung up by the dialer before an answer)."""

    call_id: str
    owner: int
    assignment_id: int
    customer_id: int
    mode: DialMode
    number: str
    result: str
    dialed_at: datetime
    agent_id: int | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None


class Customers(Protocol):
    """Where the dialer gets customers and writes what calls did."""

    async def setup_of(self, owner: int, assignment_id: int) -> AssignmentSetup: ...

    async def enter_list_work(self, owner: int, agent_id: int, work: WorkList) -> None: ...

    async def in_list_work(self, owner: int, agent_id: int) -> bool: ...

    async def claim_for_agent(self, owner: int, agent_id: int, work: WorkList) -> Target | None: ...

    async def claim_for_line(self, owner: int, work: WorkList) -> Target | None: ...

    async def hand_over(self, target: Target, agent_id: int) -> Target | None: ...

    async def number_to_dial(self, target: Target) -> str | None: ...

    async def attempted(self, target: Target, at: datetime) -> None: ...

    async def release(self, target: Target) -> bool:
        """Let the customer go; False: the holder had lost it already (nothing released)."""
        ...

    async def call_ended(self, record: CallRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class DialerEvent:
    """What the realtime layer tells an agent: ``kind`` is pushed (a customer to show, with
    ``token``), agent (its state changed, ``agent``), call (progress), released (the dialer
    ended the agent's selection: a wrap-up timer ran out), list_empty, attempt, abandoned."""

    kind: str
    owner: int
    user_id: int | None
    customer_id: int | None = None
    token: int | None = None
    call_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    agent: AgentSnapshot | None = None


Listener = Callable[[DialerEvent], Awaitable[None]]


@dataclass(eq=False)
class Call:
    id: str
    group: Group
    target: Target
    number: str
    dialed_at: float
    seat: Seat | None = None
    answered_at: float | None = None
    grace: Timer | None = None
    ended: bool = False


@dataclass(eq=False)
class Seat:
    """An agent in list work on one list."""

    user: User
    group: Group
    timers: AgentTimers
    target: Target | None = None
    call: Call | None = None
    number: str | None = None
    ready_at: float = 0.0
    timer: Timer | None = None
    paused: bool = False
    """The agent set itself paused: no customer is pushed or connected to it until it is back
    (what it has on hand, a call or a wrap-up, runs its course)."""

    @property
    def free(self) -> bool:
        return self.timers.state is AgentState.AVAILABLE and not self.paused


@dataclass(eq=False)
class Group:
    """One list (assignment and segment set) and the agents working it."""

    owner: int
    work: WorkList
    setup: AssignmentSetup
    pacer: Pacer
    seats: dict[int, Seat] = field(default_factory=dict)
    ringing: dict[str, Call] = field(default_factory=dict)
    waiting: deque[Call] = field(default_factory=deque)
    tick: Timer | None = None
    pace_pending: bool = False
    checked_at: float = float("-inf")

    @property
    def mode(self) -> DialMode:
        return self.setup.dial_mode


class Dialer:
    """Dials for the agents in list work of every list of this node."""

    def __init__(
        self,
        customers: Customers,
        telephony: Telephony,
        clock: Clock,
        *,
        caller_id: str = "",
        pacing: PacingSettings | None = None,
    ) -> None:
        self.customers = customers
        self.telephony = telephony
        self.clock = clock
        self.caller_id = caller_id
        self.pacing = pacing or PacingSettings()
        self._groups: dict[tuple[int, WorkList], Group] = {}
        self._seats: dict[tuple[int, int], Seat] = {}
        self._calls: dict[str, Call] = {}
        self._listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        telephony.connect(self.handle)

    # The realtime layer's API ---------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def _seat_in(self, user: User, work: WorkList) -> tuple[Seat, bool]:
        """The agent's seat in the dialing of ``work`` (a seat in another list is given up
        first), and whether it was made just now."""
        owner = user.data_owner_id
        seat = self._seats.get((owner, user.id))
        if seat is not None and seat.group.work != work:
            await self.agent_stopped(user)
            seat = None
        if seat is not None:
            return seat, False
        group = await self._group(owner, work)
        seat = Seat(user, group, AgentTimers(user.id, group.setup, self.clock.now()))
        self._seats[(owner, user.id)] = seat
        group.seats[user.id] = seat
        return seat, True

    async def agent_ready(self, user: User, work: WorkList) -> AgentSnapshot:
        """The agent is in list work and ready for the next customer: whatever the dialer gave
        it before is let go (saved already), then the list's mode decides what comes next."""
        seat, new = await self._seat_in(user, work)
        if new:
            await self.customers.enter_list_work(user.data_owner_id, user.id, work)
        # Ready again while a call is still up: the agent saved during it, so it ends here.
        await self._end_call(seat)
        await self._let_go(seat)
        await self._available(seat)
        return seat.timers.snapshot(self.clock.now())

    async def dial_held(self, user: User, work: WorkList, target: Target, number: str) -> str:
        """Preview with the work loop's own hand-out: call the customer the agent already holds
        (``target``) on ``number`` (checked against the DNC list by the caller). Returns the
        call id; the talk and wrap-up timers follow as in every mode."""
        seat, _new = await self._seat_in(user, work)
        if seat.call is not None:
            raise Invalid("the agent is on a call")
        self._cancel_timer(seat)
        seat.target, seat.number = target, number
        seat.timers.previewing(self.clock.now(), target.customer_id)
        return await self._dial(seat.group, target, number, seat)

    def agents(self) -> list[tuple[int, int]]:
        """(owner, user id) of every agent this dialer works for."""
        return list(self._seats)

    async def close(self) -> None:
        """Shutdown: every agent leaves (ringing calls are hung up, nothing new is dialed)."""
        for seat in list(self._seats.values()):
            await self._drop(seat)
        for group in list(self._groups.values()):
            await self._stop_dialing(group)

    async def call(self, user: User) -> str:
        """Preview: call the customer the agent is looking at. Returns the call id."""
        seat = self._seat(user)
        if seat.timers.state is not AgentState.PREVIEWING or seat.target is None:
            raise Invalid("there is no previewed customer to call")
        if seat.number is None:
            raise Invalid("the customer has no number that may be called")
        return await self._dial(seat.group, seat.target, seat.number, seat)

    async def hang_up(self, user: User) -> None:
        """The agent ends its call; a talk ends in wrap-up."""
        seat = self._seat(user)
        if seat.call is not None:
            await self.telephony.hang_up(seat.call.id)

    async def agent_stopped(self, user: User) -> None:
        """List work ended (work.stop, or rule 17 "pick next from My Work"): no more calls for
        the agent, its timers stop, a call still ringing for it is hung up."""
        seat = self._seats.get((user.data_owner_id, user.id))
        if seat is not None:
            await self._end_call(seat)
            await self._drop(seat)

    async def agent_paused(self, owner: int, user_id: int, paused: bool) -> None:
        """The agent paused itself, or came back: a paused agent gets no new customer (no push,
        no answered call); what it has on hand goes on. Back and free, it gets the next one."""
        seat = self._seats.get((owner, user_id))
        if seat is None or seat.paused == paused:
            return
        seat.paused = paused
        if not paused and seat.free and seat.target is None and seat.call is None:
            await self._available(seat)
        elif seat.group.mode is DialMode.PREDICTIVE:
            self._pace_soon(seat.group)  # one agent fewer (or more) to dial for

    def is_paused(self, owner: int, user_id: int) -> bool:
        seat = self._seats.get((owner, user_id))
        return seat is not None and seat.paused

    async def selection_revoked(self, owner: int, user_id: int, customer_id: int) -> None:
        """Someone else ended the agent's selection of ``customer_id`` (rule 8): a call with that
        customer ends now and the agent leaves list work, as its screen does. A selection the
        agent no longer works on here changes nothing."""
        seat = self._seats.get((owner, user_id))
        if seat is None or seat.target is None or seat.target.customer_id != customer_id:
            return
        seat.target = None  # not the agent's any more: nothing of it is released again
        await self._end_call(seat)
        await self._drop(seat)

    def seated(self, owner: int, user_id: int) -> bool:
        """The agent works a list through the dialer here (a seat: its calls and timers)."""
        return (owner, user_id) in self._seats

    def snapshot(self, owner: int, user_id: int) -> AgentSnapshot:
        """The agent's dialing state and running timer, for the realtime layer to show."""
        seat = self._seats.get((owner, user_id))
        if seat is None:
            return AgentSnapshot(user_id, AgentState.OFF, self.clock.now())
        return seat.timers.snapshot(self.clock.now())

    def pacer(self, owner: int, work: WorkList) -> Pacer | None:
        group = self._groups.get((owner, work))
        return None if group is None else group.pacer

    def live_calls(self) -> int:
        return len(self._calls)

    # Telephony events ---------------------------------------------------------------------------

    async def handle(self, event: CallEvent) -> None:
        """The telephony port's handler: one call's progress."""
        call = self._calls.get(event.call_id)
        if call is None or call.ended:
            return  # a call the dialer already finished (hung up by us)
        now = self.clock.now()
        if event.kind is CallEventKind.RINGING:
            await self._emit_call(call, "ringing")
        elif event.kind is CallEventKind.ANSWERED:
            await self._answered(call, now)
        elif event.kind in FINAL:
            await self._not_reached(call, event.kind, now)
        elif event.kind is CallEventKind.HUNG_UP:
            await self._hung_up(call, now)

    async def _answered(self, call: Call, now: float) -> None:
        call.group.ringing.pop(call.id, None)
        call.answered_at = now
        call.group.pacer.answered(now, now - call.dialed_at)
        if call.seat is not None:  # preview, progressive: the agent is on it already
            self._talking(call.seat, call, now)
            await self._emit_call(call, "answered")
            return
        call.group.waiting.append(call)
        await self._connect_waiting(call.group)
        if call.seat is None and not call.ended:
            call.grace = self.clock.call_later(GRACE_SECONDS, lambda: self._grace_over(call))

    async def _not_reached(self, call: Call, kind: CallEventKind, now: float) -> None:
        """Busy, no answer, failed: rule 13, a no_answer attempt by whoever holds the customer."""
        group = call.group
        self._finish(call)
        group.pacer.not_answered(now, now - call.dialed_at)
        await self._attempt(call.target, now)
        await self._log(call, kind.value, now)
        seat = call.seat
        if seat is None:
            await self.customers.release(call.target)
            self._pace_soon(group)
            return
        seat.call = None
        await self._let_go(seat)
        await self._available(seat)

    async def _hung_up(self, call: Call, now: float) -> None:
        group = call.group
        if call.answered_at is None:
            self._finish(call)  # ended before an answer (not by us): as not reached
            group.pacer.not_answered(now, now - call.dialed_at)
            await self._attempt(call.target, now)
            await self._log(call, "no_answer", now)
            if call.seat is None:
                await self.customers.release(call.target)
            else:
                call.seat.call = None
                await self._let_go(call.seat)
                await self._available(call.seat)
            return
        if call.seat is None:  # the customer hung up while waiting for an agent
            await self._abandon(call, now, hang_up=False)
            return
        self._finish(call)
        group.pacer.talk_ended(now, now - call.answered_at)
        await self._log(call, "answered", now)
        seat = call.seat
        seat.call = None
        await self._emit_call(call, "hung_up")
        if seat.timers.state is AgentState.TALKING:
            self._wrap_up(seat, now)
            await self._emit_agent(seat)

    # Predictive: connect or abandon -------------------------------------------------------------

    async def _connect_waiting(self, group: Group) -> None:
        """Hand answered calls to free agents, the one free longest first (bounded by calls)."""
        for _ in range(len(group.waiting)):
            if not group.waiting:
                return
            seat = await self._free_seat(group)
            if seat is None:
                return
            call = group.waiting.popleft()
            if call.grace is not None:
                call.grace.cancel()
            target = await self.customers.hand_over(call.target, seat.user.id)
            if target is None:  # the line lost the customer meanwhile (a supervisor released it)
                await self._abandon(call, self.clock.now(), hang_up=True, counted=False)
                continue
            call.target, call.seat, seat.call, seat.target = target, seat, call, target
            self._talking(seat, call, self.clock.now())
            await self._emit_agent(seat)
            await self._emit(
                DialerEvent(
                    "pushed",
                    group.owner,
                    seat.user.id,
                    target.customer_id,
                    target.token,
                    call.id,
                    {"mode": group.mode.value, "answered": True},
                )
            )

    async def _free_seat(self, group: Group) -> Seat | None:
        free = sorted(
            (s for s in group.seats.values() if s.free),
            key=lambda s: s.ready_at,
        )
        for seat in free:
            # Rule 17: an agent who went to My Work is not in list work any more.
            if await self.customers.in_list_work(group.owner, seat.user.id):
                return seat
            await self._drop(seat)
        return None

    async def _grace_over(self, call: Call) -> None:
        if call.seat is None and not call.ended and call in call.group.waiting:
            await self._abandon(call, self.clock.now(), hang_up=True)

    async def _abandon(
        self, call: Call, now: float, *, hang_up: bool, counted: bool = True
    ) -> None:
        """An answered call no agent took: hang up, count it, register the attempt, record."""
        group = call.group
        with contextlib.suppress(ValueError):
            group.waiting.remove(call)
        self._finish(call)
        if counted:
            group.pacer.abandoned(now)
        if hang_up:
            await self.telephony.hang_up(call.id)
        await self._attempt(call.target, now)
        await self.customers.release(call.target)
        await self._log(call, "abandoned", now)
        await self._emit(
            DialerEvent("abandoned", group.owner, None, call.target.customer_id, call_id=call.id)
        )
        self._pace_soon(group)

    # Agents ---------------------------------------------------------------------------------------

    async def _available(self, seat: Seat) -> None:
        """The mode's next step for an agent with nothing on hand."""
        group = seat.group
        now = self.clock.now()
        if seat.timers.state is AgentState.WRAP_UP:
            group.pacer.wrap_up_ended(now, now - seat.timers.since)
        seat.timers.available(now)
        seat.ready_at = now
        self._cancel_timer(seat)
        if group.mode is DialMode.PREDICTIVE:
            await self._emit_agent(seat)
            await self._connect_waiting(group)
            self._pace_soon(group)
            return
        if seat.paused:
            await self._emit_agent(seat)  # the next customer waits until the agent is back
            return
        for _ in range(MAX_SKIPS):
            target = await self.customers.claim_for_agent(group.owner, seat.user.id, group.work)
            if target is None:
                # Nobody left to call: list work ends here, as it does for a preview list, so
                # the agent's state says "off" (a reload lands in My Work, not in waiting).
                await self._emit(DialerEvent("list_empty", group.owner, seat.user.id))
                await self._drop(seat)
                return
            number = await self.customers.number_to_dial(target)
            if number is None:  # no callable number (none, or all on the DNC list)
                await self.customers.release(target)
                continue
            seat.target, seat.number = target, number
            seat.timers.previewing(now, target.customer_id)
            await self._emit(
                DialerEvent(
                    "pushed",
                    group.owner,
                    seat.user.id,
                    target.customer_id,
                    target.token,
                    data={"mode": group.mode.value, "answered": False},
                )
            )
            if group.mode is DialMode.PROGRESSIVE:
                await self._dial(group, target, number, seat)
            else:
                await self._emit_agent(seat)
            return
        await self._emit_agent(seat)

    def _talking(self, seat: Seat, call: Call, now: float) -> None:
        epoch = seat.timers.talking(now, call.target.customer_id, call.id)
        self._cancel_timer(seat)
        deadline = seat.timers.deadline()
        if deadline is not None:
            seat.timer = self.clock.call_later(
                deadline - now, lambda: self._talk_timer_over(seat, epoch)
            )

    def _wrap_up(self, seat: Seat, now: float) -> None:
        epoch = seat.timers.wrap_up(now)
        self._cancel_timer(seat)
        deadline = seat.timers.deadline()
        if deadline is not None:
            seat.timer = self.clock.call_later(
                deadline - now, lambda: self._wrap_up_over(seat, epoch)
            )

    async def _talk_timer_over(self, seat: Seat, epoch: int) -> None:
        if seat.timers.epoch == epoch:
            await self._emit_agent(seat)  # the snapshot now says overrun

    async def _wrap_up_over(self, seat: Seat, epoch: int) -> None:
        """The wrap-up timer ran out: the agent is made available, and what it still holds
        from the dialer is released (rule 8: its screen is thrown out, told why)."""
        if seat.timers.epoch != epoch or seat.group.seats.get(seat.user.id) is not seat:
            return
        if seat.target is not None:
            target, seat.target = seat.target, None
            if await self.customers.release(target):  # not when the agent saved meanwhile
                await self._emit(
                    DialerEvent(
                        "released",
                        seat.group.owner,
                        seat.user.id,
                        target.customer_id,
                        target.token,
                        data={"reason": "wrap_up_timer"},
                    )
                )
        await self._available(seat)

    async def _let_go(self, seat: Seat) -> None:
        """Release what the dialer gave the agent (a no-op when the save released it)."""
        target, seat.target, seat.number = seat.target, None, None
        if target is not None:
            await self.customers.release(target)

    async def _drop(self, seat: Seat) -> None:
        """The agent leaves list work: its timers stop, its ringing call is hung up."""
        group = seat.group
        self._cancel_timer(seat)
        seat.timers.stop(self.clock.now())
        if group.seats.get(seat.user.id) is seat:
            del group.seats[seat.user.id]
        if self._seats.get((group.owner, seat.user.id)) is seat:
            del self._seats[(group.owner, seat.user.id)]
        call = seat.call
        if call is not None and call.answered_at is None:
            await self._cancel(call)
            seat.call = None
        await self._emit_agent(seat)
        self._pace_soon(group)

    async def _end_call(self, seat: Seat) -> None:
        """End the agent's call now: one still ringing is cancelled (nobody was reached, no
        attempt), one answered ends as a talk does (then wrap-up)."""
        call = seat.call
        if call is None or call.ended:
            seat.call = None
            return
        if call.answered_at is None:
            await self._cancel(call)
            seat.call = None
            return
        await self._hung_up(call, self.clock.now())
        await self.telephony.hang_up(call.id)  # its own hung_up event finds the call ended

    def _cancel_timer(self, seat: Seat) -> None:
        if seat.timer is not None:
            seat.timer.cancel()
            seat.timer = None

    # Dialing ----------------------------------------------------------------------------------

    async def _group(self, owner: int, work: WorkList) -> Group:
        group = self._groups.get((owner, work))
        if group is None:
            setup = await self.customers.setup_of(owner, work.assignment_id)
            settings = dataclasses.replace(self.pacing, abandon_target=setup.abandon_target)
            group = Group(owner, work, setup, Pacer(settings, now=self.clock.now()))
            self._groups[(owner, work)] = group
        return group

    async def _dial(self, group: Group, target: Target, number: str, seat: Seat | None) -> str:
        now = self.clock.now()
        call = Call(f"{self._prefix}-{next(self._ids)}", group, target, number, now, seat)
        self._calls[call.id] = call
        group.ringing[call.id] = call
        group.pacer.dialed(now)
        if seat is not None:
            seat.call = call
            seat.timers.dialing(now, target.customer_id, call.id)
            await self._emit_agent(seat)
            await self._emit_call(call, "dialing")
        await self.telephony.originate(call.id, number, self.caller_id)
        return call.id

    def _pace_soon(self, group: Group) -> None:
        """Pace the list once, after the event being handled (many events, one decision)."""
        if group.mode is not DialMode.PREDICTIVE or group.pace_pending:
            return
        group.pace_pending = True
        self.clock.call_later(0, lambda: self._pace(group))

    async def _pace(self, group: Group) -> None:
        group.pace_pending = False
        now = self.clock.now()
        if now - group.checked_at >= MEMBERSHIP_CHECK_SECONDS:
            group.checked_at = now
            for seat in list(group.seats.values()):
                if not await self.customers.in_list_work(group.owner, seat.user.id):
                    await self._drop(seat)  # rule 17: My Work ends predictive dialing
        if not group.seats:
            await self._stop_dialing(group)
            return
        pool = Pool(
            in_list_work=len(group.seats),
            free=sum(1 for s in group.seats.values() if s.free),
            wrap_ups=[
                (now - s.timers.since, s.timers.wrap_up_left(now))
                for s in group.seats.values()
                if s.timers.state is AgentState.WRAP_UP
            ],
            talking=sum(1 for s in group.seats.values() if s.timers.state is AgentState.TALKING),
            waiting_calls=len(group.waiting),
        )
        ringing = [now - c.dialed_at for c in group.ringing.values()]
        wanted = group.pacer.calls_to_place(now, pool, ringing)
        placed = skipped = 0
        while placed < wanted and skipped < MAX_SKIPS:
            target = await self.customers.claim_for_line(group.owner, group.work)
            if target is None:
                break  # the list is empty, or every line is busy
            number = await self.customers.number_to_dial(target)
            if number is None:
                await self.customers.release(target)
                skipped += 1
                continue
            await self._dial(group, target, number, None)
            placed += 1
        if group.tick is None:
            group.tick = self.clock.call_later(TICK_SECONDS, lambda: self._tick(group))

    async def _tick(self, group: Group) -> None:
        group.tick = None
        if group.seats or group.ringing or group.waiting:
            await self._pace(group)

    async def _stop_dialing(self, group: Group) -> None:
        """Nobody is in list work: hang up what rings, abandon nothing new."""
        for call in list(group.ringing.values()):
            await self._cancel(call)
        now = self.clock.now()
        for call in list(group.waiting):
            await self._abandon(call, now, hang_up=True)

    async def _cancel(self, call: Call) -> None:
        """Hang up a call not answered yet: no attempt (nobody was reached), customer let go."""
        self._finish(call)
        await self.telephony.hang_up(call.id)
        if call.seat is None:
            await self.customers.release(call.target)
        await self._log(call, "cancelled", self.clock.now())

    def _finish(self, call: Call) -> None:
        call.ended = True
        self._calls.pop(call.id, None)
        call.group.ringing.pop(call.id, None)
        if call.grace is not None:
            call.grace.cancel()

    async def _attempt(self, target: Target, now: float) -> None:
        try:
            await self.customers.attempted(target, _utc(now))
        except SelectionLost:
            # The selection ended meanwhile (a supervisor released it): the fence refused the
            # write, as it refuses any write of a holder that lost its customer (rule 8).
            log.info("attempt on customer %s refused: selection lost", target.customer_id)
            return
        await self._emit(DialerEvent("attempt", target.owner, target.holder_id, target.customer_id))

    async def _log(self, call: Call, result: str, now: float) -> None:
        """Write the call log; the agent on the call is told how it ended."""
        try:
            await self._write_log(call, result, now)
        finally:
            if call.seat is not None:
                await self._emit_call(call, "ended", result=result)

    async def _write_log(self, call: Call, result: str, now: float) -> None:
        await self.customers.call_ended(
            CallRecord(
                call_id=call.id,
                owner=call.group.owner,
                assignment_id=call.target.assignment_id,
                customer_id=call.target.customer_id,
                mode=call.group.mode,
                number=call.number,
                result=result,
                dialed_at=_utc(call.dialed_at),
                agent_id=None if call.seat is None else call.seat.user.id,
                answered_at=None if call.answered_at is None else _utc(call.answered_at),
                ended_at=_utc(now),
            )
        )

    # Events ---------------------------------------------------------------------------------------

    def _seat(self, user: User) -> Seat:
        seat = self._seats.get((user.data_owner_id, user.id))
        if seat is None:
            raise Invalid("the agent is not in list work")
        return seat

    async def _emit_agent(self, seat: Seat) -> None:
        snapshot = seat.timers.snapshot(self.clock.now())
        await self._emit(DialerEvent("agent", seat.group.owner, seat.user.id, agent=snapshot))

    async def _emit_call(self, call: Call, state: str, **extra: Any) -> None:
        user_id = None if call.seat is None else call.seat.user.id
        await self._emit(
            DialerEvent(
                "call",
                call.group.owner,
                user_id,
                call.target.customer_id,
                call_id=call.id,
                data={"state": state, "number": call.number, **extra},
            )
        )
        if call.seat is not None and state == "answered":
            await self._emit_agent(call.seat)

    async def _emit(self, event: DialerEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:  # a listener's failure must not stop dialing
                log.exception("dialer listener failed")


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
