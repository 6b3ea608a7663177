"""The hopper: the next right customers of one list, read from the database into Redis.

``candidate_query`` is rules 10, 11 and 13 in SQL (SQLAlchemy Core, the same on PostgreSQL and
SQLite); it orders exactly as ``domain.listing.list_order`` and admits exactly what
``domain.listing.is_listable`` admits, and a property test holds the two together. ``Hopper``
refills a hopper in batches before it runs dry, one refill per hopper at a time across every
process (a short Redis lock in the owner's hash tag), so many agents never hammer the database.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import tables as t
from domain.db.repositories import utcnow
from domain.flows import AVAILABLE
from domain.listing import INFO_PREFIX
from domain.model import Assignment, Crm, FieldType
from presence.keys import HopperKey, due_key, owner_prefix
from presence.selections import Refilled, SelectionStore
from presence.service import to_ms

c = t.customers.c

REFILL_BATCH = 1000
LOW_WATER = 200
"""Refill when a claim leaves this many candidates or fewer: the hopper never runs dry under
load, and a refill (one indexed query) is rare."""
REFILL_AHEAD_S = 0.5
"""Refill, too, when a claim leaves fewer candidates than this process claimed from the hopper
in this long lately (at most a batch): at 2,000 claims a second, 200 candidates are 100 ms,
about what one refill takes on a busy database, and every claim that finds the hopper empty
waits for it. Other processes claiming from the same hopper refill it on their own claims."""
RATE_WINDOW_S = 1.0

LOCK_MS = 5000
DUE_RECHECK_S = 1.0
"""How stale this process's view of the next due shared follow-up of a hopper may get: one
made on another node jumps a full hopper at most this long after falling due (rule 11)."""
DAY_MS = 86_400_000
UPCOMING = 1000
"""How many of the soonest future shared follow-ups a refill notes as coming due."""

# Deletes the refill lock only when it is still ours (it may have expired and been retaken).
UNLOCK = """
-- unlock: KEYS[1] the refill lock, ARGV[1] our random value. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(c.shared_follow_up_at.isnot(None), c.shared_follow_up_at <= now)


def listable(assignment: Assignment, now: datetime) -> ColumnElement[bool]:
    """domain.listing.is_listable in SQL, for an unselected customer of the assignment."""
    return _listable(assignment, _due(now), now - assignment.setup.retry_delay)


def _listable(assignment: Assignment, due: ColumnElement[bool], cutoff: Any) -> ColumnElement[bool]:
    setup = assignment.setup
    rest: list[ColumnElement[bool]] = [c.shared_follow_up_at.is_(None)]
    if setup.max_attempts is not None:
        rest.append(c.attempts < setup.max_attempts)
    rest.append(or_(c.last_attempt_at.is_(None), c.last_attempt_at <= cutoff))
    # Rule 11: a due shared follow-up bypasses max attempts and retry delay; a future one
    # holds the customer back.
    return and_(c.status == AVAILABLE, or_(due, and_(*rest)))


def in_list(
    assignment: Assignment, segment_ids: Collection[int] | None, now: datetime
) -> ColumnElement[bool]:
    """Rule 10: an unselected, listable customer of this list (assignment, segment set)."""
    return _in_list(assignment, segment_ids, listable(assignment, now))


def in_list_bound(
    assignment: Assignment, segment_ids: Collection[int] | None
) -> ColumnElement[bool]:
    """``in_list`` with "now" left as bind parameters (values: ``in_list_params``), so one
    expression serves every claim of the list."""
    due = and_(c.shared_follow_up_at.isnot(None), c.shared_follow_up_at <= bindparam("list_now"))
    return _in_list(assignment, segment_ids, _listable(assignment, due, bindparam("list_cutoff")))


def in_list_params(assignment: Assignment, now: datetime) -> dict[str, datetime]:
    """The values of ``in_list_bound``'s parameters at ``now``."""
    return {"list_now": now, "list_cutoff": now - assignment.setup.retry_delay}


def _in_list(
    assignment: Assignment, segment_ids: Collection[int] | None, listable: ColumnElement[bool]
) -> ColumnElement[bool]:
    conditions = [c.assignment_id == assignment.id, c.holder_user_id.is_(None), listable]
    if segment_ids:
        conditions.append(c.segment_id.in_(sorted(segment_ids)))
    return and_(*conditions)


