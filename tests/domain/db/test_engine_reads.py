"""Read-only blocks on PostgreSQL run without BEGIN and ROLLBACK (domain.db.engine.reads), and
the pooled connection they used is transactional again for the next writer."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.engine import make_engine, reads


async def test_a_read_block_sends_no_begin_and_the_pool_stays_transactional(
    engine: AsyncEngine, database: dict[str, str | None]
) -> None:
    if engine.dialect.name != "postgresql":
        assert reads(engine) is engine  # SQLite begins nothing for reads anyway
        return
    one = make_engine(str(database["url"]), schema=database["schema"], pool_size=1)
    try:
        sent: list[str] = []
        async with reads(one).connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            driver.add_query_logger(lambda record: sent.append(record.query))
            assert (await conn.execute(select(1))).scalar_one() == 1
        assert not [q for q in sent if q.strip(" ;").upper() in ("BEGIN", "ROLLBACK")]
        # The same pooled connection: a writer's rollback undoes its write.
        name = f"reads-{uuid.uuid4().hex[:10]}"
        with pytest.raises(RuntimeError):
            async with one.begin() as conn:
                await repo.create_data_owner(conn, name)
                raise RuntimeError("roll back")
        assert any(q.strip(" ;").upper() == "ROLLBACK" for q in sent)
        async with one.connect() as conn:
            found = await conn.execute(
                select(t.data_owners.c.id).where(t.data_owners.c.name == name)
            )
            assert found.first() is None
    finally:
        await one.dispose()
