"""What every request handler needs, opened once per process by the app's lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from dialer.dial_modes import Dialer
from dialer.hopper import Hopper
from dialer.next_customer import NextCustomer
from dialer.work_loop import WorkLoop
from domain.db.engine import async_url, make_engine, reads
from presence.agents import AgentPresence, UserEvents
from presence.packing import pack_in_c
from presence.selections import Released, Selection, SelectionStore
from presence.service import SelectionService
from realtime.phone_system import open_dialer
from realtime.settings import Settings

REDIS_POOL_SIZE = 128
WARM_UP_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


class NamesShown:
    """The names each selection this node told supervisors of was shown with, until it ends:
    its release's row then needs no look-up (a selection's names stay as they were shown).
    Keyed by the selection's token; bounded, the oldest forgotten first."""

    def __init__(self, most: int = 20_000) -> None:
        self.most = most
        self._names: dict[tuple[int, int, int], tuple[str, str]] = {}

    def remember(self, selection: Selection, names: tuple[str, str]) -> None:
        if len(self._names) >= self.most:
            del self._names[next(iter(self._names))]
        self._names[(selection.owner, selection.customer_id, selection.token)] = names

    def forget(self, released: Released) -> tuple[str, str] | None:
        return self._names.pop((released.owner, released.customer_id, released.token), None)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis | RedisCluster
    selections: SelectionService
    presence: AgentPresence
    events: UserEvents
    dialer: NextCustomer
    work: WorkLoop
    calls: Dialer
    """This node's dialer: calls for the agents connected here (realtime/dialing.py)."""
    reads: AsyncEngine
    """The engine for blocks that only read (domain.db.engine.reads)."""
    names: NamesShown = field(default_factory=NamesShown)
    """The names the node's live selections were shown to supervisors with."""


def open_redis(url: str, *, cluster: bool = False) -> aioredis.Redis | RedisCluster:
    """The node's Redis client: one server, or a Redis Cluster of which ``url`` names one node.

    Every key, script and channel of one data owner carries the owner's hash tag, so each
    script runs on the one node that holds the owner's slot and the cluster client routes it
    there. Events are PUBLISHed from those scripts, and a Redis Cluster delivers a PUBLISH to
    subscribers on every node, so the hub's one pub/sub connection (on any node) hears them."""
    if cluster:
        # One pool per cluster node, of this size each; redis-py packs the commands.
        return RedisCluster.from_url(
            url, decode_responses=True, health_check_interval=30, max_connections=REDIS_POOL_SIZE
        )
    # Blocking pool: a burst of connects waits for a Redis connection instead of opening
    # thousands of sockets.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=REDIS_POOL_SIZE,
        timeout=10,
    )
    return aioredis.Redis.from_pool(pack_in_c(pool))


def open_services(settings: Settings) -> Services:
    """Engine and Redis client for `settings`; nothing connects until first use."""
    if not settings.redis_url:
        raise RuntimeError(
            "REDIS_URL is not set: `dialhub serve` starts an embedded Redis when it is unset"
        )
    engine = make_engine(
        async_url(settings.database_url, settings.sqlite_path),
        schema=settings.database_schema,
        pool_size=settings.db_pool_size,
    )
    client = open_redis(settings.redis_url, cluster=settings.redis_cluster)
    store = SelectionStore(client)
    selections = SelectionService(engine, store)
    dialer = NextCustomer(engine, selections, Hopper(engine, store))
    calls = open_dialer(settings, engine, dialer)
    return Services(
        settings=settings,
        engine=engine,
        redis=client,
        selections=selections,
        dialer=dialer,
        work=WorkLoop(engine, selections, dialer, calls=calls),
        reads=reads(engine),
        calls=calls,
        presence=AgentPresence(
            client,
            timeout_s=settings.presence_timeout_seconds,
            stream_length=settings.event_stream_length,
        ),
        events=UserEvents(client, stream_length=settings.event_stream_length),
    )


async def warm_up(services: Services) -> None:
    """Open the node's connections before it serves: the database pool's (PostgreSQL) and as
    many to Redis, each used once. A node that starts cold opens them in its first busy second
    instead, a database session per request that finds the pool empty, and answers that second
    many times slower (bench/fanout.py saw 285 ms). A database or Redis that does not answer
    in WARM_UP_TIMEOUT_S is logged and left to the requests (and /readyz) to find."""
    size = services.settings.db_pool_size

    async def database() -> None:
        if services.engine.dialect.name != "postgresql":
            return  # SQLite: a file, opened in no time
        together = asyncio.Barrier(size)

        async def hold_one() -> None:
            try:
                async with services.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                    await together.wait()  # all open at once: the pool keeps every one
            except BaseException:
                await together.abort()
                raise

        await asyncio.gather(*(hold_one() for _ in range(size)))

    async def redis() -> None:
        await asyncio.gather(*(services.redis.ping() for _ in range(min(size, REDIS_POOL_SIZE))))

    for name, step in (("database", database), ("Redis", redis)):
        try:
            async with asyncio.timeout(WARM_UP_TIMEOUT_S):
                await step()
        except Exception as exc:  # the node serves anyway; /readyz reports what is down
            log.warning("warming up the %s connections failed: %r", name, exc)


def freeze_startup_heap() -> None:
    """Keep what the process built to start (imported modules, compiled statements, opened
    pools: some 100,000 objects) out of every later garbage collection. Python's full
    collections walk every tracked object, and with these among them each one stopped the event
    loop for 40-60 ms every few seconds under load (bench/claims.py); without them, 3-5 ms.
    Called once a node has started, and by the benches that run the service layer in-process."""
    gc.collect()
    gc.freeze()


async def close_services(services: Services) -> None:
    try:
        await services.dialer.hopper.drain()
        await services.redis.aclose()
    finally:
        await services.engine.dispose()


def services_of(connection: HTTPConnection) -> Services:
    """The Services of the app serving `connection` (HTTP request or WebSocket)."""
    return connection.app.state.services
