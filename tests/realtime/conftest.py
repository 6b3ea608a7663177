"""The hub under test: two server nodes as real processes on the run's Redis and database."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_kit import Node, Tenant, make_tenant, node_env, start_node
from owners import forget_owner
from shop_kit import Shop, make_shop

from realtime.services import Services, close_services, open_services
from realtime.settings import Settings


@pytest.fixture(scope="session")
def hub_env(
    engine: AsyncEngine, database: dict[str, str | None], redis_url: str, work_dir: Path
) -> dict[str, str]:
    """The environment of every node: the migrated database (the `engine` fixture) and Redis."""
    return node_env(database, redis_url, work_dir / "nodes")


@pytest.fixture(scope="session")
def node_dir(work_dir: Path) -> Path:
    path = work_dir / "nodes"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def nodes(hub_env: dict[str, str], node_dir: Path) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B, serving the same users."""
    started: list[Node] = []
    try:
        started.append(start_node(hub_env, node_dir))
        started.append(start_node(hub_env, node_dir))
        yield started[0], started[1]
    finally:
        for node in started:
            node.kill()


@pytest.fixture
def spare_node(hub_env: dict[str, str], node_dir: Path) -> Iterator[Callable[..., Node]]:
    """Start more nodes for one test (to kill or stop them); gone at its end."""
    started: list[Node] = []

    def start(**extra_env: str) -> Node:
        node = start_node(hub_env, node_dir, **extra_env)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


@pytest.fixture
async def new_tenant(
    engine: AsyncEngine, redis_url: str
) -> AsyncIterator[Callable[..., Awaitable[Tenant]]]:
    owners: list[int] = []

    async def make(**options: Any) -> Tenant:
        tenant = await make_tenant(engine, **options)
        owners.append(tenant.owner)
        return tenant

    yield make
    for owner in owners:
        await forget_owner(redis_url, owner)


@pytest.fixture
async def services(
    engine: AsyncEngine, database: dict[str, str | None], redis_url: str, work_dir: Path
) -> AsyncIterator[Services]:
    """The services of a node without HTTP: what the tests use to select (no select verb yet)
    and to emit events, exactly as a node does."""
    settings = Settings(
        _env_file=None,
        DATABASE_URL=database["url"],
        DIALHUB_DB_SCHEMA=database["schema"],
        REDIS_URL=redis_url,
        DIALHUB_VAR_DIR=work_dir,
        DIALHUB_PRESENCE_TIMEOUT=1.5,
    )
    opened = open_services(settings)
    yield opened
    await close_services(opened)


@pytest.fixture
async def new_shop(engine: AsyncEngine, redis_url: str) -> AsyncIterator[Any]:
    """Make a shop (shop_kit) of this test alone; its Redis keys go at the end."""
    owners: list[int] = []

    async def make(**options: Any) -> Shop:
        shop = await make_shop(engine, **options)
        owners.append(shop.owner)
        return shop

    yield make
    for owner in owners:
        await forget_owner(redis_url, owner)
