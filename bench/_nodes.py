"""What the benchmarks that run real `dialhub serve` nodes share (a module, not a benchmark).

Where Redis and the database come from, starting and stopping nodes on loopback ports, one
request over a WebSocket, the `ping` round trip every such benchmark reports as its same-run
baseline, and forgetting a bench data owner's Redis keys afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis.asyncio as aioredis
import websockets
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db.engine import async_url, make_engine, migrate
from domain.flows import AVAILABLE, CustomerFlow, Outcome, Status
from presence.agents import OWNERS_KEY
from presence.keys import owner_prefix
from realtime.embedded import EmbeddedRedis, free_port

DIALHUB = str(Path(sys.executable).with_name("dialhub"))
CHECKOUT = Path(__file__).resolve().parent.parent
"""The tree this bench file is in: its nodes run this tree's code."""
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SALE_FLOW = CustomerFlow(
    statuses=(Status(AVAILABLE, "Available"), Status("sale", "Sale")),
    outcomes=(Outcome("sale", "Sale", frozenset({AVAILABLE}), "sale"),),
)
"""The list flow of the benches whose customers are only selected: one outcome, a sale."""


class CpuWindow:
    """Where the machine's CPU went over a stretch of a run: how busy all its cores were
    (1.0: every core all the time), how much a hypervisor took away (steal), and the CPU time
    of named groups of processes; what the groups do not explain is everything else that ran
    (PostgreSQL, Redis, other tenants of the machine). Opened with ``start``, read once with
    ``stop``. A bench whose machine was near 1.0 busy measured the machine, not the code."""

    def __init__(
        self, groups: dict[str, list[int]], named: Mapping[str, str] | None = None
    ) -> None:
        """``groups``: group -> pids. ``named``: process name -> group, for every process of
        that name, those running at ``start`` and those started within the window (a database
        backend for a connection opened meanwhile, all of whose CPU is the window's)."""
        self.groups = {name: [psutil.Process(pid) for pid in pids] for name, pids in groups.items()}
        self.named = dict(named or {})
        self._machine: Any = None
        self._before: dict[int, float] = {}
        """CPU seconds of each process at ``start`` (0 for one started since)."""
        self._wall = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float | None:
        """A process's CPU seconds, None once it has gone."""
        try:
            times = process.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    def _adopt_named(self, *, started: bool) -> None:
        """The processes of ``named``'s names not counted yet, into their groups; ``started``:
        they started within the window (no CPU of theirs came before it)."""
        counted = {p.pid for processes in self.groups.values() for p in processes}
        for process in psutil.process_iter(["name"]):
            group = self.named.get(process.info["name"] or "")
            if group is not None and process.pid not in counted:
                self.groups.setdefault(group, []).append(process)
                if started:
                    self._before[process.pid] = 0.0

    def start(self) -> CpuWindow:
        self._machine = psutil.cpu_times()
        self._adopt_named(started=False)
        for processes in self.groups.values():
            for process in processes:
                self._before[process.pid] = self._cpu(process) or 0.0
        self._wall = time.perf_counter()
        return self

    def _spent(self, name: str) -> float:
        """CPU seconds a group spent in the window (a process that ended meanwhile: none)."""
        total = 0.0
        for process in self.groups[name]:
            now = self._cpu(process)
            if now is not None:
                total += now - self._before[process.pid]
        return total

    def stop(self) -> dict[str, Any]:
        """{"cores", "machine_busy", "steal", "<group>_cpu_s"..., "other_cpu_s"}."""
        wall = time.perf_counter() - self._wall
        self._adopt_named(started=True)
        after = psutil.cpu_times()
        cores = psutil.cpu_count() or 1
        before = self._machine
        total = _all_of(after) - _all_of(before)
        idle = (after.idle - before.idle) + (
            getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0)
        )
        steal = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0)
        figures: dict[str, Any] = {
            "cores": cores,
            "machine_busy": round((total - idle) / total, 3) if total > 0 else None,
            "steal": round(steal / total, 3) if total > 0 else None,
        }
        used = 0.0
        for name in self.groups:
            spent = self._spent(name)
            used += spent
            figures[f"{name}_cpu_s"] = round(spent, 3)
        busy_s = (total - idle - steal) / total * wall * cores if total > 0 else 0.0
        figures["other_cpu_s"] = round(max(0.0, busy_s - used), 3)
        return figures


