"""Predictive pacing: how many calls to place now, keeping abandons at or under the target.

Pure and clock-injected: the dialer tells the pacer what happened (``dialed``, ``answered``,
``not_answered``, ``abandoned``, ``talk_ended``) and asks ``calls_to_place(now, pool, ringing)``.

The dial ratio comes from the answer rate, not a fixed number. The calls already ringing and
the ``n`` new ones are answered independently, each with the answer rate the pacer measured,
conditioned on how long the call has rung already (empirical ring-time survival), so the
answers X are about binomial. The agents who can take those answers are the free ones, those
whose wrap-up ends within the horizon (the typical ring time plus the 2 s grace) and, for
talking agents, the chance a call ends within it. The pacer places the largest ``n`` whose
expected overflow E[max(0, X - capacity)] stays under ``risk`` times the expected answers.
``risk`` is a feedback controller on the calls themselves: each answered call raises it a
little, each abandon cuts it, so it settles where abandons are ``margin`` x the assignment's
target of the answers, whatever the model got wrong (a stochastic-approximation step; no
wind-up, no lag behind a window). ``abandon_rate`` reports the rolling window's rate.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

GRACE_SECONDS = 2.0
"""An answered call with no free agent for this long is abandoned (hung up, recorded)."""


@dataclass(frozen=True, slots=True)
class PacingSettings:
    abandon_target: float = 0.03
    """Abandoned calls / answered calls over the window: the assignment's setup sets it."""
    window_seconds: float = 3600.0
    margin: float = 0.8
    """The controller aims at margin x target, so noise stays under the target."""
    gain: float = 0.05
    """How far one abandon moves the controller (it cuts ``risk`` by about 5 %)."""
    guard: float = 1.0
    """At guard x target over the window, dial no more calls than there are free agents."""
    risk_start: float = 0.3
    """Start cautious: the first answers teach the controller how far it may go."""
    risk_floor: float = 0.1
    risk_ceiling: float = 3.0
    max_lines_per_agent: float = 3.0
    prior_answer_rate: float = 0.3
    prior_calls: int = 30
    """Weight of the prior answer rate before the window has calls of its own."""
    samples: int = 400
    """Ring times kept to estimate how likely a call that rang t seconds is still answered."""


@dataclass(frozen=True, slots=True)
class Pool:
    """The agents of one list in list work, as the pacer needs them."""

    in_list_work: int
    free: int
    """Available and not yet given an answered call."""
    wrap_ups: Sequence[tuple[float, float | None]] = ()
    """Each agent in wrap-up: seconds in it so far, and seconds left of its timer (None: no
    timer, the agent ends it by saving)."""
    talking: int = 0
    waiting_calls: int = 0
    """Answered calls waiting (in their 2 s grace) for an agent."""


class _Window:
    """Event times within the rolling window."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def add(self, at: float) -> None:
        self.times.append(at)

    def count(self, now: float, window: float) -> int:
        while self.times and self.times[0] < now - window:
            self.times.popleft()
        return len(self.times)


class _Samples:
    """The last N durations, kept sorted for survival estimates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, value: float) -> None:
        self.order.append(value)
        bisect.insort(self.sorted, value)
        if len(self.order) > self.size:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def survival(self, t: float) -> float | None:
        """Share of samples longer than t; None without samples."""
        if not self.sorted:
            return None
        return (len(self.sorted) - bisect.bisect_right(self.sorted, t)) / len(self.sorted)

    def mean(self) -> float | None:
        return sum(self.sorted) / len(self.sorted) if self.sorted else None


