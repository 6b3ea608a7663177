"""Next right customer under load: `python bench/claims.py`.

One assignment of BENCH_CLAIMS_CUSTOMERS customers (default 1,000,000) and BENCH_CLAIMS_AGENTS
agents (default 200) as asyncio tasks of this one process, each looping claim -> outcome -> next
through the service layer as `customer.save` with "next from list" does: the outcome, the release
and the next claim in one transaction (NextCustomer.save_and_move_on), shared with the agents
saving at the same moment (a group commit). Every outcome is progressive (the customer leaves
`available`), so no customer may be handed out twice at all: duplicates are counted in this
process and again from the database's history.

Three phases, BENCH_CLAIMS_SECONDS (default 20), BENCH_CLAIMS_PACED_SECONDS (default 20) and
BENCH_CLAIMS_SOLO_SECONDS (default 5) each (or BENCH_CLAIMS_MAX claims):
- flat out: every agent loops without a pause. `claims_per_s` is what one process sustains;
  its latencies (`saturated_p50_ms`, `saturated_p99_ms`) are queueing, not service: with 200
  agents and no pause, each loop takes 200 / (claims a second) on average (Little's law).
- paced: the agents together start BENCH_CLAIMS_RATE loops a second (default 2,000, the
  target), each agent on a fixed grid (a real agent talks between two customers); `p50_ms` and
  `p99_ms` are the claims' latencies at that rate, `rate_claims_per_s` the rate reached, and
  `late` counts the agents' slots missed.
- alone: one agent flat out, so every batch holds one request (`alone_p50_ms`: a claim loop's
  latency with nothing to wait for; `alone_cpu_ms_per_claim`: what a batch costs this process
  whatever its size, against `cpu_ms_per_claim` of the phases where batches are large).
A claim's latency is the call handing out the customer (the first claim, then each save going
next: outcome, release and claim together).

Beside them, the same run times Hopper.refill of 1,000 candidates from the full table (before
and after the phases), a bare EVALSHA loop on the same Redis client with as many tasks, and
(PostgreSQL) the floor: the same loop's database statements alone, prepared, on raw asyncpg
connections, one agent per transaction (`db_floor_loops_per_s`) and 50 agents per transaction,
pipelined (`db_floor_batched_loops_per_s`). While the agents run (and while the floor runs), the
machine's CPU is accounted for: how busy all its cores were (`machine_busy`, 1.0 = every core
all the time), the share a hypervisor took (`steal`), this process's CPU per claim, that of
the machine's PostgreSQL and Redis processes (`postgres_cpu_ms_per_claim`,
`redis_cpu_ms_per_claim`, backends started meanwhile included) and everything else's
(`other_cpu_ms_per_claim`). Each phase also gives its p99 second by second (`p99_ms_by_second`)
and, on PostgreSQL, the WAL it wrote (`wal_kb_per_claim`, `wal_mb`) and how many WAL files lay
recycled ahead when it began (`wal_files_ahead`; a phase writing more 16 MB files than that
made PostgreSQL create and zero-fill each next one while every commit waited). The seed ends
with a CHECKPOINT (where allowed), so the phases run as on a database in service: the seed's
pages written out and its WAL files recycled ahead.
`batches` says how the group commits grouped.

PostgreSQL from DATABASE_URL, else the machine's own (postgres@127.0.0.1:5432/test) if it
answers, in a fresh schema dropped at the end; else a SQLite file in a temporary directory.
Redis from REDIS_URL, else the machine's own on 127.0.0.1:6379 if it answers, else an embedded
redis-server (as bench/fanout.py). The data owner gets a random large id and its Redis keys are
deleted at the end. The last output line is JSON:
{"bench": "claims", "claims_per_s": .., "p50_ms": .., "p99_ms": .., "duplicates": 0,
 "redis_evalsha_per_s": .., "rate": 2000, "rate_claims_per_s": .., "saturated_p99_ms": ..,
 "db_floor_loops_per_s": .., "refill_1000_ms": .., "customers": N, "database": "postgresql"}
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._nodes import (
    LOCAL_REDIS,
    SERVER_NAMES,
    CpuWindow,
    WalWindow,
    analyze,
    checkpoint,
    database,
    forget_owner,
    percentile,
    redis_server,
)
from dialer.hopper import Hopper
from dialer.next_customer import NextCustomer
from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.outcomes import Outcomes
from domain.errors import SelectionLost
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import AssignmentSetup, CrmKind, HistoryKind, Role
from presence.keys import HopperKey
from presence.packing import pack_in_c
from presence.selections import SelectionStore
from presence.service import SelectionService
from realtime.services import freeze_startup_heap

# Both outcomes take the customer out of `available`: a second hand-out is always a duplicate.
FLOW = CustomerFlow(
    statuses=(
        Status(AVAILABLE, "Available"),
        Status("sale", "Sale"),
        Status("not_interested", "Not interested"),
    ),
    outcomes=(
        Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale", sms_template="sale_thanks"),
        Outcome("not_interested", "Not interested", frozenset({AVAILABLE}), "not_interested"),
    ),
)
OUTCOMES = ("sale", "not_interested")
SEED_BATCH = 50_000
REFILL_RUNS = 5
EVALSHA_SECONDS = 3.0
PHASE_GAP_S = 1.0
"""Quiet between the phases: the paced agents start on a process and a database that have
finished the flat-out phase's releases and commits, not in their wake."""
TRIVIAL = "-- trivial: no keys, no arguments; returns 1 (the round trip alone)\nreturn 1"


