"""Engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), and the migration entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str | None, sqlite_path: Path) -> str:
    """The SQLAlchemy async URL for DATABASE_URL, or a SQLite file when it is unset."""
    if not url:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{sqlite_path}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database '{backend}': use PostgreSQL or SQLite")


def json_dumps(value: Any) -> str:
    """The JSON columns' encoder: orjson, some ten times quicker than the standard library on
    the small objects every history row carries (three a claim loop); what orjson refuses
    (an integer past 64 bits) goes through the standard library as before."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    """The JSON columns' decoder, orjson's; what only the standard library reads (NaN written
    by an older encoder into SQLite's JSON text) still reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> AsyncEngine:
    """An async engine; `schema` (PostgreSQL only) puts every table in that schema."""
    codec = {"json_serializer": json_dumps, "json_deserializer": json_loads}
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **codec)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping before each checkout (a round trip on every transaction of the hot path): a
        # connection that died with a database restart fails its first statement, is dropped
        # from the pool, and the request is answered `internal` for the client to retry.
        pool_recycle=1800,
        connect_args=connect_args,
        **codec,
    )


def reads(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool for blocks that only read: on PostgreSQL each statement runs on
    its own (AUTOCOMMIT), which spares a read-only block its BEGIN and ROLLBACK round trips. At
    READ COMMITTED every statement takes its own snapshot inside a transaction as well, so a
    reader sees nothing different. Never write through it, except a write that is one statement
    (a selection's record: ``fencing.selection_recorded_in_one_statement``), which PostgreSQL
    runs atomically as its own transaction: of several, nothing would roll the first ones back.
    SQLite begins no transaction for reads anyway: its engine as it is."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (Alembic), inside one transaction."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
