"""Predictive pacing against progressive dialing: `python bench/pacing.py`.

Runs the real ``dialer.dial_modes.Dialer`` with its ``Pacer`` and agent timers, on a virtual
clock, purely in memory: the simulated phone system (``dialer.simulator``), an in-memory
customer list in place of the database and Redis, and a simulated agent pool whose talk times
(the customers') and wrap-up times (the agents') come from the simulator's distributions; the
assignment's wrap-up timer cuts a wrap-up at 30 s. BENCH_PACING_AGENTS agents (default 50) work
BENCH_PACING_HOURS simulated hours (default 8) at BENCH_PACING_ANSWER_RATE (default 0.30), once
predictive, once progressive, with the same seed; BENCH_PACING_SHIFTS such shifts (default 3,
seeds BENCH_PACING_SEED, +1, ...), figures their mean. Utilization is talk time / logged-in
time; progressive dialing on the same seeds is the baseline.
The last output line is JSON:
{"bench": "pacing", "predictive_utilization": .., "progressive_utilization": .., "abandon_rate": ..}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.clock import VirtualClock
from dialer.dial_modes import Dialer
from dialer.simulator import CallProfile, SimulatedAgents, SimulatedCustomers, SimulatedTelephony
from dialer.timers import AgentState
from dialer.work_loop import WorkList
from domain.model import AssignmentSetup, DialMode, Role, User

OWNER = 1
WORK = WorkList(assignment_id=1)


async def run(mode: DialMode, agents: int, hours: float, answer_rate: float, seed: int) -> dict:
    """One simulated shift; returns utilization, abandon rate and call counts."""
    clock = VirtualClock()
    profile = CallProfile(answer_rate=answer_rate)
    setup = AssignmentSetup(dial_mode=mode, wrap_up_seconds=30, abandon_target=0.03)
    customers = SimulatedCustomers(setup)
    telephony = SimulatedTelephony(clock, profile, seed=seed)
    dialer = Dialer(customers, telephony, clock, caller_id="+4722000000")
    pool = SimulatedAgents(dialer, profile, seed=seed + 1)
    start = clock.now()
    users = [User(i, OWNER, f"agent{i}", f"Agent {i}", Role.AGENT) for i in range(1, agents + 1)]
    for user in users:
        await pool.start(user, WORK)
    end = start + hours * 3600
    await clock.run_until(end)
    talk = sum(
        (c.ended_at - c.answered_at).total_seconds()
        for c in customers.calls
        if c.result == "answered" and c.answered_at is not None and c.ended_at is not None
    )
    for user in users:  # calls still up at the end of the shift
        snapshot = dialer.snapshot(OWNER, user.id)
        if snapshot.state is AgentState.TALKING:
            talk += end - snapshot.since
    answered = sum(1 for c in customers.calls if c.answered_at is not None)
    abandoned = sum(1 for c in customers.calls if c.result == "abandoned")
    return {
        "utilization": talk / (agents * (end - start)),
        "abandon_rate": abandoned / answered if answered else 0.0,
        "dialed": telephony.stats["originated"],
        "answered": answered,
        "abandoned": abandoned,
    }


async def main() -> dict[str, object]:
    agents = int(os.environ.get("BENCH_PACING_AGENTS", "50"))
    hours = float(os.environ.get("BENCH_PACING_HOURS", "8"))
    answer_rate = float(os.environ.get("BENCH_PACING_ANSWER_RATE", "0.30"))
    seed = int(os.environ.get("BENCH_PACING_SEED", "20261123"))
    shifts = int(os.environ.get("BENCH_PACING_SHIFTS", "3"))
    started = time.perf_counter()
    # One shift's utilization swings about a point with its seed: the figures are the mean of
    # `shifts` shifts (seed, seed + 1, ...), each mode on the same seeds; every shift is listed.
    runs = []
    for n in range(shifts):
        predictive = await run(DialMode.PREDICTIVE, agents, hours, answer_rate, seed + n)
        progressive = await run(DialMode.PROGRESSIVE, agents, hours, answer_rate, seed + n)
        print(f"seed {seed + n}: predictive {predictive}", file=sys.stderr)
        print(f"seed {seed + n}: progressive {progressive}", file=sys.stderr)
        runs.append((predictive, progressive))
    print(f"wall seconds: {time.perf_counter() - started:.1f}", file=sys.stderr)

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4)

    answered = sum(p["answered"] for p, _ in runs)
    return {
        "bench": "pacing",
        "agents": agents,
        "hours": hours,
        "answer_rate": answer_rate,
        "seeds": [seed + n for n in range(shifts)],
        "predictive_utilization": mean([p["utilization"] for p, _ in runs]),
        "progressive_utilization": mean([q["utilization"] for _, q in runs]),
        "abandon_rate": round(sum(p["abandoned"] for p, _ in runs) / answered, 4)
        if answered
        else 0.0,
        "worst_shift_abandon_rate": max(round(p["abandon_rate"], 4) for p, _ in runs),
        "per_shift_gap": [round(p["utilization"] - q["utilization"], 4) for p, q in runs],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
