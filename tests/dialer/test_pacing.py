"""Predictive pacing: the pure decision, and the abandon rate it keeps over simulated hours.

The long runs drive the real Dialer, Pacer and agent timers on the virtual clock with the
simulated phone system, an in-memory customer list and simulated agents (as bench/pacing.py
does); the database-backed modes are in test_dialing_modes.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.clock import VirtualClock
from dialer.dial_modes import Dialer
from dialer.pacing import Pacer, PacingSettings, Pool, expected_overflow
from dialer.simulator import CallProfile, SimulatedAgents, SimulatedCustomers, SimulatedTelephony
from dialer.work_loop import WorkList
from domain.model import AssignmentSetup, DialMode, Role, User

WORK = WorkList(assignment_id=1)


def test_expected_overflow_is_exact_for_small_binomials() -> None:
    # X ~ Bin(3, 0.3), one agent: P(X=2) * 1 + P(X=3) * 2
    assert expected_overflow(3, 0.3, 1) == pytest.approx(3 * 0.09 * 0.7 + 2 * 0.027)
    assert expected_overflow(1, 0.3, 1) == 0
    assert expected_overflow(2000, 0.5, 900) == pytest.approx(100, rel=0.01)


def test_no_agent_in_list_work_places_no_call() -> None:
    pacer = Pacer(now=0)
    assert pacer.calls_to_place(0, Pool(in_list_work=0, free=0), []) == 0


def test_free_agents_get_calls_ahead_and_busy_agents_none() -> None:
    pacer = Pacer(now=0)
    ahead = pacer.calls_to_place(0, Pool(in_list_work=20, free=20), [])
    assert 20 < ahead <= 60  # more calls than agents: most go unanswered
    assert pacer.calls_to_place(0, Pool(in_list_work=20, free=0, talking=20), []) == 0


def test_abandons_make_the_pacer_careful() -> None:
    pacer = Pacer(now=0)
    before = pacer.calls_to_place(0, Pool(in_list_work=20, free=20), [])
    for i in range(20):
        pacer.answered(i, 8)
        pacer.abandoned(i)
    assert pacer.abandon_rate(30) == 1.0
    assert pacer.calls_to_place(30, Pool(in_list_work=20, free=20), []) < before


def test_the_window_forgets_old_abandons() -> None:
    pacer = Pacer(PacingSettings(window_seconds=600), now=0)
    pacer.answered(0, 8)
    pacer.abandoned(0)
    assert pacer.abandon_rate(10) == 1.0
    assert pacer.abandon_rate(700) == 0.0


@dataclass
class Shift:
    abandon_rate: float
    answered: int
    utilization: float
    dialed_after_stop: int


async def shift(answer_rate: float, agents: int, hours: float, target: float, seed: int) -> Shift:
    clock = VirtualClock()
    profile = CallProfile(answer_rate=answer_rate)
    setup = AssignmentSetup(dial_mode=DialMode.PREDICTIVE, abandon_target=target)
    customers = SimulatedCustomers(setup)
    telephony = SimulatedTelephony(clock, profile, seed=seed)
    dialer = Dialer(customers, telephony, clock)
    pool = SimulatedAgents(dialer, profile, seed=seed)
    users = [User(i, 1, f"a{i}", f"A{i}", Role.AGENT) for i in range(1, agents + 1)]
    for user in users:
        await pool.start(user, WORK)
    start = clock.now()
    await clock.advance(hours * 3600)
    answered = [c for c in customers.calls if c.answered_at is not None]
    abandoned = [c for c in answered if c.result == "abandoned"]
    talk = sum(
        (c.ended_at - c.answered_at).total_seconds()
        for c in answered
        if c.result == "answered" and c.ended_at
    )
    # Everyone leaves list work: dialing stops.
    for user in users:
        customers.in_work.discard((1, user.id))
    await clock.advance(60)
    placed = telephony.stats["originated"]
    await clock.advance(3600)
    assert telephony.active() == 0
    return Shift(
        len(abandoned) / max(1, len(answered)),
        len(answered),
        talk / (agents * (clock.now() - 3660 - start)),
        telephony.stats["originated"] - placed,
    )


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    answer_rate=st.floats(0.1, 0.6),
    agents=st.integers(3, 25),
    seed=st.integers(0, 2**31),
)
async def test_pacing_keeps_abandons_under_the_target_over_simulated_hours(
    answer_rate: float, agents: int, seed: int
) -> None:
    print(f"answer rate {answer_rate:.3f}, {agents} agents, seed {seed}")
    result = await shift(answer_rate, agents, 2.0, 0.03, seed)
    print(result)
    assert result.answered > 0
    assert result.abandon_rate <= 0.03
    assert result.dialed_after_stop == 0


async def test_a_higher_target_buys_more_talk_time() -> None:
    strict = await shift(0.3, 20, 2.0, 0.01, seed=5)
    loose = await shift(0.3, 20, 2.0, 0.04, seed=5)
    print(strict, loose)
    assert strict.abandon_rate <= 0.01 and loose.abandon_rate <= 0.04
    assert loose.utilization > strict.utilization


async def test_dialing_stops_when_no_agent_is_in_list_work() -> None:
    result = await shift(0.3, 10, 0.5, 0.03, seed=3)
    assert result.dialed_after_stop == 0
