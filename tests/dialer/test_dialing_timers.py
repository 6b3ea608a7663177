"""The agent's dialing states and its assignment's talk and wrap-up timers (pure)."""

from __future__ import annotations

from dialer.timers import AgentState, AgentTimers
from domain.model import AssignmentSetup


def test_talk_then_wrap_up_for_the_setups_seconds() -> None:
    timers = AgentTimers(5, AssignmentSetup(talk_timer_seconds=120, wrap_up_seconds=30), 0.0)
    timers.available(0)
    timers.talking(10, customer_id=42, call_id="c1")
    assert timers.snapshot(60).deadline == 130
    assert not timers.snapshot(60).overrun
    assert timers.snapshot(131).overrun
    timers.wrap_up(200)
    snap = timers.snapshot(210)
    assert (snap.state, snap.deadline, snap.customer_id) == (AgentState.WRAP_UP, 230, 42)
    assert timers.wrap_up_left(210) == 20
    assert snap.wire()["state"] == "wrap_up" and snap.wire()["customer_id"] == "42"


def test_no_wrap_up_timer_waits_for_the_agent() -> None:
    timers = AgentTimers(5, AssignmentSetup(wrap_up_seconds=None), 0.0)
    timers.talking(0, 1, "c")
    timers.wrap_up(50)
    assert timers.deadline() is None and timers.wrap_up_left(500) is None


def test_rule_17_stop_ends_the_running_timer() -> None:
    timers = AgentTimers(5, AssignmentSetup(wrap_up_seconds=30), 0.0)
    timers.talking(0, 1, "c")
    epoch = timers.wrap_up(50)
    timers.stop(55)
    snap = timers.snapshot(60)
    assert (snap.state, snap.deadline, snap.customer_id) == (AgentState.OFF, None, None)
    assert timers.epoch != epoch  # the scheduled wrap-up callback sees it is stale
    assert not timers.in_list_work
