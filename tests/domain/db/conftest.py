"""Bulk work runs against the run's real Redis and database, each test in a data owner of its
own (bulk_world), its Redis keys removed before and after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from bulk_world import World, make_world
from owners import forget_owner
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.selections import SelectionStore


@pytest.fixture
async def new_world(
    engine: AsyncEngine, redis_url: str
) -> AsyncIterator[Callable[..., Awaitable[World]]]:
    owners: list[int] = []

    async def make(**options: Any) -> World:
        world = await make_world(engine, **options)
        owners.append(world.owner)
        await forget_owner(redis_url, world.owner)
        return world

    yield make
    for owner in owners:
        await forget_owner(redis_url, owner)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[SelectionStore]:
    """The real selection store on the run's Redis."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield SelectionStore(client)
    await client.aclose()
