"""A simulated phone system (no real telephony): seeded answer rate, ring and talk times.

``SimulatedTelephony`` implements ``dialer.telephony.Telephony`` on any ``dialer.clock.Clock``:
on a ``VirtualClock`` tests and the bench run simulated hours in seconds, on a ``RealClock``
the demo server rings in real time. Every call's fate (answered, busy, failed, not answered),
its ring time and, when answered, how long the customer talks are drawn from one seeded
``random.Random`` when the call is placed: the same seed and the same calls give the same run.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dialer.clock import Clock, Timer
from dialer.dial_modes import CallRecord, Dialer, DialerEvent, Target
from dialer.telephony import CallEvent, CallEventHandler, CallEventKind
from dialer.timers import AgentState
from dialer.work_loop import WorkList
from domain.errors import SelectionLost
from domain.model import AssignmentSetup, DialMode, User


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A positive duration in seconds with this mean and standard deviation, within bounds."""

    mean: float
    sd: float
    low: float = 0.5
    high: float = 3600.0

    def sample(self, rng: random.Random) -> float:
        if self.sd <= 0:
            return min(self.high, max(self.low, self.mean))
        sigma2 = math.log(1 + (self.sd / self.mean) ** 2)
        mu = math.log(self.mean) - sigma2 / 2
        return min(self.high, max(self.low, rng.lognormvariate(mu, math.sqrt(sigma2))))


@dataclass(frozen=True, slots=True)
class CallProfile:
    """How the simulated customers behave. Rates are shares of all calls placed; what is
    neither answered, busy nor failed rings until ``no_answer_timeout`` (no answer)."""

    answer_rate: float = 0.3
    busy_rate: float = 0.1
    failed_rate: float = 0.02
    ringing_after: float = 1.0
    ring_seconds: LogNormal = field(default_factory=lambda: LogNormal(8.0, 4.0, 2.0, 28.0))
    busy_seconds: LogNormal = field(default_factory=lambda: LogNormal(4.0, 1.5, 1.0, 10.0))
    failed_seconds: float = 1.5
    no_answer_timeout: float = 30.0
    talk_seconds: LogNormal = field(default_factory=lambda: LogNormal(100.0, 60.0, 10.0, 900.0))
    wrap_up_seconds: LogNormal = field(default_factory=lambda: LogNormal(15.0, 8.0, 2.0, 120.0))
    """How long a simulated agent takes to save after a call (its wrap-up timer may cut it)."""

    def __post_init__(self) -> None:
        if not 0 <= self.answer_rate <= 1:
            raise ValueError("answer_rate must be within 0..1")
        if self.answer_rate + self.busy_rate + self.failed_rate > 1:
            raise ValueError("answer, busy and failed rates add up to more than 1")


@dataclass(slots=True)
class _Call:
    number: str
    timer: Timer | None = None
    up: bool = False
    done: bool = False


