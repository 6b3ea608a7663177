"""The system under test, set up like production: a real Redis and a real, migrated database.

REDIS_URL / DATABASE_URL point the suite at running servers (CI's second pass: PostgreSQL and
Redis). Unset, it starts an embedded redis-server and uses a SQLite file, as `make run` does.
On PostgreSQL every run gets its own schema, dropped at the end. Tests of a Redis Cluster get
one of their own (``redis_cluster_ports``): three redis-server processes in cluster mode on
loopback ports, joined with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db.engine import async_url, make_engine, migrate
from realtime.embedded import EmbeddedRedis, free_port, redis_server_binary


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


# A Redis Cluster ---------------------------------------------------------------------------


def redis_cli_binary() -> str:
    """The redis-cli next to the redis-server we run, else the machine's."""
    bundled = Path(redis_server_binary()).with_name("redis-cli")
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("redis-cli")
    if found is None:
        pytest.skip("no redis-cli to create a cluster with")
    return found


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, Redis 6.2) is free as well."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="session")
def redis_cluster_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three redis-server processes joined into one cluster (no replicas); stopped at the end."""
    base = tmp_path_factory.mktemp("redis-cluster")
    nodes: list[EmbeddedRedis] = []
    try:
        for index in range(3):
            node = EmbeddedRedis(
                base / f"node{index}",
                port=cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ),
            )
            nodes.append(node.start())
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for_cluster_ok([node.port for node in nodes])
        yield [node.port for node in nodes]
    finally:
        for node in nodes:
            node.stop()


def wait_for_cluster_ok(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for port in ports:
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                info = client.cluster("INFO")
                states.append(info.get("cluster_state") == "ok")
            finally:
                client.close()
        if all(states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster not ok after {timeout}s")
        time.sleep(0.1)
