"""The Alembic history builds exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db.engine import alembic_config, current_revision, migrate
from domain.db.tables import metadata


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_revision_ids_follow_one_line() -> None:
    revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    ids = sorted(r.revision for r in revisions)
    assert ids == [f"{i:04d}" for i in range(1, len(ids) + 1)]


async def test_migrations_reach_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head()


async def test_migrated_schema_matches_tables(engine: AsyncEngine) -> None:
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


async def test_migrate_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await migrate(engine)
    assert await current_revision(engine) == head()


async def test_list_and_my_work_indexes_exist(engine: AsyncEngine) -> None:
    def indexes(sync_conn):
        inspector = inspect(sync_conn)
        return {
            table: {ix["name"] for ix in inspector.get_indexes(table)}
            for table in ("customers", "follow_ups", "history")
        }

    async with engine.connect() as conn:
        found = await conn.run_sync(indexes)
    assert {"ix_customers_list", "ix_customers_shared_due"} <= found["customers"]
    assert {"ix_follow_ups_my_work", "ix_follow_ups_shared"} <= found["follow_ups"]
    assert "ix_history_customer" in found["history"]
