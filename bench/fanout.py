"""Selected Customers fan-out across nodes: `python bench/fanout.py`.

Two `dialhub serve` nodes share one Redis and one database. BENCH_FANOUT_SELECTIONS agents
(default 5,000) hold a selection each, taken through the service layer before the nodes start.
BENCH_FANOUT_WATCHERS supervisors (default 50), split over both nodes, each send
`selected.watch`; `snapshot_ms` is the median time of those answers (5,000 rows each; sent one
at a time, so each is timed alone), `snapshot_max_ms` the slowest. Then BENCH_FANOUT_AGENTS more
agents (default 100, split over both nodes) select (`customer.select`, a fresh customer each
time) and release (`work.stop`) in turn over the wire, paced at BENCH_FANOUT_RATE changes a
second (default 200): first for BENCH_FANOUT_WARMUP_SECONDS (default 3), then, after a second's
pause, for BENCH_FANOUT_SECONDS (default 20). The figures are those of the second run: a node's
first second of work is slower (each database connection prepares each statement once, each
database session fills its caches), and `warmup_p99_ms` reports it on its own.

Every change is timed from sending its request to the arrival of its `selected.changed` at
each watcher: `p50_ms` / `p99_ms` over every (change, watcher) delivery, `every_p99_ms` over
changes until the last watcher had it. `lost` counts deliveries that never arrived (each
watcher waits up to DRAIN_S after the last change). Beside them: the agents' own answers
(`select_reply_p50_ms`, `release_reply_p50_ms`), how long after its answer the last watcher
had a change (`last_after_reply_p50_ms`: the fan-out beyond the verb), the CPU spent per change
by both nodes, by this client and by everything else (PostgreSQL, Redis, other tenants), and how
busy the machine's cores were meanwhile (`machine_busy`, 1.0 = all of them all the time;
`steal`: the share a hypervisor took). As a same-run baseline, `ping` round trips are timed on
both nodes (`echo_p50_ms`).

Redis: REDIS_URL, else the machine's Redis on 127.0.0.1:6379 if it answers, else an embedded
redis-server. Database: DATABASE_URL, else the machine's PostgreSQL (postgres@127.0.0.1:5432/test)
if it answers, else a SQLite file; PostgreSQL in a fresh schema dropped at the end. The data owner
gets a random large id and its Redis keys are deleted at the end. The last output line is JSON:
{"bench": "fanout", "changes_per_s": .., "p50_ms": .., "p99_ms": .., "snapshot_ms": .., "lost": 0,
 "echo_p50_ms": .., ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
import websockets
from sqlalchemy import text

from bench._nodes import (
    SALE_FLOW,
    CpuWindow,
    Database,
    Node,
    analyze,
    checkpoint,
    connect,
    database,
    echo_times,
    forget_owner,
    gather_limited,
    node_env,
    percentile,
    raise_nofile,
    redis_server,
    request,
    start_node,
    stop_nodes,
)
from domain.db import repositories as repo
from domain.model import CrmKind, Role
from presence.selections import SelectionStore
from presence.service import SelectionService
from realtime.tokens import issue_token

SECRET = "bench-fanout-secret"
ECHO_ROUNDS = 300
HOLD_CONCURRENCY = 16
CONNECT_CONCURRENCY = 50
REQUEST_TIMEOUT_S = 10.0
DRAIN_S = 5.0
"""How long watchers may still receive after the last change before the rest counts lost."""
SETTLE_S = 1.0


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def log(message: str) -> None:
    print(f"[fanout] {message}", file=sys.stderr, flush=True)


# Set-up ---------------------------------------------------------------------------------------


@dataclass
class Seeded:
    owner: int
    holders: list[int]
    agents: list[int]
    supervisors: list[int]
    held: list[int]
    """The customers the holders hold, one each."""
    pool: list[int]
    """Fresh customers the agents select, each once."""


async def seed(db: Database, n_held: int, n_agents: int, n_watchers: int, n_pool: int) -> Seeded:
    """A data owner (random large id) with one assignment, its users and customers."""
    tag = uuid.uuid4().hex[:8]
    owner_id = random.SystemRandom().randrange(5_000_000_000, 6_000_000_000)

    async def users(conn: Any, owner: int, role: Role, label: str, n: int) -> list[int]:
        made = []
        for i in range(n):
            username = f"fan-{label.lower()}{i}-{tag}"
            user = await repo.create_user(
                conn, owner, username, f"{label} {i}", role, "", password_hash="x"
            )
            made.append(user.id)
        return made

    async with db.engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"bench-fanout-{tag}", id=owner_id)
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        assignment = await repo.create_assignment(conn, owner.id, crm.id, "Fan-out", SALE_FLOW)
        holders = await users(conn, owner.id, Role.AGENT, "Holder", n_held)
        agents = await users(conn, owner.id, Role.AGENT, "Agent", n_agents)
        supervisors = await users(conn, owner.id, Role.SUPERVISOR, "Supervisor", n_watchers)
        for agent in agents:
            await repo.grant(conn, agent, assignment.id)
        await repo.insert_customers(
            conn,
            [
                {
                    "data_owner_id": owner.id,
                    "crm_id": crm.id,
                    "external_id": f"f{i}",
                    "name": f"Customer {i}",
                    "assignment_id": assignment.id,
                    "segment_id": assignment.unsegmented.id,
                }
                for i in range(n_held + n_pool)
            ],
        )
        rows = await conn.execute(
            text("SELECT id, external_id FROM customers WHERE crm_id = :crm"), {"crm": crm.id}
        )
        by_external = {external: cid for cid, external in rows.all()}
    customers = [by_external[f"f{i}"] for i in range(n_held + n_pool)]
    return Seeded(owner.id, holders, agents, supervisors, customers[:n_held], customers[n_held:])


async def hold(db: Database, redis_url: str, seeded: Seeded) -> None:
    """Every holder selects its customer through the service layer (Redis and database)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        selections = SelectionService(db.engine, SelectionStore(client))
        await gather_limited(
            HOLD_CONCURRENCY,
            [
                selections.select(seeded.owner, user, customer)
                for user, customer in zip(seeded.holders, seeded.held, strict=True)
            ],
        )
    finally:
        await client.aclose()