def redis_kind(url: str) -> str:
    """Which Redis the run used: REDIS_URL's, the machine's own, or one it started."""
    if url == os.environ.get("REDIS_URL"):
        return "external"
    return "local" if url == LOCAL_REDIS else "embedded"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Bench:
    owner: int
    assignment_id: int
    agents: list[int]
    customers: int


@dataclass
class Tally:
    """What the agents did: per-call latencies (ms), who was handed out, what went wrong."""

    latencies: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    """When each claim of ``latencies`` was answered (perf_counter), in the same order."""
    handed_out: set[int] = field(default_factory=set)
    duplicates: int = 0
    outcomes: int = 0
    empty: int = 0
    started: float = 0.0
    """When the phase started (perf_counter)."""
    last: float = 0.0
    """When the last claim was answered (perf_counter)."""
    late: int = 0
    """Slots of paced loops missed (a loop that started a whole period late or more)."""
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    cpu_s: float = 0.0
    """CPU time of this process while the agents ran (the machine may be shared)."""
    machine: dict[str, Any] = field(default_factory=dict)
    """Where the machine's CPU went meanwhile (bench._nodes.CpuWindow)."""
    wal: dict[str, Any] = field(default_factory=dict)
    """PostgreSQL's WAL meanwhile (bench._nodes.WalWindow)."""


# Set-up ---------------------------------------------------------------------------------------


async def seed(engine: AsyncEngine, n: int, n_agents: int) -> Bench:
    """A data owner (random large id), a CRM, one assignment, agents, n available customers.

    A third of the customers were tried once or twice before (more than the retry delay ago),
    so the list order has work to do."""
    tag = uuid.uuid4().hex[:10]
    owner_id = random.SystemRandom().randrange(3_000_000_000, 4_000_000_000)
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bench-claims-{tag}", id=owner_id)
        crm = await repo.create_crm(conn, owner.id, "Bench CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(
            conn, owner.id, crm.id, "Bench list", FLOW, AssignmentSetup()
        )
        agents = [
            (
                await repo.create_user(
                    conn,
                    owner.id,
                    f"bench-{tag}-{i}",
                    f"Agent {i}",
                    Role.AGENT,
                    "",
                    password_hash="x",
                )
            ).id
            for i in range(n_agents)
        ]
    segment = assignment.unsegmented.id
    tried = datetime.now(UTC) - timedelta(hours=3)
    started = time.perf_counter()
    for first in range(0, n, SEED_BATCH):
        records = []
        for i in range(first, min(n, first + SEED_BATCH)):
            attempts = i % 3
            records.append(
                (
                    owner.id,
                    crm.id,
                    f"{i:07d}",
                    f"Customer {i}",
                    "[]",
                    None,
                    "{}",
                    assignment.id,
                    segment,
                    AVAILABLE,
                    attempts,
                    tried if attempts else None,
                )
            )
        async with engine.begin() as conn:
            await repo.insert_customer_records(conn, records)
        log(f"seeded {first + len(records):>9,} / {n:,}")
    await analyze(engine)
    if await checkpoint(engine):
        log("checkpoint after the seed: its WAL files recycled ahead, as in a database in service")
    log(f"seeded in {time.perf_counter() - started:.1f} s")
    return Bench(owner.id, assignment.id, agents, n)