SERVER_NAMES = {"postgres": "postgres", "redis-server": "redis"}
"""Process name -> CpuWindow group, of the machine's servers a bench drives (PostgreSQL's
backends and Redis, embedded ones included): what they spent, apart from the rest."""


SEEDED_TABLES = ("customers", "users", "history", "grants", "assignments")


async def analyze(engine: AsyncEngine) -> None:
    """The planner's statistics of the tables a seed just filled, as a database in use has them
    (autovacuum gathers them within a minute or so): a bench measures the plans of a live
    database, not those of tables the planner has never looked at."""
    async with engine.begin() as conn:
        for table in SEEDED_TABLES:
            await conn.execute(text(f"ANALYZE {table}"))


async def checkpoint(engine: AsyncEngine) -> bool:
    """After a seed, on PostgreSQL: write its pages out and recycle its WAL files, as a database
    in service has them. A fresh cluster has no WAL files ahead of the one it writes; each next
    one is then created and zero-filled (16 MB) while every commit waits (stalls of 50-180 ms
    every few seconds under the claims load), which a server that has run a while does not do.
    False: not PostgreSQL, or this user may not (CHECKPOINT needs superuser or pg_checkpoint)."""
    if engine.dialect.name != "postgresql":
        return False
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("CHECKPOINT"))
    except DBAPIError:
        return False
    return True


class WalWindow:
    """PostgreSQL's WAL while a phase runs: bytes written, and how many WAL files lay ready
    ahead (recycled) when it began; a phase writing more files than that had PostgreSQL create
    and zero-fill the rest while commits waited. Figures are None where they cannot be read
    (not PostgreSQL; the WAL directory needs superuser or pg_monitor)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._start: str | None = None
        self.ahead: int | None = None

    async def start(self) -> WalWindow:
        if self.engine.dialect.name != "postgresql":
            return self
        async with self.engine.connect() as conn:
            lsn = await conn.execute(text("SELECT pg_current_wal_insert_lsn()::text"))
            self._start = str(lsn.scalar())
            try:
                self.ahead = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'"
                            " AND name > pg_walfile_name(pg_current_wal_insert_lsn())"
                        )
                    )
                ).scalar()
            except DBAPIError:
                await conn.rollback()
        return self

    async def stop(self) -> dict[str, Any]:
        if self._start is None:
            return {"wal_bytes": None, "wal_files_ahead": None}
        async with self.engine.connect() as conn:
            written = (
                await conn.execute(
                    text(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(),"
                        " CAST(CAST(:start AS text) AS pg_lsn))"
                    ),
                    {"start": self._start},
                )
            ).scalar()
        return {"wal_bytes": int(written or 0), "wal_files_ahead": self.ahead}


def _all_of(times: Any) -> float:
    """All CPU time of psutil.cpu_times() (guest time is counted in user time already)."""
    return sum(getattr(times, name) for name in times._fields if not name.startswith("guest"))


def raise_nofile() -> None:
    """Many sockets in one process: take the hard limit of open files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Redis and the database -----------------------------------------------------------------------