def _sort_value(field: str, crm: Crm | None, dialect: str) -> ColumnElement[Any]:
    text_collation = "C" if dialect == "postgresql" else "BINARY"  # code point order, as Python
    if field == "segment_priority":
        return func.coalesce(t.segments.c.priority, 0)
    if field == "external_id":
        return c.external_id.collate(text_collation)
    if field.startswith(INFO_PREFIX):
        key = field[len(INFO_PREFIX) :]
        info_field = crm.info_field(key) if crm is not None else None
        kind = info_field.type if info_field is not None else FieldType.TEXT
        value = c.info[key]
        if kind is FieldType.NUMBER:
            return value.as_float()
        if kind is FieldType.BOOL:
            return value.as_boolean()
        return value.as_string().collate(text_collation)  # text, and ISO dates
    return c[field]


def candidate_query(
    assignment: Assignment,
    crm: Crm | None,
    now: datetime,
    *,
    segment_ids: Collection[int] | None = None,
    limit: int = REFILL_BATCH,
    dialect: str = "postgresql",
) -> Select[Any]:
    """(customer id, segment id) of the list's next right customers, in hand-out order."""
    order: list[Any] = [
        case((_due(now), 0), else_=1),
        c.shared_follow_up_at,  # earliest due first; NULL for every customer not due
    ]
    for key in assignment.setup.sort_keys:
        value = _sort_value(key.field, crm, dialect)
        # A missing value is the smallest: first ascending, last descending (list_order).
        missing_first = case((value.is_(None), 0), else_=1)
        if key.descending:
            order += [missing_first.desc(), value.desc()]
        else:
            order += [missing_first, value]
    order.append(c.id)
    query = select(c.id, c.segment_id).where(in_list(assignment, segment_ids, now))
    if any(k.field == "segment_priority" for k in assignment.setup.sort_keys):
        query = query.select_from(
            t.customers.outerjoin(t.segments, t.segments.c.id == c.segment_id)
        )
    return query.order_by(*order).limit(limit)


async def candidates(
    conn: AsyncConnection,
    assignment: Assignment,
    crm: Crm | None,
    now: datetime,
    *,
    segment_ids: Collection[int] | None = None,
    limit: int = REFILL_BATCH,
    due: list[tuple[int, int | None]] | None = None,
) -> list[tuple[int, int | None]]:
    """``candidate_query``'s rows; in slices an index can serve when the sort keys allow.
    ``due``: ``due_candidates`` with the same arguments, when the caller has read them."""
    slices = _slices(assignment, segment_ids, now)
    if slices is None:
        query = candidate_query(
            assignment, crm, now, segment_ids=segment_ids, limit=limit, dialect=conn.dialect.name
        )
        return [(r[0], r[1]) for r in await conn.execute(query)]
    # Due shared follow-ups come before every other customer (rule 11): the query's own order,
    # over the few rows the partial index ix_customers_shared_due finds.
    if due is None:
        due = await due_candidates(conn, assignment, crm, now, segment_ids=segment_ids, limit=limit)
    found = list(due)
    for branches, order in slices:
        if len(found) >= limit:
            break
        query = _slice_query(branches, order, limit - len(found))
        found += [(r[0], r[1]) for r in await conn.execute(query)]
    return found


def _slice_query(
    branches: list[list[ColumnElement[bool]]], order: list[Any], limit: int
) -> Select[Any]:
    """One slice's next ``limit`` rows: each branch (one segment) read in index order, the
    branches merged in that order (PostgreSQL: a Merge Append of index scans, each read only as
    far as the merge needs). An OR of segments in one WHERE would lose the index's order, and
    the database would walk every row ever worked before the first free one."""
    if len(branches) == 1:
        return select(c.id, c.segment_id).where(*branches[0]).order_by(*order).limit(limit)
    keys = [column.label(f"k{i}") for i, column in enumerate(order)]
    parts = [
        select(c.id, c.segment_id, *keys).where(*where).order_by(*order).limit(limit).subquery()
        for where in branches
    ]
    merged = union_all(*(select(*part.c) for part in parts)).subquery()
    return (
        select(merged.c.id, merged.c.segment_id)
        .order_by(*(merged.c[key.name] for key in keys))
        .limit(limit)
    )


