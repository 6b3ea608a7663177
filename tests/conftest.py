"""The system under test, set up like production: a real Redis and a real, migrated database.

REDIS_URL / DATABASE_URL point the suite at running servers (CI's second pass: PostgreSQL and
Redis). Unset, it starts an embedded redis-server and uses a SQLite file, as `make run` does.
On PostgreSQL every run gets its own schema, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db.engine import async_url, make_engine, migrate
from realtime.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dialhub")


@pytest.fixture(scope="session")
def redis_url(work_dir: Path) -> Iterator[str]:
    """A Redis for the whole run: the configured one, or an embedded redis-server."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with EmbeddedRedis(work_dir / "redis") as server:
        yield server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def database(work_dir: Path) -> dict[str, str | None]:
    """Where the suite's database lives: {"url": async URL, "schema": PostgreSQL schema}."""
    url = async_url(os.environ.get("DATABASE_URL"), work_dir / "dialhub.sqlite3")
    schema = None if url.startswith("sqlite") else f"dialhub_test_{uuid.uuid4().hex[:10]}"
    return {"url": url, "schema": schema}


@pytest.fixture(scope="session")
async def engine(database: dict[str, str | None]) -> AsyncIterator[AsyncEngine]:
    """The migrated database, shared by the run; tests isolate by making their own tenants."""
    url, schema = database["url"], database["schema"]
    assert url is not None
    if schema:
        admin = make_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await admin.dispose()
    db = make_engine(url, schema=schema)
    await migrate(db)
    yield db
    await db.dispose()
    if schema:
        admin = make_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