# The clients --------------------------------------------------------------------------------


Key = tuple[str, int]
"""A change as watchers see it: (op, customer id); each customer is selected and released once."""


class Watcher:
    """A supervisor's connection: reads every frame and stamps each `selected.changed`."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.arrivals: list[tuple[float, str]] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # Stamp first, parse later: the reader does as little as it can per frame.
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                if '"selected.changed"' in raw:
                    self.arrivals.append((time.perf_counter(), raw))

    def keys(self) -> dict[Key, float]:
        seen: dict[Key, float] = {}
        for at, raw in self.arrivals:
            data = json.loads(raw)["data"]
            seen.setdefault((data["op"], int(data["customer_id"])), at)
        return seen


@dataclass
class Tally:
    sent: dict[Key, float] = field(default_factory=dict)
    replied: dict[Key, float] = field(default_factory=dict)
    replies_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"selected": [], "released": []}
    )
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Agent:
    """An agent's connection that selects a fresh customer and releases it, in turn."""

    def __init__(self, ws: Any, user_id: int) -> None:
        self.ws = ws
        self.user_id = user_id
        self.holds: int | None = None
        self.requests = itertools.count()

    async def change(self, pool: Iterator[int], tally: Tally) -> None:
        request_id = f"c{next(self.requests)}"
        if self.holds is None:
            customer = next(pool)
            key: Key = ("selected", customer)
            verb, fields = "customer.select", {"customer_id": str(customer)}
        else:
            key = ("released", self.holds)
            verb, fields = "work.stop", {}
        started = time.perf_counter()
        tally.sent[key] = started
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                reply = await request(self.ws, request_id, verb, **fields)
        except TimeoutError:
            tally.error("timeout")
            return  # the change may still happen: it stays expected
        tally.replied[key] = time.perf_counter()
        tally.replies_ms[key[0]].append((tally.replied[key] - started) * 1000)
        if not reply["ok"]:
            del tally.sent[key]
            error = reply["error"]
            tally.error(error["code"])
            if error["code"] == "user_has_selection":
                # An earlier select went through without its answer: release that one next.
                self.holds = int(error["customer_id"])
            return
        if verb == "customer.select":
            self.holds = key[1]
        elif reply["data"].get("released"):
            self.holds = None
        else:
            del tally.sent[key]
            tally.error("nothing_released")