async def due_candidates(
    conn: AsyncConnection,
    assignment: Assignment,
    crm: Crm | None,
    now: datetime,
    *,
    segment_ids: Collection[int] | None = None,
    limit: int = REFILL_BATCH,
) -> list[tuple[int, int | None]]:
    """The candidates whose shared follow-up is due (rule 11), in the list's order: the few rows
    the partial index ix_customers_shared_due finds."""
    due = candidate_query(
        assignment, crm, now, segment_ids=segment_ids, limit=limit, dialect=conn.dialect.name
    ).where(_due(now))
    return [(r[0], r[1]) for r in await conn.execute(due)]


async def upcoming_follow_ups(
    conn: AsyncConnection, assignment_id: int, now: datetime, limit: int = UPCOMING
) -> dict[int, datetime]:
    """The soonest future shared follow-ups of unselected available customers of the
    assignment: customer id -> due time."""
    rows = await conn.execute(
        select(c.id, c.shared_follow_up_at)
        .where(
            c.assignment_id == assignment_id,
            c.shared_follow_up_at > now,
            c.holder_user_id.is_(None),
            c.status == AVAILABLE,
        )
        .order_by(c.shared_follow_up_at)
        .limit(limit)
    )
    return {r.id: r.shared_follow_up_at for r in rows}


SLICED_KEYS = ("segment_priority", "attempts", "last_attempt_at")


def _slices(
    assignment: Assignment, segment_ids: Collection[int] | None, now: datetime
) -> list[tuple[list[list[ColumnElement[bool]]], list[Any]]] | None:
    """The rest of the list order (no due follow-up) as consecutive slices, each the WHEREs of
    its branches (one per segment) and an ORDER BY on plain columns that ix_customers_list
    serves within a branch, so a refill reads about ``limit`` rows instead of sorting the whole
    list or walking every customer worked before. None: the setup's sort keys
    are not of the shape sliced here (a subsequence of SLICED_KEYS, attempts and
    last_attempt_at ascending); candidate_query then sorts.

    The slices follow list_order exactly: segment priority groups, attempts values, then the
    never tried (a missing last_attempt_at is the smallest) before the tried, ties by id.
    Segment priorities come from ``assignment`` as loaded, like the setup itself."""
    setup = assignment.setup
    fields = [k.field for k in setup.sort_keys]
    if fields != [f for f in SLICED_KEYS if f in fields]:
        return None
    by_field = {k.field: k for k in setup.sort_keys}
    if any(by_field[f].descending for f in ("attempts", "last_attempt_at") if f in by_field):
        return None
    if "attempts" in by_field and setup.max_attempts is None:
        return None  # no bounded set of attempt counts to walk

    base: list[ColumnElement[bool]] = [
        c.assignment_id == assignment.id,
        c.holder_user_id.is_(None),
        c.status == AVAILABLE,
        c.shared_follow_up_at.is_(None),  # a future one holds the customer back (rule 11)
    ]
    if setup.max_attempts is not None:
        base.append(c.attempts < setup.max_attempts)
    cutoff = now - setup.retry_delay

    # The segments each slice spans, one branch each (segment_id leads the index's order below
    # attempts and last attempt): by priority groups when the setup sorts by them.
    # coalesce(segments.priority, 0): a customer without a segment ranks as priority 0.
    members: dict[int, list[int | None]] = {}
    for segment in assignment.segments:
        if not segment_ids or segment.id in segment_ids:
            members.setdefault(segment.priority, []).append(segment.id)
    if not segment_ids:
        members.setdefault(0, []).append(None)
    priority_key = by_field.get("segment_priority")
    if priority_key is None:
        groups = [[m for priority in sorted(members) for m in members[priority]]]
    else:
        groups = [members[p] for p in sorted(members, reverse=priority_key.descending)]

    attempt_values: list[int | None] = [None]
    if "attempts" in by_field:
        assert setup.max_attempts is not None
        attempt_values = list(range(setup.max_attempts))

    never = c.last_attempt_at.is_(None)
    tried = and_(c.last_attempt_at.isnot(None), c.last_attempt_at <= cutoff)
    slices: list[tuple[list[list[ColumnElement[bool]]], list[Any]]] = []
    for group in groups:
        ids = sorted(m for m in group if m is not None)
        segment_of = [c.segment_id == i for i in ids]
        if None in group:
            segment_of.append(c.segment_id.is_(None))
        if not segment_of:
            continue  # none of the segments asked for is the assignment's
        for attempts in attempt_values:
            where = [*base]
            if attempts is not None:
                where.append(c.attempts == attempts)

            def branches(*last: ColumnElement[bool]) -> list[list[ColumnElement[bool]]]:
                return [[*where, segment, *last] for segment in segment_of]  # noqa: B023

            if "last_attempt_at" in by_field:
                # The never tried all have no last attempt: ordered by it (then id), exactly
                # the index's order, which it then serves as it is.
                slices.append((branches(never), [c.last_attempt_at, c.id]))
                slices.append((branches(tried), [c.last_attempt_at, c.id]))
            else:
                slices.append((branches(or_(never, c.last_attempt_at <= cutoff)), [c.id]))
    return slices