# Measurements ---------------------------------------------------------------------------------


async def time_refills(dialer: NextCustomer, bench: Bench) -> list[float]:
    """Hopper.refill of 1,000 candidates into an empty hopper, REFILL_RUNS times (ms each)."""
    assignment, crm = await dialer.list_of(bench.owner, bench.assignment_id)
    hopper = HopperKey.of(bench.assignment_id)
    runs = []
    for _ in range(REFILL_RUNS):
        await dialer.store.hopper_clear(bench.owner, hopper)
        result = await dialer.hopper.refill(bench.owner, assignment, crm, hopper)
        assert result.refilled is not None and result.refilled.added == dialer.hopper.batch
        runs.append(result.ms)
    await dialer.store.hopper_clear(bench.owner, hopper)
    return runs


async def evalsha_per_s(client: Any, tasks: int, seconds: float) -> float:
    """Calls per second of a trivial registered script, from `tasks` concurrent tasks."""
    script = client.register_script(TRIVIAL)
    await script()
    deadline = time.perf_counter() + seconds
    calls = 0

    async def loop() -> None:
        nonlocal calls
        while time.perf_counter() < deadline:
            await script()
            calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    return calls / (time.perf_counter() - started)


FLOOR_SECONDS = 8.0
FLOOR_GROUP = 50
"""Agents per transaction in the batched floor."""
FLOOR_CUSTOMERS = 400_000
FLOOR_CONNECTIONS = int(os.environ.get("BENCH_CLAIMS_POOL") or 32)  # as the engine's pool
# One claim -> outcome -> next loop's database work as bare SQL (what the service layer sends on
# PostgreSQL, follow-ups and Redis aside): the outcome (fence, then status + history), then the
# move on (release + history, next selection + history), two transactions.
FLOOR_FENCE = (
    "SELECT status FROM customers"
    " WHERE id = $1 AND holder_user_id = $2 AND selection_token = $3 FOR UPDATE"
)
FLOOR_OUTCOME = (
    "WITH w AS (UPDATE customers SET status = 'sale', version = version + 1, updated_at = now()"
    " WHERE id = $1 RETURNING id) INSERT INTO history (customer_id, at, kind, user_id,"
    " assignment_id, data) SELECT $1, now(), 'outcome', $2, $3, '{}'::json FROM w"
)
FLOOR_RELEASE = (
    "WITH w AS (UPDATE customers SET holder_user_id = NULL, selected_at = NULL WHERE id = $1"
    " AND selection_token <= $3 RETURNING id) INSERT INTO history (customer_id, at, kind,"
    " user_id, assignment_id, data) SELECT $1, now(), 'released', $2, $4, '{}'::json FROM w"
)
FLOOR_LOCK = "SELECT id FROM customers WHERE id = $1 FOR UPDATE"
FLOOR_SELECT = (
    "WITH w AS (UPDATE customers SET holder_user_id = $2, selection_token = $3,"
    " selected_at = now(), version = version + 1 WHERE id = $1 AND status = 'available'"
    " AND holder_user_id IS NULL RETURNING id) INSERT INTO history (customer_id, at, kind,"
    " user_id, assignment_id, data) SELECT $1, now(), 'selected', $2, $4, '{}'::json FROM w"
)


