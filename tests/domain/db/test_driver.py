"""Hot-path statements on the database driver: inside the caller's SQLAlchemy transaction, with
the same type conversions both ways as SQLAlchemy's own execution (domain.db.driver)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import driver
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.engine import reads
from domain.model import CrmKind

AT = datetime(2026, 11, 23, 17, 30, 15, 123000, tzinfo=UTC)
h = t.history.c
ADD = driver.Statement(
    insert(t.history)
    .values(
        customer_id=bindparam("customer_id"),
        at=bindparam("at"),
        kind=bindparam("kind"),
        data=bindparam("data"),
    )
    .returning(h.id, h.at, h.data)
)


async def a_customer(engine: AsyncEngine) -> int:
    tag = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        owner = await repo.create_data_owner(conn, f"driver-{tag}")
        crm = await repo.create_crm(conn, owner.id, "CRM", CrmKind.B2C)
        await repo.insert_customers(
            conn,
            [{"data_owner_id": owner.id, "crm_id": crm.id, "external_id": "c", "name": "C"}],
        )
        customer = await repo.get_customer_by_external_id(conn, owner.id, crm.id, "c")
    assert customer is not None
    return customer.id


def row_of(customer_id: int, kind: str) -> dict[str, object]:
    return {"customer_id": customer_id, "at": AT, "kind": kind, "data": {"token": 7, "n": [1]}}


async def test_a_driver_statement_commits_and_rolls_back_with_the_callers_transaction(
    engine: AsyncEngine,
) -> None:
    customer_id = await a_customer(engine)
    async with engine.begin() as conn:
        written = await ADD.first(conn, row_of(customer_id, "note"))
        assert written.at == AT and written.data == {"token": 7, "n": [1]}
        # A statement of the usual kind, after it in the same transaction, sees it.
        seen = (await conn.execute(select(h.at, h.data).where(h.id == written.id))).one()
        assert (seen.at, seen.data) == (AT, {"token": 7, "n": [1]})
    with pytest.raises(RuntimeError, match="refused"):
        async with engine.begin() as conn:
            await conn.execute(select(h.id).limit(1))  # the usual kind first, then the driver
            await ADD.first(conn, row_of(customer_id, "gone"))
            raise RuntimeError("refused")
    async with engine.connect() as conn:
        kinds = (await conn.execute(select(h.kind).where(h.customer_id == customer_id))).all()
    assert [k for (k,) in kinds] == ["note"]  # the rolled back one left nothing


async def test_a_driver_statement_outside_a_transaction_is_refused(engine: AsyncEngine) -> None:
    customer_id = await a_customer(engine)
    async with engine.connect() as conn:
        if not driver.supported(conn):
            pytest.skip("SQLite runs these statements through SQLAlchemy")
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await ADD.first(conn, row_of(customer_id, "lost"))


async def test_a_parameter_not_given_is_refused_not_sent_as_null(engine: AsyncEngine) -> None:
    customer_id = await a_customer(engine)
    async with engine.begin() as conn:
        if not driver.supported(conn):
            pytest.skip("SQLite runs these statements through SQLAlchemy")
        with pytest.raises(KeyError, match="'kind' was not given"):
            await ADD.first(conn, {"customer_id": customer_id, "at": AT, "data": {}})


async def test_an_in_list_of_fixed_values_is_sent_as_its_values(engine: AsyncEngine) -> None:
    customer_id = await a_customer(engine)
    c = t.customers.c
    among = driver.Statement(
        update(t.customers)
        .where(c.id == bindparam("cid"), c.name.in_(["A", "C"]))
        .values(version=c.version + 1)
        .returning(c.id)
    )
    async with engine.begin() as conn:
        assert (await among.first(conn, {"cid": customer_id})).id == customer_id
        assert await among.first(conn, {"cid": customer_id + 10**9}) is None


async def test_a_read_on_its_own_takes_every_row_as_a_tuple(engine: AsyncEngine) -> None:
    customer_id = await a_customer(engine)
    async with engine.begin() as conn:
        for kind in ("one", "two"):
            await ADD.first(conn, row_of(customer_id, kind))
    kinds = driver.Statement(
        select(h.kind, h.data).where(h.customer_id == bindparam("cid")).order_by(h.id)
    )
    async with reads(engine).connect() as conn:  # AUTOCOMMIT on PostgreSQL
        rows = await kinds.tuples(conn, {"cid": customer_id})
    assert rows == [("one", {"token": 7, "n": [1]}), ("two", {"token": 7, "n": [1]})]


async def test_many_runs_the_statement_once_per_set_of_parameters_in_order(
    engine: AsyncEngine,
) -> None:
    """A group commit's pipelined statement: every execution's rows, in order, with the same
    type conversions, inside the caller's transaction (rolled back with it)."""
    customer_id = await a_customer(engine)
    async with engine.begin() as conn:
        written = await ADD.many(conn, [row_of(customer_id, k) for k in ("a", "b", "c")])
        assert [w.at for w in written] == [AT] * 3
        assert [w.data for w in written] == [{"token": 7, "n": [1]}] * 3
        assert written[0].id < written[1].id < written[2].id
        assert await ADD.many(conn, []) == []
    with pytest.raises(RuntimeError, match="refused"):
        async with engine.begin() as conn:
            await ADD.many(conn, [row_of(customer_id, "gone"), row_of(customer_id, "gone")])
            raise RuntimeError("refused")
    async with engine.connect() as conn:
        kinds = (
            await conn.execute(select(h.kind).where(h.customer_id == customer_id).order_by(h.id))
        ).all()
    assert [k for (k,) in kinds] == ["a", "b", "c"]


async def test_a_read_runs_in_the_callers_transaction_or_on_its_own(engine: AsyncEngine) -> None:
    """``rows``: inside an open transaction it sees that transaction's own writes; on a
    connection with none open (a plain connect, or AUTOCOMMIT) it reads on its own and leaves
    nothing open behind it."""
    customer_id = await a_customer(engine)
    kinds = driver.Statement(
        select(h.kind, h.data).where(h.customer_id == bindparam("cid")).order_by(h.id)
    )
    with pytest.raises(RuntimeError, match="undone"):
        async with engine.begin() as conn:
            await ADD.first(conn, row_of(customer_id, "mine"))
            seen = await kinds.rows(conn, {"cid": customer_id})
            assert [(r.kind, r.data) for r in seen] == [("mine", {"token": 7, "n": [1]})]
            raise RuntimeError("undone")
    async with engine.connect() as conn:
        assert await kinds.rows(conn, {"cid": customer_id}) == []
        assert not conn.in_transaction() or not driver.supported(conn)
    async with reads(engine).connect() as conn:
        assert await kinds.rows(conn, {"cid": customer_id}) == []