async def churn(
    agents: list[Agent], pool: Iterator[int], rate: int, seconds: float
) -> tuple[Tally, float]:
    """Changes at `rate` a second for `seconds`; each agent has one request in flight at most.
    Returns the tally and the seconds the changes took to send."""
    tally = Tally()
    idle: asyncio.Queue[Agent] = asyncio.Queue()
    for agent in agents:
        idle.put_nowait(agent)

    async def run(agent: Agent) -> None:
        try:
            await agent.change(pool, tally)
        finally:
            idle.put_nowait(agent)

    running: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    deadline = started + seconds * 1.5 + REQUEST_TIMEOUT_S
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                agent = await idle.get()
        except TimeoutError:
            break
        task = asyncio.create_task(run(agent))
        running.add(task)
        task.add_done_callback(running.discard)
    sent_s = time.perf_counter() - started
    if running:
        await asyncio.wait(running, timeout=REQUEST_TIMEOUT_S * 2)
    return tally, sent_s


async def drain(watchers: list[Watcher], expected: int) -> None:
    """Wait until every watcher has as many `selected.changed` as changes sent, or DRAIN_S."""
    deadline = time.perf_counter() + DRAIN_S
    while time.perf_counter() < deadline:
        if all(len(w.arrivals) >= expected for w in watchers):
            return
        await asyncio.sleep(0.05)


# The run --------------------------------------------------------------------------------------


def report_node_errors(work: Path) -> None:
    """The first traceback of each node's log, if any, to stderr (the logs go with the run)."""
    for path in sorted(work.glob("node-*.log")):
        text_ = path.read_text(errors="replace")
        start = text_.find("Traceback")
        if start >= 0:
            log(f"{path.name}:\n{text_[max(0, start - 300) : start + 3000]}")


async def measure(work: Path, redis_url: str, db: Database, seeded: Seeded) -> dict[str, Any]:
    rate = env_int("BENCH_FANOUT_RATE", 200)
    seconds = float(env_int("BENCH_FANOUT_SECONDS", 20))
    warmup_s = float(env_int("BENCH_FANOUT_WARMUP_SECONDS", 3))
    env = node_env(
        redis_url,
        db,
        work,
        SECRET,
        DIALHUB_WS_RATE="100000",
        DIALHUB_WS_RATE_BURST="100000",
    )
    nodes: list[Node] = [start_node(env, work), start_node(env, work)]
    sockets: list[Any] = []
    try:
        token = {
            u: issue_token(SECRET, u, 3600).token for u in [*seeded.agents, *seeded.supervisors]
        }
        echo: list[float] = []
        for node in nodes:
            echo += await echo_times(node.ws(token[seeded.supervisors[0]]), ECHO_ROUNDS)

        async def open_agent(i: int, user: int) -> Agent:
            ws = await connect(nodes[i % 2].ws(token[user]))
            await request(ws, "hello", "resume")
            return Agent(ws, user)

        agents = await gather_limited(
            CONNECT_CONCURRENCY, [open_agent(i, u) for i, u in enumerate(seeded.agents)]
        )
        sockets += [a.ws for a in agents]
        log(f"{len(agents)} agents connected")

        watchers: list[Watcher] = []
        snapshots: list[float] = []
        for i, user in enumerate(seeded.supervisors):
            ws = await connect(nodes[i % 2].ws(token[user]))
            sockets.append(ws)
            await request(ws, "hello", "resume")
            started = time.perf_counter()
            reply = await request(ws, "watch", "selected.watch")
            snapshots.append((time.perf_counter() - started) * 1000)
            rows = len(reply["data"]["rows"]) if reply["ok"] else 0
            if rows != len(seeded.held):
                raise SystemExit(f"selected.watch answered {rows} rows, not {len(seeded.held)}")
            watcher = Watcher(ws)
            watcher.start()
            watchers.append(watcher)
        log(f"{len(watchers)} watchers, snapshot p50 {statistics.median(snapshots):.1f} ms")

        await asyncio.sleep(SETTLE_S)
        log(f"changing at {rate}/s for {warmup_s:.0f} s to warm up, then for {seconds:.0f} s")
        pool = iter(seeded.pool)
        warmup, _ = await churn(agents, pool, rate, warmup_s)
        await asyncio.sleep(SETTLE_S)
        expected = len(warmup.sent)
        window = CpuWindow(
            {"node": [node.process.pid for node in nodes], "client": [os.getpid()]}
        ).start()
        tally, sent_s = await churn(agents, pool, rate, seconds)
        await drain(watchers, expected + len(tally.sent))
        cpu = window.stop()
    finally:
        for ws in sockets:
            try:
                async with asyncio.timeout(2):
                    await ws.close()
            except Exception:
                pass
        stop_nodes(nodes)
        report_node_errors(work)

    seen = [w.keys() for w in watchers]
    deliveries, every, after_reply, lost = timings(tally, seen)
    warm_deliveries, _, _, warm_lost = timings(warmup, seen)
    changes = len(tally.sent)
    return {
        "bench": "fanout",
        "changes_per_s": round(changes / sent_s, 1) if sent_s else 0.0,
        "p50_ms": round(statistics.median(deliveries), 2) if deliveries else None,
        "p99_ms": round(percentile(deliveries, 0.99), 2) if deliveries else None,
        "snapshot_ms": round(statistics.median(snapshots), 2),
        "lost": lost,
        "every_p99_ms": round(percentile(every, 0.99), 2) if every else None,
        "warmup_p99_ms": round(percentile(warm_deliveries, 0.99), 2) if warm_deliveries else None,
        "warmup_lost": warm_lost,
        "warmup_errors": warmup.errors,
        "max_ms": round(max(deliveries), 2) if deliveries else None,
        "snapshot_max_ms": round(max(snapshots), 2),
        "last_after_reply_p50_ms": median(after_reply),
        "select_reply_p50_ms": median(tally.replies_ms["selected"]),
        "release_reply_p50_ms": median(tally.replies_ms["released"]),
        "changes": changes,
        **{
            f"{group}_cpu_ms_per_change": round(cpu[f"{group}_cpu_s"] * 1000 / changes, 2)
            if changes
            else None
            for group in ("node", "client", "other")
        },
        "machine_busy": cpu["machine_busy"],
        "steal": cpu["steal"],
        "cores": cpu["cores"],
        "errors": tally.errors,
        "selections": len(seeded.held),
        "watchers": len(watchers),
        "target_rate": rate,
        "echo_p50_ms": round(statistics.median(echo), 2),
        "echo_p99_ms": round(percentile(echo, 0.99), 2),
        "database": db.kind,
    }


