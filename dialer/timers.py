"""The agent's dialing states and the talk and wrap-up timers of its assignment setup.

A pure state machine per agent (times are given, never read): off -> available -> (previewing
->) dialing -> talking -> wrap_up -> available, and off again whenever list work ends (rule 17:
"pick next from My Work" stops running timers). ``snapshot`` is the data the realtime layer
shows: the state, since when, and the running timer's deadline. Each transition bumps
``epoch``, so a timer callback scheduled for an earlier state knows it is stale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from domain.model import AssignmentSetup
from domain.times import iso_s


class AgentState(enum.StrEnum):
    OFF = "off"
    """Not in list work: no calls are dialed or connected for the agent."""
    AVAILABLE = "available"
    PREVIEWING = "previewing"
    """Preview mode: the agent sees the customer and decides when to call."""
    DIALING = "dialing"
    TALKING = "talking"
    WRAP_UP = "wrap_up"


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    user_id: int
    state: AgentState
    since: float
    deadline: float | None = None
    """When the running timer ends (talk timer: a warning; wrap-up: back to available)."""
    customer_id: int | None = None
    call_id: str | None = None
    overrun: bool = False
    """The talk timer has run out and the agent is still talking."""

    def wire(self) -> dict[str, Any]:
        """Wire form: ids as strings, times as ISO 8601 UTC."""
        return {
            "user_id": str(self.user_id),
            "state": self.state.value,
            "since": iso_s(self.since),
            "deadline": None if self.deadline is None else iso_s(self.deadline),
            "customer_id": None if self.customer_id is None else str(self.customer_id),
            "call_id": self.call_id,
            "overrun": self.overrun,
        }


class AgentTimers:
    """One agent's state and timers, by its assignment's setup."""

    def __init__(self, user_id: int, setup: AssignmentSetup, now: float) -> None:
        self.user_id = user_id
        self.talk_seconds = setup.talk_timer_seconds
        self.wrap_up_seconds = setup.wrap_up_seconds
        self.state = AgentState.OFF
        self.since = now
        self.customer_id: int | None = None
        self.call_id: str | None = None
        self.epoch = 0

    def _go(
        self, state: AgentState, now: float, customer_id: int | None, call_id: str | None
    ) -> int:
        self.state, self.since = state, now
        self.customer_id, self.call_id = customer_id, call_id
        self.epoch += 1
        return self.epoch

    def available(self, now: float) -> int:
        return self._go(AgentState.AVAILABLE, now, None, None)

    def previewing(self, now: float, customer_id: int) -> int:
        return self._go(AgentState.PREVIEWING, now, customer_id, None)

    def dialing(self, now: float, customer_id: int, call_id: str) -> int:
        return self._go(AgentState.DIALING, now, customer_id, call_id)

    def talking(self, now: float, customer_id: int, call_id: str) -> int:
        return self._go(AgentState.TALKING, now, customer_id, call_id)

    def wrap_up(self, now: float) -> int:
        return self._go(AgentState.WRAP_UP, now, self.customer_id, None)

    def stop(self, now: float) -> int:
        """List work ended: no state, no running timer."""
        return self._go(AgentState.OFF, now, None, None)

    @property
    def in_list_work(self) -> bool:
        return self.state is not AgentState.OFF

    def deadline(self) -> float | None:
        if self.state is AgentState.TALKING and self.talk_seconds:
            return self.since + self.talk_seconds
        if self.state is AgentState.WRAP_UP and self.wrap_up_seconds is not None:
            return self.since + self.wrap_up_seconds
        return None

    def wrap_up_left(self, now: float) -> float | None:
        """Seconds until the wrap-up timer makes the agent available; None: no such timer."""
        deadline = self.deadline() if self.state is AgentState.WRAP_UP else None
        return None if deadline is None else max(0.0, deadline - now)

    def snapshot(self, now: float) -> AgentSnapshot:
        deadline = self.deadline()
        return AgentSnapshot(
            user_id=self.user_id,
            state=self.state,
            since=self.since,
            deadline=deadline,
            customer_id=self.customer_id,
            call_id=self.call_id,
            overrun=self.state is AgentState.TALKING and deadline is not None and now >= deadline,
        )
