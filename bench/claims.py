"""Next right customer under load: `python bench/claims.py`.

One assignment of BENCH_CLAIMS_CUSTOMERS customers (default 1,000,000), BENCH_CLAIMS_AGENTS
agents (default 200) as asyncio tasks of this one process, each looping claim -> outcome -> next
through the service layer (NextCustomer, SelectionService, fencing.record_outcome), for
BENCH_CLAIMS_SECONDS (default 20) or BENCH_CLAIMS_MAX claims (default 40,000), whichever ends
first. Every outcome is progressive (the customer leaves `available`), so no customer may be
handed out twice at all: duplicates are counted in this process and again from the database's
history. Beside it, the same run times Hopper.refill of 1,000 candidates from the full table,
a bare EVALSHA loop on the same Redis client with as many tasks, and (PostgreSQL) the floor: the
same loop's database statements alone, prepared, on raw asyncpg connections, as baselines. While
the agents run (and while the floor runs), the machine's CPU is accounted for: how busy all its
cores were (`machine_busy`, 1.0 = every core all the time), the share a hypervisor took
(`steal`), this process's CPU per claim and everything else's (`other_cpu_ms_per_claim`:
PostgreSQL, Redis, anything else on the machine).

PostgreSQL from DATABASE_URL, in a fresh schema dropped at the end; unset, a SQLite file in a
temporary directory. Redis from REDIS_URL, else an embedded redis-server. The data owner gets a
random large id and its Redis keys are deleted at the end. The last output line is JSON:
{"bench": "claims", "claims_per_s": .., "p50_ms": .., "p99_ms": .., "duplicates": 0,
 "redis_evalsha_per_s": .., "db_floor_loops_per_s": .., "refill_1000_ms": .., "customers": N,
 "database": "postgresql"}
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._nodes import CpuWindow, analyze, forget_owner, percentile
from dialer.hopper import Hopper
from dialer.next_customer import NextCustomer
from domain.db import fencing
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.engine import async_url, make_engine, migrate
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from domain.model import AssignmentSetup, CrmKind, HistoryKind, Role
from presence.keys import HopperKey
from presence.selections import SelectionStore
from presence.service import SelectionService
from realtime.embedded import EmbeddedRedis

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
TRIVIAL = "-- trivial: no keys, no arguments; returns 1 (the round trip alone)\nreturn 1"


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
    handed_out: set[int] = field(default_factory=set)
    duplicates: int = 0
    outcomes: int = 0
    empty: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    cpu_s: float = 0.0
    """CPU time of this process while the agents ran (the machine may be shared)."""
    machine: dict[str, Any] = field(default_factory=dict)
    """Where the machine's CPU went meanwhile (bench._nodes.CpuWindow)."""


# Set-up ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """A migrated database of this run alone: a fresh PostgreSQL schema, or a SQLite file."""
    pool = env_int("BENCH_CLAIMS_POOL", 32)
    if url.startswith("sqlite"):
        engine = make_engine(url)
        await migrate(engine)
        try:
            yield engine, "sqlite"
        finally:
            await engine.dispose()
        return
    schema = f"bench_claims_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, schema=schema, pool_size=pool)
    try:
        await migrate(engine)
        yield engine, "postgresql"
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def redis_server(work_dir: Path) -> AsyncIterator[tuple[str, str]]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured, "external"
        return
    with EmbeddedRedis(work_dir / "redis") as server:
        yield server.url, "embedded"


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
FLOOR_SELECT = (
    "WITH w AS (UPDATE customers SET holder_user_id = $2, selection_token = $3,"
    " selected_at = now(), version = version + 1 WHERE id = $1 AND status = 'available'"
    " AND holder_user_id IS NULL RETURNING id) INSERT INTO history (customer_id, at, kind,"
    " user_id, assignment_id, data) SELECT $1, now(), 'selected', $2, $4, '{}'::json FROM w"
)


async def database_floor(
    engine: AsyncEngine, bench: Bench, tasks: int
) -> tuple[float, dict[str, Any]] | None:
    """Loops per second of the same database work alone (FLOOR_*), prepared statements on raw
    asyncpg connections, ``tasks`` concurrent tasks, on customers the agents did not reach: the
    ceiling any service layer on this machine's database stays under; with where the machine's
    CPU went meanwhile (bench._nodes.CpuWindow). None on SQLite."""
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
                    200_000,
                )
            ]
        ids = iter(free)
        token = iter(range(10**12, 10**13))
        deadline = time.perf_counter() + FLOOR_SECONDS
        loops = 0

        async def take(c: Any, customer: int, user: int) -> int:
            t = next(token)
            await c.execute(FLOOR_SELECT, customer, user, t, bench.assignment_id)
            return t

        async def loop(user: int) -> None:
            nonlocal loops
            customer = next(ids, None)
            if customer is None:
                return
            async with pool.acquire() as c, c.transaction():
                t = await take(c, customer, user)
            while time.perf_counter() < deadline:
                following = next(ids, None)
                if following is None:
                    return
                async with pool.acquire() as c:
                    async with c.transaction():
                        await c.fetchrow(FLOOR_FENCE, customer, user, t)
                        await c.execute(FLOOR_OUTCOME, customer, user, bench.assignment_id)
                    async with c.transaction():
                        await c.execute(FLOOR_RELEASE, customer, user, t, bench.assignment_id)
                        t = await take(c, following, user)
                customer = following
                loops += 1

        started = time.perf_counter()
        window = CpuWindow({"bench": [os.getpid()]}).start()
        await asyncio.gather(*(loop(u) for u in bench.agents[:tasks]))
        return loops / (time.perf_counter() - started), window.stop()
    finally:
        await pool.close()


