"""What the benches do to and read from PostgreSQL around a measured phase (bench._nodes): a
CHECKPOINT after the seed, and the WAL a phase wrote."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._nodes import WalWindow, checkpoint


async def test_a_phase_reports_the_wal_it_wrote_and_the_files_ready_ahead(
    engine: AsyncEngine,
) -> None:
    window = await WalWindow(engine).start()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TEMPORARY TABLE wal_probe (n integer)"))
        await conn.execute(text("INSERT INTO wal_probe VALUES (1), (2)"))
    figures = await window.stop()
    if engine.dialect.name != "postgresql":
        assert figures == {"wal_bytes": None, "wal_files_ahead": None}
        return
    # A temporary table's rows skip the WAL, its catalog rows and the commit do not.
    assert figures["wal_bytes"] > 0
    assert figures["wal_files_ahead"] is None or figures["wal_files_ahead"] >= 0


async def test_the_checkpoint_after_a_seed_runs_where_postgresql_allows_it(
    engine: AsyncEngine,
) -> None:
    ran = await checkpoint(engine)
    if engine.dialect.name != "postgresql":
        assert ran is False
        return
    async with engine.connect() as conn:
        allowed = (
            await conn.execute(
                text(
                    "SELECT rolsuper OR pg_has_role(current_user, 'pg_checkpoint', 'MEMBER')"
                    " FROM pg_roles WHERE rolname = current_user"
                )
            )
        ).scalar()
    assert ran is bool(allowed)