class Pacer:
    """The dial-ahead decision for one list, with its abandon-rate feedback."""

    def __init__(self, settings: PacingSettings | None = None, *, now: float = 0.0) -> None:
        self.settings = settings or PacingSettings()
        s = self.settings
        self.setpoint = s.abandon_target * s.margin
        self.risk = self.setpoint * s.risk_start
        self._resolved = _Window()
        self._answered = _Window()
        self._abandoned = _Window()
        self._ring_answered = _Samples(s.samples)
        self._ring_other = _Samples(s.samples)
        self._talk = _Samples(s.samples)
        self._wrap_up = _Samples(s.samples)
        self.totals = {"dialed": 0, "answered": 0, "abandoned": 0}

    # What happened --------------------------------------------------------------------------

    def dialed(self, now: float) -> None:
        self.totals["dialed"] += 1

    def answered(self, now: float, ring_seconds: float) -> None:
        self.totals["answered"] += 1
        self._resolved.add(now)
        self._answered.add(now)
        self._ring_answered.add(ring_seconds)
        self._adjust(self.setpoint)

    def not_answered(self, now: float, ring_seconds: float) -> None:
        """Busy, no answer or failed."""
        self._resolved.add(now)
        self._ring_other.add(ring_seconds)

    def abandoned(self, now: float) -> None:
        self.totals["abandoned"] += 1
        self._abandoned.add(now)
        self._adjust(-1.0)

    def talk_ended(self, now: float, talk_seconds: float) -> None:
        self._talk.add(talk_seconds)

    def wrap_up_ended(self, now: float, wrap_up_seconds: float) -> None:
        """An agent was ready again this long after its call ended (saved, or its timer)."""
        self._wrap_up.add(wrap_up_seconds)

    # What it knows --------------------------------------------------------------------------

    def answer_rate(self, now: float) -> float:
        s = self.settings
        resolved = self._resolved.count(now, s.window_seconds)
        answered = self._answered.count(now, s.window_seconds)
        return (answered + s.prior_answer_rate * s.prior_calls) / (resolved + s.prior_calls)

    def abandon_rate(self, now: float) -> float:
        """Abandoned / answered over the rolling window (0 with no answers)."""
        answered = self._answered.count(now, self.settings.window_seconds)
        if answered == 0:
            return 0.0
        return self._abandoned.count(now, self.settings.window_seconds) / answered

    def horizon(self) -> float:
        """When a call placed now is typically answered, plus the grace it may wait."""
        mean = self._ring_answered.mean()
        return (mean if mean is not None else 8.0) + GRACE_SECONDS

    def done_within(self, elapsed: float, left: float | None, horizon: float) -> float:
        """The chance an agent ``elapsed`` seconds into wrap-up is free within ``horizon``:
        surely when its timer ends by then, else from the wrap-ups measured (none: 0)."""
        if left is not None and left <= horizon:
            return 1.0
        now_in = self._wrap_up.survival(elapsed)
        if not now_in:
            return 0.0
        later = self._wrap_up.survival(elapsed + horizon) or 0.0
        return max(0.0, 1 - later / now_in)

    def still_answered(self, p: float, rang: float) -> float:
        """The chance a call that has rung ``rang`` seconds is still answered."""
        sa = self._ring_answered.survival(rang)
        so = self._ring_other.survival(rang)
        if sa is None or so is None:
            return p
        yes, no = p * sa, (1 - p) * so
        return yes / (yes + no) if yes + no > 0 else 0.0

    # The decision ---------------------------------------------------------------------------

    def calls_to_place(self, now: float, pool: Pool, ringing: Sequence[float]) -> int:
        """New calls to place now, given the pool and how long each ringing call has rung."""
        if pool.in_list_work <= 0:
            return 0  # nobody in list work: dialing stops
        s = self.settings
        room = math.floor(s.max_lines_per_agent * pool.in_list_work)
        room -= len(ringing) + pool.waiting_calls
        if room <= 0:
            return 0
        p = self.answer_rate(now)
        horizon = self.horizon()
        # A talking agent is no capacity: a talk that ends goes to wrap-up first.
        capacity = (
            pool.free
            - pool.waiting_calls
            + sum(self.done_within(elapsed, left, horizon) for elapsed, left in pool.wrap_ups)
        )
        if capacity <= 0:
            return 0
        probs = [self.still_answered(p, rang) for rang in ringing]
        if self.abandon_rate(now) >= s.abandon_target * s.guard:
            # The window is at the target: no more calls than free agents to take them (no
            # abandon possible), until answered calls bring the rate down (small pools, luck).
            room = min(room, pool.free - pool.waiting_calls - len(ringing))
            if room <= 0:
                return 0
        mean_ringing = sum(probs)
        placed = 0
        for n in range(1, room + 1):
            total = len(probs) + n
            expected = mean_ringing + n * p
            if expected_overflow(total, expected / total, capacity) > self.risk * expected:
                break
            placed = n
        return placed

    def _adjust(self, step: float) -> None:
        """The feedback step, per answered call: every answer raises ``risk`` a little, every
        abandon cuts it, so it settles where abandons are ``setpoint`` of the answers."""
        s = self.settings
        self.risk *= math.exp(s.gain * step)
        low, high = self.setpoint * s.risk_floor, self.setpoint * s.risk_ceiling
        self.risk = max(low, min(high, self.risk))


def expected_overflow(n: int, p: float, capacity: float) -> float:
    """E[max(0, X - capacity)] for X ~ Binomial(n, p): answers beyond the agents to take them."""
    if n <= 0 or p <= 0:
        return 0.0
    if p >= 1:
        return max(0.0, n - capacity)
    q = 1 - p
    pmf = q**n
    if pmf == 0.0:  # underflow for large n: the normal approximation is exact enough there
        return _normal_overflow(n * p, math.sqrt(n * p * q), capacity)
    total = 0.0
    ratio = p / q
    for k in range(n + 1):
        if k > capacity:
            total += (k - capacity) * pmf
        pmf *= (n - k) / (k + 1) * ratio
    return total


def _normal_overflow(mean: float, sd: float, capacity: float) -> float:
    d = (mean - capacity) / sd
    cdf = 0.5 * (1 + math.erf(d / math.sqrt(2)))
    pdf = math.exp(-d * d / 2) / math.sqrt(2 * math.pi)
    return (mean - capacity) * cdf + sd * pdf