async def database_floor(
    engine: AsyncEngine, bench: Bench, tasks: int
) -> dict[str, tuple[float, dict[str, Any]]] | None:
    """Loops per second of the same database work alone (FLOOR_*), prepared statements on raw
    asyncpg connections, ``tasks`` concurrent agents, on customers the agents did not reach,
    with where the machine's CPU went meanwhile (bench._nodes.CpuWindow): "alone", each loop
    its two transactions (what any service layer writing one agent at a time stays under), and
    "batched", FLOOR_GROUP agents' loops in the same two transactions, each statement
    pipelined for all of them (what a group commit stays under). None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    import asyncpg

    url = engine.url.set(drivername="postgresql")
    search_path = engine.dialect.default_schema_name
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        search_path = (await raw.driver_connection.fetchval("SHOW search_path")) or search_path
    await engine.dispose()  # its connections back to the server: as many again here
    pool = await asyncpg.create_pool(
        url.render_as_string(hide_password=False),
        min_size=FLOOR_CONNECTIONS,
        max_size=FLOOR_CONNECTIONS,
        server_settings={"search_path": search_path},
    )
    try:
        async with pool.acquire() as c:
            free = [
                r[0]
                for r in await c.fetch(
                    "SELECT id FROM customers WHERE assignment_id = $1 AND status = 'available'"
                    " AND holder_user_id IS NULL ORDER BY id DESC LIMIT $2",
                    bench.assignment_id,
                    FLOOR_CUSTOMERS,
                )
            ]
        ids = iter(free)
        token = iter(range(10**12, 10**13))
        users = bench.agents[:tasks]
        aid = bench.assignment_id
        held: dict[int, tuple[int, int]] = {}  # user -> (customer, token)
        async with pool.acquire() as c, c.transaction():
            for user in users:
                customer, t = next(ids), next(token)
                await c.execute(FLOOR_SELECT, customer, user, t, aid)
                held[user] = (customer, t)

        async def alone(user: int, deadline: float) -> int:
            loops = 0
            customer, t = held[user]
            while time.perf_counter() < deadline and (following := next(ids, None)):
                async with pool.acquire() as c:
                    async with c.transaction():
                        await c.fetchrow(FLOOR_FENCE, customer, user, t)
                        await c.execute(FLOOR_OUTCOME, customer, user, aid)
                    async with c.transaction():
                        await c.execute(FLOOR_RELEASE, customer, user, t, aid)
                        t = next(token)
                        await c.execute(FLOOR_SELECT, following, user, t, aid)
                customer = following
                loops += 1
            held[user] = (customer, t)
            return loops

        async def batched(group: list[int], deadline: float) -> int:
            loops = 0
            while time.perf_counter() < deadline:
                now = sorted((*held[u], u) for u in group)  # (customer, token, user)
                nexts = [(next(ids, None), next(token), u) for _c, _t, u in now]
                if any(n is None for n, _t, _u in nexts):
                    break
                async with pool.acquire() as c:
                    async with c.transaction():
                        await c.fetchmany(FLOOR_FENCE, [(cid, u, t) for cid, t, u in now])
                        await c.executemany(FLOOR_OUTCOME, [(cid, u, aid) for cid, _t, u in now])
                    async with c.transaction():
                        await c.fetchmany(FLOOR_LOCK, [(cid,) for cid, _t, _u in now])
                        await c.executemany(FLOOR_RELEASE, [(cid, u, t, aid) for cid, t, u in now])
                        await c.executemany(FLOOR_SELECT, [(n, u, t, aid) for n, t, u in nexts])
                for n, t, u in nexts:
                    held[u] = (n, t)
                loops += len(group)
            return loops

        async def timed(runs: list[Any]) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            window = CpuWindow({"bench": [os.getpid()]}).start()
            loops = sum(await asyncio.gather(*runs))
            return loops / (time.perf_counter() - started), window.stop()

        floors = {}
        deadline = time.perf_counter() + FLOOR_SECONDS
        floors["alone"] = await timed([alone(u, deadline) for u in users])
        deadline = time.perf_counter() + FLOOR_SECONDS
        groups = [users[i : i + FLOOR_GROUP] for i in range(0, len(users), FLOOR_GROUP)]
        floors["batched"] = await timed([batched(g, deadline) for g in groups])
        return floors
    finally:
        await pool.close()


@dataclass(frozen=True)
class Pace:
    """Agents working at a given rate: agent ``i`` starts its loops on a grid, at ``start +
    (i / agents + k) * period``; a loop that ends a whole period late goes on at once and then
    keeps to the next slot of its grid (the slots missed are counted in ``Tally.late``), so a
    system that cannot keep up shows it as a rate below the target, not as a burst of catching
    up, and agents held up at the same moment do not move in step from then on."""

    start: float
    period: float
    agents: int

    def first(self, index: int) -> float:
        return self.start + index * self.period / self.agents


async def agent(
    dialer: NextCustomer,
    outcomes: Outcomes,
    bench: Bench,
    user_id: int,
    tally: Tally,
    budget: Callable[[], bool],
    due: float | None = None,
    period: float = 0.0,
) -> None:
    """Claim, save an outcome as the holder, move on to the next: until the budget is spent.
    ``due``: when to start (then every ``period`` after it); None: flat out."""
    rng = random.Random(user_id)

    async def timed(call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        selection = await call
        tally.last = time.perf_counter()
        tally.latencies.append((tally.last - started) * 1000)
        tally.answered.append(tally.last)
        return selection

    async def wait() -> None:
        nonlocal due
        if due is None:
            return
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > period:
            # Slots missed: go on now, and from the next slot of this agent's own grid on, so
            # agents held up together (a slow moment) do not stay in step ever after.
            missed = int((now - due) // period)
            tally.late += missed
            due += missed * period
        due += period

    await wait()
    selection = await timed(dialer.claim(bench.owner, user_id, bench.assignment_id))
    while selection is not None:
        if selection.customer_id in tally.handed_out:
            tally.duplicates += 1
        tally.handed_out.add(selection.customer_id)
        holding = fencing.Holding(selection.customer_id, user_id, selection.token)
        if not budget():
            # The phase is over: the last outcome is saved on its own (as "save, then My Work").
            await outcomes.save(_outcome(rng, holding))
            tally.outcomes += 1
            break
        await wait()
        # As customer.save with "next from list" goes on: the outcome, the release of the
        # customer saved and the next claim, in one transaction (NextCustomer.save_and_move_on).
        _saved, moved = await timed(
            dialer.save_and_move_on(selection, _outcome(rng, holding), bench.assignment_id)
        )
        tally.outcomes += 1
        if isinstance(moved, SelectionLost):
            raise moved
        _released, selection = moved
    else:
        tally.empty += 1


def _outcome(rng: random.Random, holding: fencing.Holding) -> fencing.OutcomeAsk:
    return fencing.OutcomeAsk(holding, rng.choice(OUTCOMES), {}, datetime.now(UTC))


async def run_agents(
    dialer: NextCustomer,
    outcomes: Outcomes,
    bench: Bench,
    handed_out: set[int],
    seconds: float,
    most: int,
    rate: float | None = None,
) -> tuple[Tally, float]:
    """One phase: every agent loops for ``seconds`` (or ``most`` claims), flat out, or paced
    so that together they start ``rate`` loops a second."""
    started = time.perf_counter()
    tally = Tally(handed_out=handed_out, started=started)
    deadline = started + seconds
    pace = None if rate is None else Pace(started, len(bench.agents) / rate, len(bench.agents))

    def budget() -> bool:
        return time.perf_counter() < deadline and len(tally.latencies) < most

    async def guarded(index: int, user_id: int) -> None:
        try:
            if pace is None:
                await agent(dialer, outcomes, bench, user_id, tally, budget)
            else:
                first = pace.first(index)
                await agent(dialer, outcomes, bench, user_id, tally, budget, first, pace.period)
        except Exception as exc:  # counted and reported: the bench must not hide a failure
            tally.errors[type(exc).__name__] += 1
            if tally.first_error is None:
                tally.first_error = traceback.format_exc()

    wal = await WalWindow(dialer.engine).start()
    cpu = time.process_time()
    window = CpuWindow({"bench": [os.getpid()]}, SERVER_NAMES).start()
    await asyncio.gather(*(guarded(i, u) for i, u in enumerate(bench.agents)))
    tally.machine = window.stop()
    tally.wal = await wal.stop()
    tally.cpu_s = time.process_time() - cpu
    # The phase has ended for every agent: now they let go of what they hold, as work.stop
    # does (not timed; while agents still claimed, 200 releases at once would weigh on the
    # last claims of a phase they are not part of).
    release = dialer.selections.release_user
    await asyncio.gather(*(release(bench.owner, user_id) for user_id in bench.agents))
    return tally, max(tally.last - started, 1e-9)


def by_second(tally: Tally) -> list[float]:
    """The p99 (ms) of the claims answered in each second of a phase: where its tail came from
    (the phase's first second, a refill, a checkpoint) rather than one figure for all of it."""
    seconds: dict[int, list[float]] = {}
    for at, ms in zip(tally.answered, tally.latencies, strict=True):
        seconds.setdefault(int(at - tally.started), []).append(ms)
    return [round(percentile(seconds[s], 0.99), 1) for s in sorted(seconds)]


def phase_figures(tally: Tally, elapsed: float) -> dict[str, Any]:
    """A phase's figures: claims a second, latencies, CPU per claim and where the rest went."""
    claims = len(tally.latencies)
    wal_bytes = tally.wal.get("wal_bytes")
    return {
        "claims": claims,
        "seconds": round(elapsed, 2),
        "claims_per_s": round(claims / elapsed),
        "p50_ms": round(percentile(tally.latencies, 0.50), 2),
        "p99_ms": round(percentile(tally.latencies, 0.99), 2),
        "cpu_ms_per_claim": round(tally.cpu_s * 1000 / max(claims, 1), 2),
        "other_cpu_ms_per_claim": round(tally.machine["other_cpu_s"] * 1000 / max(claims, 1), 2),
        **{
            f"{server}_cpu_ms_per_claim": round(
                tally.machine[f"{server}_cpu_s"] * 1000 / max(claims, 1), 2
            )
            for server in ("postgres", "redis")
        },
        "machine_busy": tally.machine["machine_busy"],
        "steal": tally.machine["steal"],
        "late": tally.late,
        "errors": dict(tally.errors),
        "p99_ms_by_second": by_second(tally),
        "wal_kb_per_claim": None
        if wal_bytes is None
        else round(wal_bytes / 1024 / max(claims, 1), 2),
        "wal_mb": None if wal_bytes is None else round(wal_bytes / 2**20, 1),
        "wal_files_ahead": tally.wal.get("wal_files_ahead"),
    }


async def recorded_duplicates(engine: AsyncEngine, bench: Bench) -> tuple[int, int]:
    """(customers selected more than once, customers selected) per the database's history."""
    h = t.history.c
    per_customer = (
        select(h.customer_id, func.count().label("n"))
        .where(h.assignment_id == bench.assignment_id, h.kind == HistoryKind.SELECTED.value)
        .group_by(h.customer_id)
        .subquery()
    )
    async with engine.connect() as conn:
        twice = (
            await conn.execute(
                select(func.count()).select_from(per_customer).where(per_customer.c.n > 1)
            )
        ).scalar_one()
        selected = (await conn.execute(select(func.count()).select_from(per_customer))).scalar_one()
    return twice, selected


# The run ----------------------------------------------------------------------------------------


async def main() -> dict[str, Any]:
    n = env_int("BENCH_CLAIMS_CUSTOMERS", 1_000_000)
    n_agents = env_int("BENCH_CLAIMS_AGENTS", 200)
    seconds = float(os.environ.get("BENCH_CLAIMS_SECONDS") or 20)
    most = env_int("BENCH_CLAIMS_MAX", 200_000)
    rate = float(os.environ.get("BENCH_CLAIMS_RATE") or 2000)
    paced_seconds = float(os.environ.get("BENCH_CLAIMS_PACED_SECONDS") or 20)
    solo_seconds = float(os.environ.get("BENCH_CLAIMS_SOLO_SECONDS") or 5)
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp:
        work_dir = Path(tmp)
        pool = env_int("BENCH_CLAIMS_POOL", 32)
        async with (
            database(work_dir, "claims", probe_local=True, pool_size=pool) as db,
            redis_server(work_dir, probe_local=True) as redis_url,
        ):
            engine = db.engine
            client = aioredis.Redis.from_url(
                redis_url, decode_responses=True, max_connections=2 * n_agents + 64
            )
            pack_in_c(client.connection_pool)  # as a node's client packs
            bench = None
            try:
                bench = await seed(engine, n, n_agents)
                await forget_owner(redis_url, bench.owner)
                store = SelectionStore(client)
                await store.load_scripts()
                selections = SelectionService(engine, store)
                dialer = NextCustomer(engine, selections, Hopper(engine, store))
                await selections.ensure_ready(bench.owner)

                refills = await time_refills(dialer, bench)
                log(f"refill 1000: {[round(r, 1) for r in refills]} ms")
                evalsha = await evalsha_per_s(client, n_agents, EVALSHA_SECONDS)
                log(f"bare EVALSHA: {evalsha:,.0f}/s with {n_agents} tasks")

                outcomes = Outcomes(engine)
                handed_out: set[int] = set()
                freeze_startup_heap()  # as a node does once it has started
                log(f"flat out: {n_agents} agents for {seconds:.0f} s")
                flat, flat_s = await run_agents(dialer, outcomes, bench, handed_out, seconds, most)
                log(f"flat out: {phase_figures(flat, flat_s)}")
                await dialer.hopper.drain()
                await asyncio.sleep(PHASE_GAP_S)
                log(f"paced: {n_agents} agents at {rate:,.0f} claims/s for {paced_seconds:.0f} s")
                paced, paced_s = await run_agents(
                    dialer, outcomes, bench, handed_out, paced_seconds, most, rate
                )
                log(f"paced: {phase_figures(paced, paced_s)}")
                await dialer.hopper.drain()
                await asyncio.sleep(PHASE_GAP_S)
                log(f"alone: 1 agent for {solo_seconds:.0f} s")
                one = replace(bench, agents=bench.agents[:1])
                solo, solo_s = await run_agents(
                    dialer, outcomes, one, handed_out, solo_seconds, most
                )
                log(f"alone: {phase_figures(solo, solo_s)}")
                await dialer.hopper.drain()
                for tally in (flat, paced, solo):
                    if tally.first_error:
                        log(tally.first_error)
                db_duplicates, db_selected = await recorded_duplicates(engine, bench)
                refills_after = await time_refills(dialer, bench)
                log(f"refill 1000 after the run: {[round(r, 1) for r in refills_after]} ms")
                floors = await database_floor(engine, bench, n_agents)
                for name, (per_s, cpu) in (floors or {}).items():
                    log(f"the same database work, {name}: {per_s:,.0f} loops/s, {cpu}")
            finally:
                if bench is not None:
                    await forget_owner(redis_url, bench.owner)
                await client.aclose()
    at_rate = phase_figures(paced, paced_s)
    flat_out = phase_figures(flat, flat_s)
    alone = phase_figures(solo, solo_s)
    seen = flat.duplicates + paced.duplicates + solo.duplicates
    return {
        "bench": "claims",
        "claims_per_s": flat_out["claims_per_s"],
        "p50_ms": at_rate["p50_ms"],
        "p99_ms": at_rate["p99_ms"],
        "duplicates": max(seen, db_duplicates),
        "redis_evalsha_per_s": round(evalsha),
        "rate": rate,
        "rate_claims_per_s": at_rate["claims_per_s"],
        "saturated_p50_ms": flat_out["p50_ms"],
        "saturated_p99_ms": flat_out["p99_ms"],
        "flat_out": flat_out,
        "paced": at_rate,
        "alone": alone,
        "alone_p50_ms": alone["p50_ms"],
        "alone_cpu_ms_per_claim": alone["cpu_ms_per_claim"],
        "duplicates_seen": seen,
        "duplicates_recorded": db_duplicates,
        "recorded_selections": db_selected,
        "outcomes": flat.outcomes + paced.outcomes + solo.outcomes,
        "batches": {
            "outcomes": _grouping(outcomes.batches),
            "moves_on": _grouping(selections.move_ons),
        },
        "agents": n_agents,
        "cores": flat.machine["cores"],
        "db_floor_loops_per_s": None if floors is None else round(floors["alone"][0]),
        "db_floor_batched_loops_per_s": None if floors is None else round(floors["batched"][0]),
        "db_floor_machine_busy": None if floors is None else floors["alone"][1]["machine_busy"],
        "refill_1000_ms": round(statistics.median(refills + refills_after), 1),
        "refill_1000_runs_ms": [round(r, 1) for r in refills + refills_after],
        "customers": n,
        "database": db.kind,
        "redis": redis_kind(redis_url),
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def _grouping(batches: Any) -> dict[str, Any]:
    """How a group commit grouped: requests, batches, requests per batch."""
    per = batches.requests / batches.batches if batches.batches else 0.0
    return {"requests": batches.requests, "batches": batches.batches, "mean": round(per, 1)}


def run() -> dict[str, Any]:
    try:
        import uvloop  # the loop uvicorn picks when it is installed, as the server runs
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


if __name__ == "__main__":
    print(json.dumps(run()))