async def _redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_server(work: Path, *, probe_local: bool = False) -> AsyncIterator[str]:
    """REDIS_URL; else (with `probe_local`) the machine's Redis if it answers; else an
    embedded redis-server in `work`. Benches never flush a Redis: they use a data owner of
    their own and delete its keys (`forget_owner`)."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    if probe_local and await _redis_answers(LOCAL_REDIS):
        yield LOCAL_REDIS
        return
    with EmbeddedRedis(work / "redis", extra_args=("--maxclients", "10000")) as server:
        yield server.url


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    url: str
    """What the nodes get as DATABASE_URL."""
    schema: str | None
    kind: str


async def _postgres_answers(url: str) -> bool:
    engine = make_engine(url)
    try:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database(
    work: Path, name: str, *, probe_local: bool = False, pool_size: int = 10
) -> AsyncIterator[Database]:
    """A migrated database of this run alone: a fresh schema of DATABASE_URL (or, with
    `probe_local`, of the machine's PostgreSQL if it answers), dropped at the end; else a
    SQLite file in `work`."""
    url = os.environ.get("DATABASE_URL")
    if not url and probe_local and await _postgres_answers(LOCAL_POSTGRES):
        url = LOCAL_POSTGRES
    url = async_url(url, work / f"{name}.sqlite3")
    if url.startswith("sqlite"):
        engine = make_engine(url)
        try:
            await migrate(engine)
            yield Database(engine, url, None, "sqlite")
        finally:
            await engine.dispose()
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, schema=schema, pool_size=pool_size)
    try:
        await migrate(engine)
        yield Database(engine, url, schema, "postgresql")
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def forget_owner(redis_url: str, owner: int) -> None:
    """Delete every Redis key of one data owner (and its entry in the sweepers' set)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match=f"{owner_prefix(owner)}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
        await client.srem(OWNERS_KEY, str(owner))
    finally:
        await client.aclose()


# Nodes ----------------------------------------------------------------------------------------


def node_env(redis_url: str, db: Database, work: Path, secret: str, **extra: str) -> dict[str, str]:
    """The environment of a node: this run's Redis, database and secret, nothing inherited
    from DIALHUB_* of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALHUB_")}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=db.url,
        DIALHUB_SECRET_KEY=secret,
        DIALHUB_VAR_DIR=str(work),
        **extra,
    )
    if db.schema:
        env["DIALHUB_DB_SCHEMA"] = db.schema
    return env


@dataclass(frozen=True)
class Node:
    process: subprocess.Popen[bytes]
    port: int

    def ws(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={token}"


def start_node(env: dict[str, str], cwd: Path) -> Node:
    """`dialhub serve` of this bench's tree on a free loopback port, its stderr in
    `cwd`/node-<port>.log; returns once /readyz answers. The tree goes first on PYTHONPATH: an
    editable install points at one checkout, and a bench run from another (an older commit,
    for a same-run comparison) must not measure that one's code."""
    port = free_port()
    path = [str(CHECKOUT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    process = subprocess.Popen(
        [DIALHUB, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "PYTHONPATH": os.pathsep.join(path)},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=(cwd / f"node-{port}.log").open("wb"),
        preexec_fn=raise_nofile,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a node exited at start; see {cwd}/node-{port}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return Node(process, port)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("a node did not become ready")


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        node.process.terminate()
    for node in nodes:
        try:
            node.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


# The wire ---------------------------------------------------------------------------------------


async def connect(url: str) -> Any:
    """A client WebSocket as the benches use it: no compression, no frame size limit."""
    return await websockets.connect(url, compression=None, max_size=None, open_timeout=60)


async def request(ws: Any, request_id: str, type_: str, **fields: Any) -> dict[str, Any]:
    """Send one request and read frames until its reply (events in between are skipped)."""
    await ws.send(json.dumps({"id": request_id, "type": type_, **fields}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "reply" and frame.get("id") == request_id:
            return frame


async def echo_times(url: str, rounds: int) -> list[float]:
    """The baseline: `ping` round trips in ms on one connection, one at a time."""
    times = []
    async with websockets.connect(url, compression=None) as ws:
        for i in range(rounds):
            started = time.perf_counter()
            await request(ws, f"e{i}", "ping")
            times.append((time.perf_counter() - started) * 1000)
    return times


async def gather_limited(limit: int, calls: list[Any]) -> list[Any]:
    """Await coroutines with at most `limit` running at once; the first failure cancels the
    rest (none is left running against a database about to be dropped)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(c)) for c in calls]
    return [task.result() for task in tasks]