class SimulatedTelephony:
    """Telephony on a clock, with seeded customers. Counts what it did in ``stats``."""

    def __init__(
        self,
        clock: Clock,
        profile: CallProfile | None = None,
        *,
        seed: int = 0,
        fates: Mapping[str, CallEventKind] | None = None,
    ) -> None:
        self.clock = clock
        self.profile = profile or CallProfile()
        self.seed = seed
        self.fates = dict(fates or {})
        """Number suffix -> the fate of every call to such a number (the longest suffix wins),
        like a carrier's test numbers: busy, no_answer, failed or answered, whatever the draw."""
        self.rng = random.Random(seed)
        self._handler: CallEventHandler | None = None
        self._calls: dict[str, _Call] = {}
        self.stats: dict[str, int] = {k.value: 0 for k in CallEventKind} | {"originated": 0}
        self.log: list[CallEvent] = []
        self.keep_log = False
        self.originated: list[tuple[str, str]] = []
        """(call id, number) of every call placed, in order."""
        self.overlaps = 0
        """Calls placed to a number that was already on a live call."""

    def connect(self, handler: CallEventHandler) -> None:
        self._handler = handler

    async def originate(self, call_id: str, number: str, caller_id: str) -> None:
        if call_id in self._calls:
            raise ValueError(f"call id {call_id} is in use")
        p = self.profile
        if any(c.number == number for c in self._calls.values()):
            self.overlaps += 1
        call = self._calls[call_id] = _Call(number)
        self.stats["originated"] += 1
        self.originated.append((call_id, number))
        draw = self.rng.random()
        if draw < p.answer_rate:
            kind, after = CallEventKind.ANSWERED, p.ring_seconds.sample(self.rng)
        elif draw < p.answer_rate + p.busy_rate:
            kind, after = CallEventKind.BUSY, p.busy_seconds.sample(self.rng)
        elif draw < p.answer_rate + p.busy_rate + p.failed_rate:
            kind, after = CallEventKind.FAILED, p.failed_seconds
        else:
            kind, after = CallEventKind.NO_ANSWER, p.no_answer_timeout
        fated = self._fate(number)
        if fated is not None and fated is not kind:
            kind, after = (
                fated,
                {
                    CallEventKind.ANSWERED: p.ring_seconds.mean,
                    CallEventKind.BUSY: p.busy_seconds.mean,
                    CallEventKind.FAILED: p.failed_seconds,
                }.get(fated, p.no_answer_timeout),
            )
        # Drawn now, whatever happens later: a call's fate depends on the seed and on the
        # order calls are placed, never on when the dialer hangs up.
        talk = p.talk_seconds.sample(self.rng)
        if kind in (CallEventKind.ANSWERED, CallEventKind.NO_ANSWER):
            self.clock.call_later(min(p.ringing_after, after), self._ringing(call_id))
        call.timer = self.clock.call_later(after, self._outcome(call_id, kind, talk))

    async def hang_up(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.done:
            return
        if call.timer is not None:
            call.timer.cancel()
        await self._end(call_id, CallEventKind.HUNG_UP)

    def active(self) -> int:
        return len(self._calls)

    def _fate(self, number: str) -> CallEventKind | None:
        matches = [suffix for suffix in self.fates if number.endswith(suffix)]
        return self.fates[max(matches, key=len)] if matches else None

    def _ringing(self, call_id: str):
        async def fire() -> None:
            call = self._calls.get(call_id)
            if call is not None and not call.done and not call.up:
                await self._emit(call_id, CallEventKind.RINGING)

        return fire

    def _outcome(self, call_id: str, kind: CallEventKind, talk: float):
        async def fire() -> None:
            call = self._calls.get(call_id)
            if call is None or call.done:
                return
            if kind is CallEventKind.ANSWERED:
                call.up = True
                call.timer = self.clock.call_later(talk, self._customer_hangs_up(call_id))
                await self._emit(call_id, kind)
            else:
                await self._end(call_id, kind)

        return fire

    def _customer_hangs_up(self, call_id: str):
        async def fire() -> None:
            call = self._calls.get(call_id)
            if call is not None and not call.done:
                await self._end(call_id, CallEventKind.HUNG_UP)

        return fire

    async def _end(self, call_id: str, kind: CallEventKind) -> None:
        call = self._calls.pop(call_id)
        call.done = True
        await self._emit(call_id, kind)

    async def _emit(self, call_id: str, kind: CallEventKind) -> None:
        self.stats[kind.value] += 1
        event = CallEvent(call_id, kind, self.clock.now())
        if self.keep_log:
            self.log.append(event)
        if self._handler is not None:
            await self._handler(event)


class SimulatedCustomers:
    """The dialer's ``Customers`` port in memory, for the bench and pacing tests: an endless
    list of fresh customers, each held by one agent or line at a time (the rule-4 lock as a
    dict), with the attempts and call log the database would get."""

    def __init__(
        self,
        setup: AssignmentSetup | None = None,
        *,
        max_lines: int = 10_000,
        blocked: frozenset[str] = frozenset(),
    ) -> None:
        self.setup = setup or AssignmentSetup(dial_mode=DialMode.PREDICTIVE)
        self.max_lines = max_lines
        self.blocked = blocked
        self.holders: dict[int, tuple[int, int]] = {}
        self.in_work: set[tuple[int, int]] = set()
        self.attempts: dict[int, int] = {}
        self.calls: list[CallRecord] = []
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._free_lines = list(range(-max_lines, 0))

    async def setup_of(self, owner: int, assignment_id: int) -> AssignmentSetup:
        return self.setup

    async def enter_list_work(self, owner: int, agent_id: int, work: WorkList) -> None:
        self.in_work.add((owner, agent_id))

    async def in_list_work(self, owner: int, agent_id: int) -> bool:
        return (owner, agent_id) in self.in_work

    def _hold(self, owner: int, holder: int, work: WorkList) -> Target:
        customer_id, token = next(self._ids), next(self._tokens)
        self.holders[customer_id] = (holder, token)
        return Target(owner, customer_id, holder, token, work.assignment_id)

    async def claim_for_agent(self, owner: int, agent_id: int, work: WorkList) -> Target | None:
        return self._hold(owner, agent_id, work)

    async def claim_for_line(self, owner: int, work: WorkList) -> Target | None:
        if not self._free_lines:
            return None
        return self._hold(owner, self._free_lines.pop(), work)

    async def hand_over(self, target: Target, agent_id: int) -> Target | None:
        if self.holders.get(target.customer_id) != (target.holder_id, target.token):
            return None
        await self.release(target)
        token = next(self._tokens)
        self.holders[target.customer_id] = (agent_id, token)
        return Target(target.owner, target.customer_id, agent_id, token, target.assignment_id)

    async def number_to_dial(self, target: Target) -> str | None:
        number = f"+4790{target.customer_id:06d}"
        return None if number in self.blocked else number

    async def attempted(self, target: Target, at: datetime) -> None:
        if self.holders.get(target.customer_id) != (target.holder_id, target.token):
            raise SelectionLost(target.customer_id)
        self.attempts[target.customer_id] = self.attempts.get(target.customer_id, 0) + 1

    async def release(self, target: Target) -> bool:
        if self.holders.get(target.customer_id) != (target.holder_id, target.token):
            return False
        del self.holders[target.customer_id]
        if target.holder_id < 0:
            self._free_lines.append(target.holder_id)
        return True

    async def call_ended(self, record: CallRecord) -> None:
        self.calls.append(record)


class SimulatedAgents:
    """Agents who save after a call: each wrap-up takes a time drawn from the profile (the
    assignment's wrap-up timer may end it first), then the agent is ready again."""

    def __init__(self, dialer: Dialer, profile: CallProfile, *, seed: int = 0) -> None:
        self.dialer = dialer
        self.profile = profile
        self.rng = random.Random(seed)
        self.users: dict[int, User] = {}
        self.work: dict[int, WorkList] = {}
        self.saves = 0
        dialer.listen(self._on_event)

    async def start(self, user: User, work: WorkList) -> None:
        self.users[user.id], self.work[user.id] = user, work
        await self.dialer.agent_ready(user, work)

    async def _on_event(self, event: DialerEvent) -> None:
        if event.kind != "agent" or event.agent is None or event.user_id not in self.users:
            return
        if event.agent.state is AgentState.WRAP_UP:
            epoch_since = event.agent.since
            delay = self.profile.wrap_up_seconds.sample(self.rng)
            self.dialer.clock.call_later(delay, lambda: self._save(event.user_id, epoch_since))

    async def _save(self, user_id: int, since: float) -> None:
        user = self.users[user_id]
        snapshot = self.dialer.snapshot(user.data_owner_id, user_id)
        if snapshot.state is AgentState.WRAP_UP and snapshot.since == since:
            self.saves += 1
            await self.dialer.agent_ready(user, self.work[user_id])
