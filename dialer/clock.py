"""Clocks the dialer runs on: a discrete-event virtual clock and the real one.

Everything time-driven in dialing (ring and talk times, the 2 s abandon grace, wrap-up timers,
pacing ticks) is a callback scheduled on a ``Clock``. Tests and the bench use ``VirtualClock``:
time jumps from one scheduled event to the next, so simulated hours run in seconds and every
run with the same seed is the same run. The server uses ``RealClock`` on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[Any] | Any]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Seconds since the epoch, and callbacks (plain or async) run at a later time."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callback) -> Timer: ...


def utc(clock: Clock) -> datetime:
    """The clock's time as an aware UTC datetime (for database rows)."""
    return datetime.fromtimestamp(clock.now(), UTC)


class _Scheduled:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callback) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Discrete-event time: ``run_until`` runs the scheduled callbacks in time order (ties in
    scheduling order), awaiting async ones, and moves ``now`` to each one's time."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._queue: list[tuple[float, int, _Scheduled]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callback) -> Timer:
        scheduled = _Scheduled(callback)
        heapq.heappush(self._queue, (self._now + max(0.0, delay), next(self._seq), scheduled))
        return scheduled

    def pending(self) -> int:
        return sum(1 for _, _, s in self._queue if not s.cancelled)

    async def run_until(self, until: float, *, max_events: int = 10_000_000) -> int:
        """Run every callback due at or before ``until``; returns how many ran. Bounded: a
        schedule that never drains raises after ``max_events``."""
        ran = 0
        while self._queue and self._queue[0][0] <= until:
            at, _, scheduled = heapq.heappop(self._queue)
            if scheduled.cancelled:
                continue
            self._now = max(self._now, at)
            result = scheduled.callback()
            if inspect.isawaitable(result):
                await result
            ran += 1
            if ran >= max_events:
                raise RuntimeError(f"more than {max_events} events before t={until}")
        self._now = max(self._now, until)
        return ran

    async def advance(self, seconds: float, *, max_events: int = 10_000_000) -> int:
        return await self.run_until(self._now + seconds, max_events=max_events)


class RealClock:
    """Wall-clock time on the running asyncio loop; async callbacks run as tasks."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), self._run, callback)

    def _run(self, callback: Callback) -> None:
        result = callback()
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dialer callback failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for callbacks still running (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