def lock_key(owner: int, hopper: HopperKey) -> str:
    """String: who refills this hopper now (random value), expiring by itself after LOCK_MS."""
    return f"{owner_prefix(owner)}hoplock:{hopper.assignment_id}:{hopper.segment_set}"


@dataclass
class _Rate:
    """Claims from one hopper by this process: counted per RATE_WINDOW_S window."""

    started: float
    count: int = 0
    per_s: float = 0.0
    """The last whole window's claims a second."""

    def note(self, now: float) -> float:
        """Count one claim at ``now`` (monotonic); the claims a second lately."""
        elapsed = now - self.started
        if elapsed >= RATE_WINDOW_S:
            self.per_s = self.count / elapsed
            self.started, self.count = now, 0
        self.count += 1
        return self.per_s


@dataclass(frozen=True)
class RefillResult:
    refilled: Refilled | None
    """None: another process held the lock (it is refilling this hopper right now)."""
    found: int = 0
    ms: float = 0.0


class Hopper:
    """Refills hoppers from the database, one refill per hopper at a time across processes."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: SelectionStore,
        *,
        batch: int = REFILL_BATCH,
        low_water: int = LOW_WATER,
        ahead_s: float = REFILL_AHEAD_S,
        lock_ms: int = LOCK_MS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        """What "now" is for retry delays and due follow-ups (a virtual clock in tests)."""
        self.batch = batch
        self.low_water = low_water
        self.ahead_s = ahead_s
        self._rates: dict[tuple[int, HopperKey], _Rate] = {}
        self.lock_ms = lock_ms
        self._unlock = store.redis.register_script(UNLOCK)
        self._background: dict[tuple[int, HopperKey], asyncio.Task[RefillResult]] = {}
        self._next_due: dict[tuple[int, HopperKey], tuple[int | None, float]] = {}
        """Per hopper: when (epoch ms) the next shared follow-up falls due that it has not put
        first yet (None: none known), and when (monotonic) that was read from Redis."""

    async def refill(
        self, owner: int, assignment: Assignment, crm: Crm | None, hopper: HopperKey
    ) -> RefillResult:
        """Append the next batch of candidates, unless another process is doing it now."""
        key = lock_key(owner, hopper)
        me = secrets.token_hex(8)
        if not await self.store.redis.set(key, me, nx=True, px=self.lock_ms):
            return RefillResult(None)
        try:
            started = time.perf_counter()
            queued = await self.store.hopper_length(owner, hopper)
            now = self.clock()
            async with self.engine.connect() as conn:
                limit = self.batch + queued  # the queued ones come back first: skipped
                due = await due_candidates(
                    conn, assignment, crm, now, segment_ids=hopper.segment_ids, limit=limit
                )
                found = await candidates(
                    conn, assignment, crm, now, segment_ids=hopper.segment_ids, limit=limit, due=due
                )
                upcoming = await upcoming_follow_ups(conn, assignment.id, now)
            if due:
                # Due shared follow-ups go before the candidates already waiting (rule 11).
                await self.store.refill(owner, hopper, due[: self.batch], front=True)
            refilled = await self.store.refill(owner, hopper, found)
            await self._note_upcoming(owner, assignment.id, upcoming)
            return RefillResult(refilled, len(found), (time.perf_counter() - started) * 1000)
        finally:
            await self._unlock(keys=[key], args=[me])

    def low_on(self, owner: int, hopper: HopperKey, remaining: int) -> bool:
        """A claim from ``hopper`` left ``remaining`` candidates: whether to refill now (at or
        under ``low_water``, or under REFILL_AHEAD_S of this process's recent claims)."""
        slot = (owner, hopper)
        now = time.monotonic()
        rate = self._rates.get(slot)
        if rate is None:
            rate = self._rates[slot] = _Rate(now)
        ahead = min(rate.note(now) * self.ahead_s, self.batch)
        return remaining <= max(self.low_water, ahead)

    def refill_soon(
        self, owner: int, assignment: Assignment, crm: Crm | None, hopper: HopperKey
    ) -> None:
        """Start a refill in the background (at most one per hopper in this process)."""
        slot = (owner, hopper)
        running = self._background.get(slot)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self.refill(owner, assignment, crm, hopper))
        task.add_done_callback(_quiet)
        self._background[slot] = task

    # Rule 11 to the second: a shared follow-up falling due jumps a full hopper ----------------

    async def note_due(
        self, owner: int, assignment_id: int, customer_id: int, at: datetime
    ) -> None:
        """A shared follow-up of the customer falls due at ``at``: the assignment's hoppers put
        it first then (this process's at once, other processes' within DUE_RECHECK_S)."""
        await self._note_upcoming(owner, assignment_id, {customer_id: at})

    async def _note_upcoming(
        self, owner: int, assignment_id: int, upcoming: dict[int, datetime]
    ) -> None:
        if not upcoming:
            return
        await self.store.redis.zadd(
            due_key(owner, assignment_id), {str(k): to_ms(v) for k, v in upcoming.items()}
        )
        for slot in [s for s in self._next_due if s[0] == owner]:
            if slot[1].assignment_id == assignment_id:
                del self._next_due[slot]

    async def put_due_first(
        self, owner: int, assignment: Assignment, crm: Crm | None, hopper: HopperKey
    ) -> int:
        """Before a claim: when a shared follow-up has fallen due since this hopper last looked,
        put the due customers before every candidate waiting (rule 11). Returns how many; most
        calls only compare two numbers."""
        slot = (owner, hopper)
        now = self.clock()
        known = self._next_due.get(slot)
        if known is None or time.monotonic() - known[1] > DUE_RECHECK_S:
            known = self._next_due[slot] = (
                await self._read_next_due(owner, hopper),
                time.monotonic(),
            )
        if known[0] is None or known[0] > to_ms(now):
            return 0
        key = lock_key(owner, hopper) + ":due"
        me = secrets.token_hex(8)
        if not await self.store.redis.set(key, me, nx=True, px=self.lock_ms):
            return 0  # another process is doing it right now
        try:
            async with self.engine.connect() as conn:
                due = await due_candidates(
                    conn, assignment, crm, now, segment_ids=hopper.segment_ids, limit=self.batch
                )
            if due:
                await self.store.refill(owner, hopper, due, front=True)
            # Up to the time the query saw: one falling due later is still ahead. Entries a day
            # past due were put first by every hopper in use by now: let them go.
            await self.store.redis.set(hopper.promoted_key(owner), to_ms(now))
            await self.store.redis.zremrangebyscore(
                due_key(owner, hopper.assignment_id), "-inf", to_ms(now) - DAY_MS
            )
            self._next_due.pop(slot, None)
            return len(due)
        finally:
            await self._unlock(keys=[key], args=[me])

    async def _read_next_due(self, owner: int, hopper: HopperKey) -> int | None:
        """The first due time (ms) in the assignment's due set after the hopper's last look."""
        redis = self.store.redis
        done = await redis.get(hopper.promoted_key(owner))
        low = f"({int(done)}" if done is not None else "-inf"
        first = await redis.zrangebyscore(
            due_key(owner, hopper.assignment_id), low, "+inf", start=0, num=1, withscores=True
        )
        return int(first[0][1]) if first else None

    async def drain(self) -> None:
        """Wait for background refills (shutdown, tests)."""
        tasks = [task for task in self._background.values() if not task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _quiet(task: asyncio.Task[Any]) -> None:
    # A failed background refill is retried by the next claim that finds the hopper low.
    if not task.cancelled():
        task.exception()
