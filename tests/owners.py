"""A data owner of one test alone, on the shared Redis: a random id, and its keys removed after
(never FLUSHALL: other runs use the same Redis). Every test kit takes its owners from here."""

from __future__ import annotations

import random

import redis.asyncio as aioredis

from presence.agents import OWNERS_KEY
from presence.keys import owner_prefix


def new_owner_id() -> int:
    """A random id far above what a database's sequence hands out (benches use 3e9 and up)."""
    return random.SystemRandom().randrange(1_000_000_000, 3_000_000_000)


async def forget_owner(redis_url: str, owner: int) -> None:
    """Delete every Redis key of one data owner, and its entry in the presence sweepers' set."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{owner_prefix(owner)}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
        await client.srem(OWNERS_KEY, str(int(owner)))
    finally:
        await client.aclose()
