"""Group commit: the writes of many concurrent callers, in one transaction for all of them.

Hundreds of agents save and move on at once. Each in its own transaction costs the database a
BEGIN, a COMMIT (a WAL flush) and a round trip per statement, and on a busy node that per-statement
cost, not the rows, is what runs out first. A ``GroupCommit`` queues each caller's request;
whenever fewer than ``concurrent`` batches of its kind are running, the requests waiting go
together into the next one. A quiet node so runs each request at once, alone (no added wait);
a busy one runs a few large transactions, their statements pipelined (``driver.Statement.many``).

A batch holds at most one request per ``key`` (one per customer, or per user) among all batches
running, so no two requests of one batch contend for the same row or selection, and requests of
one ``group`` only (one data owner: one Redis hash slot). A request whose caller gave up (its
task cancelled) before its batch started is left out; once started, it runs to the end like a
request whose answer was lost on the way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

I = TypeVar("I")  # noqa: E741 (a request)
R = TypeVar("R")  # its result


@dataclass(slots=True)
class _Waiting(Generic[I, R]):
    item: I
    future: asyncio.Future[R]


BATCHES_AT_ONCE = 2
"""Batches of one kind in flight at once on PostgreSQL: the next one is written while the one
before waits for its commit (and Redis), so neither the database nor this process idles
between batches (claims bench on 2 cores: 1,301 -> 1,452 claims/s flat out). Batches in
flight together never share a key, so they never wait on each other's rows."""


def batches_at_once(engine: AsyncEngine) -> int:
    """BATCHES_AT_ONCE on PostgreSQL; 1 on SQLite, which writes one transaction at a time."""
    return BATCHES_AT_ONCE if engine.dialect.name == "postgresql" else 1


class GroupCommit(Generic[I, R]):
    """Runs requests in batches: ``run(items)`` answers each, in order, with its result or the
    exception that request alone raises (a refused write); an exception ``run`` raises itself
    is every request's answer of that batch."""

    def __init__(
        self,
        run: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]],
        *,
        key: Callable[[I], Hashable],
        group: Callable[[I], Hashable] = lambda _item: None,
        most: int = 64,
        concurrent: int = 1,
    ) -> None:
        self._run = run
        self._key = key
        self._group = group
        self.most = most
        self.concurrent = concurrent
        self._waiting: deque[_Waiting[I, R]] = deque()
        self._busy: set[Hashable] = set()
        self._runners: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches run so far (with ``requests``: how well requests were grouped)."""
        self.requests = 0

    async def submit(self, item: I) -> R:
        """Run ``item`` in the next batch that has room for it; its result, or its exception."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, future))
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._waiting and len(self._runners) < self.concurrent:
            runner = asyncio.create_task(self._drain())
            self._runners.add(runner)
            runner.add_done_callback(self._ended)

    def _ended(self, runner: asyncio.Task[None]) -> None:
        # A request that came in after the runner's last look at the queue, while it still
        # counted as running, must not wait: look again once it no longer counts.
        self._runners.discard(runner)
        self._wake()

    async def _drain(self) -> None:
        while batch := self._take():
            await self._one(batch)

    def _take(self) -> list[_Waiting[I, R]]:
        """The next batch: oldest first, of the oldest request's group, one per key; the rest
        keep their places."""
        batch: list[_Waiting[I, R]] = []
        kept: list[_Waiting[I, R]] = []
        group: Hashable = None
        keys: set[Hashable] = set()
        while self._waiting and len(batch) < self.most:
            waiting = self._waiting.popleft()
            if waiting.future.done():
                continue  # its caller gave up before it started
            key = self._key(waiting.item)
            other_group = bool(batch) and self._group(waiting.item) != group
            if other_group or key in keys or key in self._busy:
                kept.append(waiting)
                continue
            if not batch:
                group = self._group(waiting.item)
            keys.add(key)
            batch.append(waiting)
        self._waiting.extendleft(reversed(kept))
        self._busy |= keys
        return batch

    async def _one(self, batch: list[_Waiting[I, R]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        try:
            results = list(await self._run([w.item for w in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} answered {len(results)} results")
        except BaseException as exc:
            for waiting in batch:
                _answer(waiting.future, exc)
            if not isinstance(exc, Exception):
                raise  # cancelled (the node stops): every caller was told
            return
        finally:
            self._busy.difference_update(self._key(w.item) for w in batch)
        for waiting, result in zip(batch, results, strict=True):
            _answer(waiting.future, result)


def _answer(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():
        return  # the caller gave up meanwhile
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