async def agent(
    dialer: NextCustomer,
    engine: AsyncEngine,
    bench: Bench,
    user_id: int,
    tally: Tally,
    budget: Callable[[], bool],
) -> None:
    """Claim, save an outcome as the holder, move on to the next: until the budget is spent."""
    rng = random.Random(user_id)

    async def timed(call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        selection = await call
        tally.latencies.append((time.perf_counter() - started) * 1000)
        return selection

    selection = await timed(dialer.claim(bench.owner, user_id, bench.assignment_id))
    while selection is not None:
        if selection.customer_id in tally.handed_out:
            tally.duplicates += 1
        tally.handed_out.add(selection.customer_id)
        holding = fencing.Holding(selection.customer_id, user_id, selection.token)
        async with engine.begin() as conn:
            await fencing.record_outcome(conn, holding, rng.choice(OUTCOMES), {}, datetime.now(UTC))
        tally.outcomes += 1
        if not budget():
            return
        # As customer.save goes on: the selection it ends is named (its token checked).
        _released, selection = await timed(
            dialer.move_on(bench.owner, user_id, bench.assignment_id, expected=selection)
        )
    tally.empty += 1


async def run_agents(
    dialer: NextCustomer, engine: AsyncEngine, bench: Bench, seconds: float, most: int
) -> tuple[Tally, float]:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    def budget() -> bool:
        return time.perf_counter() < deadline and len(tally.latencies) < most

    async def guarded(user_id: int) -> None:
        try:
            await agent(dialer, engine, bench, user_id, tally, budget)
        except Exception as exc:  # counted and reported: the bench must not hide a failure
            tally.errors[type(exc).__name__] += 1
            if tally.first_error is None:
                tally.first_error = traceback.format_exc()

    started, cpu = time.perf_counter(), time.process_time()
    window = CpuWindow({"bench": [os.getpid()]}).start()
    await asyncio.gather(*(guarded(u) for u in bench.agents))
    tally.machine = window.stop()
    tally.cpu_s = time.process_time() - cpu
    return tally, time.perf_counter() - started


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
    most = env_int("BENCH_CLAIMS_MAX", 40_000)
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp:
        work_dir = Path(tmp)
        url = async_url(os.environ.get("DATABASE_URL"), work_dir / "claims.sqlite3")
        async with database(url) as (engine, backend), redis_server(work_dir) as (redis_url, rk):
            client = aioredis.Redis.from_url(
                redis_url, decode_responses=True, max_connections=2 * n_agents + 64
            )
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

                tally, elapsed = await run_agents(dialer, engine, bench, seconds, most)
                await dialer.hopper.drain()
                for user_id in bench.agents:
                    await selections.release_user(bench.owner, user_id)
                if tally.first_error:
                    log(tally.first_error)
                db_duplicates, db_selected = await recorded_duplicates(engine, bench)
                refills_after = await time_refills(dialer, bench)
                log(f"refill 1000 after the run: {[round(r, 1) for r in refills_after]} ms")
                floor = await database_floor(engine, bench, n_agents)
                if floor is not None:
                    log(f"the same database work alone: {floor[0]:,.0f} loops/s, {floor[1]}")
            finally:
                if bench is not None:
                    await forget_owner(redis_url, bench.owner)
                await client.aclose()
    claims = len(tally.latencies)
    return {
        "bench": "claims",
        "claims": claims,
        "seconds": round(elapsed, 2),
        "claims_per_s": round(claims / elapsed),
        "p50_ms": round(percentile(tally.latencies, 0.50), 2),
        "p99_ms": round(percentile(tally.latencies, 0.99), 2),
        "duplicates": max(tally.duplicates, db_duplicates),
        "duplicates_seen": tally.duplicates,
        "duplicates_recorded": db_duplicates,
        "recorded_selections": db_selected,
        "outcomes": tally.outcomes,
        "cpu_ms_per_claim": round(tally.cpu_s * 1000 / max(claims, 1), 2),
        "other_cpu_ms_per_claim": round(tally.machine["other_cpu_s"] * 1000 / max(claims, 1), 2),
        "machine_busy": tally.machine["machine_busy"],
        "steal": tally.machine["steal"],
        "cores": tally.machine["cores"],
        "errors": dict(tally.errors),
        "agents": n_agents,
        "redis_evalsha_per_s": round(evalsha),
        "db_floor_loops_per_s": None if floor is None else round(floor[0]),
        "db_floor_machine_busy": None if floor is None else floor[1]["machine_busy"],
        "refill_1000_ms": round(statistics.median(refills + refills_after), 1),
        "refill_1000_runs_ms": [round(r, 1) for r in refills + refills_after],
        "customers": n,
        "database": backend,
        "redis": rk,
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def run() -> dict[str, Any]:
    try:
        import uvloop  # the loop uvicorn picks when it is installed, as the server runs
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


if __name__ == "__main__":
    print(json.dumps(run()))