def timings(
    tally: Tally, seen: list[dict[Key, float]]
) -> tuple[list[float], list[float], list[float], int]:
    """Of the changes in `tally`: each (change, watcher) delivery's ms, each change's ms until
    its last watcher had it, how long after its answer that was, and deliveries lost."""
    deliveries: list[float] = []
    every: list[float] = []
    after_reply: list[float] = []
    lost = 0
    for key, sent in tally.sent.items():
        arrived = [s[key] for s in seen if key in s]
        lost += len(seen) - len(arrived)
        deliveries += [(at - sent) * 1000 for at in arrived]
        if arrived and len(arrived) == len(seen):
            every.append((max(arrived) - sent) * 1000)
        if arrived and key in tally.replied:
            after_reply.append((max(arrived) - tally.replied[key]) * 1000)
    return deliveries, every, after_reply, lost


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


async def main() -> dict[str, Any]:
    raise_nofile()
    n_held = env_int("BENCH_FANOUT_SELECTIONS", 5000)
    n_watchers = env_int("BENCH_FANOUT_WATCHERS", 50)
    n_agents = env_int("BENCH_FANOUT_AGENTS", 100)
    rate = env_int("BENCH_FANOUT_RATE", 200)
    seconds = env_int("BENCH_FANOUT_SECONDS", 20) + env_int("BENCH_FANOUT_WARMUP_SECONDS", 3)
    n_pool = rate * seconds // 2 + 2 * n_agents
    with tempfile.TemporaryDirectory(prefix="dialhub-fanout-") as tmp:
        work = Path(tmp)
        async with (
            redis_server(work, probe_local=True) as redis_url,
            database(work, "fanout", probe_local=True) as db,
        ):
            seeded = await seed(db, n_held, n_agents, n_watchers, n_pool)
            try:
                started = time.perf_counter()
                await hold(db, redis_url, seeded)
                log(f"{n_held} selections held in {time.perf_counter() - started:.1f} s")
                await analyze(db.engine)
                await checkpoint(db.engine)
                return await measure(work, redis_url, db, seeded)
            finally:
                await forget_owner(redis_url, seeded.owner)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
