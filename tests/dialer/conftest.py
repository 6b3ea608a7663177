"""List work runs against the run's real Redis and database; loss tests get a Redis of their own.

Each test makes its own data owner (tests/dialer/lists.py), so tests never see each other's
customers or keys; FLUSHALL only ever hits a private redis-server started here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from list_work import ListWork, Stack, make_list, make_stack
from owners import forget_owner
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def private_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module alone: the one tests may FLUSHALL."""
    with EmbeddedRedis(tmp_path_factory.mktemp("private-redis")) as server:
        yield server.url


@pytest.fixture
async def new_list(
    engine: AsyncEngine, redis_url: str
) -> AsyncIterator[Callable[..., Awaitable[ListWork]]]:
    """Make a list of this test alone (its Redis keys are removed before and after)."""
    owners: list[int] = []

    async def make(**options: Any) -> ListWork:
        work = await make_list(engine, **options)
        owners.append(work.owner)
        await forget_owner(redis_url, work.owner)
        return work

    yield make
    for owner in owners:
        await forget_owner(redis_url, owner)


@pytest.fixture
async def stack(engine: AsyncEngine, redis_url: str) -> AsyncIterator[Stack]:
    """Selection service and dialer of one server process, on the run's Redis."""
    built = make_stack(engine, redis_url)
    yield built
    await built.aclose()


@pytest.fixture
async def private_stack(engine: AsyncEngine, private_redis_url: str) -> AsyncIterator[Stack]:
    """The same on the private Redis."""
    built = make_stack(engine, private_redis_url)
    yield built
    await built.aclose()
