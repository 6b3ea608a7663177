"""What every request handler needs, opened once per process by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from dialer.dial_modes import Dialer
from dialer.hopper import Hopper
from dialer.next_customer import NextCustomer
from dialer.work_loop import WorkLoop
from domain.db.engine import async_url, make_engine, reads
from presence.agents import AgentPresence, UserEvents
from presence.selections import Released, Selection, SelectionStore
from presence.service import SelectionService
from realtime.phone_system import open_dialer
from realtime.settings import Settings

REDIS_POOL_SIZE = 128


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
    redis: aioredis.Redis
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
    # Blocking pool: a burst of connects waits for a Redis connection instead of opening
    # thousands of sockets.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=REDIS_POOL_SIZE,
        timeout=10,
    )
    client = aioredis.Redis.from_pool(pool)
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


async def close_services(services: Services) -> None:
    try:
        await services.dialer.hopper.drain()
        await services.redis.aclose()
    finally:
        await services.engine.dispose()


def services_of(connection: HTTPConnection) -> Services:
    """The Services of the app serving `connection` (HTTP request or WebSocket)."""
    return connection.app.state.services
