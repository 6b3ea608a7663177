"""What every request handler needs, opened once per process by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from domain.db.engine import async_url, make_engine
from realtime.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    redis: aioredis.Redis


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
    client = aioredis.Redis.from_url(
        settings.redis_url, decode_responses=True, health_check_interval=30
    )
    return Services(settings=settings, engine=engine, redis=client)


async def close_services(services: Services) -> None:
    await services.redis.aclose()
    await services.engine.dispose()


def services_of(connection: HTTPConnection) -> Services:
    """The Services of the app serving `connection` (HTTP request or WebSocket)."""
    return connection.app.state.services
