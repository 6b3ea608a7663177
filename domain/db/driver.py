"""The hot path's few statements, run on PostgreSQL's driver (asyncpg) inside SQLAlchemy's own
transaction.

SQLAlchemy's execution layer costs about three times the driver's own CPU per statement (the
greenlet hop, the execution context, the result object). The statements a claim loop sends on
every turn (fence, outcome, release, selection) are written as SQLAlchemy Core like every other
statement, compiled once per dialect to the SQL text asyncpg prepares, with the order of its
parameters and their type conversions, and sent on the connection's asyncpg connection.

The transaction stays SQLAlchemy's: ``engine.begin()`` commits or rolls back what these
statements did, and a statement of the usual kind may run before or after them in it. Before
the first such statement the transaction is begun the way SQLAlchemy's asyncpg adapter begins
it on its own first statement (``_start_transaction``). On an AUTOCOMMIT connection
(``domain.db.engine.reads``) each statement runs on its own, as SQLAlchemy would run it; big
reads (the overview's names) take rows as plain tuples. SQLite has no such driver: the
statements run through SQLAlchemy there (``supported``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection


def supported(conn: AsyncConnection) -> bool:
    """Statements of this module run on this connection's driver (PostgreSQL via asyncpg)."""
    return conn.dialect.driver == "asyncpg"


_GIVEN = object()
"""The default of a parameter the caller must give (a bindparam without a value)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


class Statement:
    """One Core statement, compiled once per dialect for the driver."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            built = self.statement.compile(dialect=dialect)
            required = {name for name, bind in built.binds.items() if bind.required}
            # IN lists of fixed values become one parameter each, once: the SQL asyncpg gets.
            expanded = built.construct_expanded_state(dict.fromkeys(required))
            names = tuple(expanded.positiontup or ())
            processors = {**built._bind_processors, **expanded.processors}  # type conversions
            compiled = self._compiled[dialect.name] = _Compiled(
                sql=expanded.statement,
                names=names,
                defaults=tuple(
                    _GIVEN if name in required else expanded.parameters[name] for name in names
                ),
                processors=tuple(processors.get(name) for name in names),
            )
        return compiled

    def _args(self, conn: AsyncConnection, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        compiled = self._for(conn.dialect)
        args = []
        for name, default, process in zip(
            compiled.names, compiled.defaults, compiled.processors, strict=True
        ):
            value = params.get(name, default)
            if value is _GIVEN:
                raise KeyError(f"the statement's parameter '{name}' was not given")
            args.append(value if process is None or value is None else process(value))
        return compiled.sql, args

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any | None:
        """The statement's first row (its columns as attributes), or None: on the driver where
        it is ``supported``, else through SQLAlchemy."""
        if not supported(conn):
            return (await conn.execute(self.statement, params)).first()
        sql, args = self._args(conn, params)
        driver = await _driver(conn)
        row = await driver.fetchrow(sql, *args)
        return None if row is None else SimpleNamespace(**row)

    async def many(self, conn: AsyncConnection, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The statement once per set of ``params``, in order, and the rows of all of them (as
        ``first``'s). On the driver the executions are pipelined: one round trip for all, as
        many executions of one prepared statement (a group commit's batch,
        ``domain.db.group_commit``); else one execution after another through SQLAlchemy."""
        if not params:
            return []
        if not supported(conn):
            rows = []
            for one in params:
                rows += (await conn.execute(self.statement, one)).all()
            return rows
        sql = ""
        args = []
        for one in params:
            sql, values = self._args(conn, one)
            args.append(values)
        driver = await _driver(conn)
        return [SimpleNamespace(**row) for row in await driver.fetchmany(sql, args)]

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        """Every row of a read (its columns as attributes, as ``first``'s): inside the caller's
        transaction when one is open, else on its own, as an AUTOCOMMIT read runs (a read has
        nothing to commit); through SQLAlchemy where the driver is not ``supported``."""
        if not supported(conn):
            return list((await conn.execute(self.statement, params)).all())
        sql, args = self._args(conn, params)
        driver = await _driver(conn, read=True)
        return [SimpleNamespace(**row) for row in await driver.fetch(sql, *args)]

    async def tuples(
        self, conn: AsyncConnection, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row as a plain tuple (thousands at once, no row objects built)."""
        if not supported(conn):
            return [tuple(row) for row in await conn.execute(self.statement, params)]
        sql, args = self._args(conn, params)
        driver = await _driver(conn)
        return [tuple(record) for record in await driver.fetch(sql, *args)]


async def _driver(conn: AsyncConnection, *, read: bool = False) -> Any:
    """The asyncpg connection under ``conn``: on an AUTOCOMMIT connection (engine.reads) as it
    is, each statement on its own; else with SQLAlchemy's transaction begun on it. ``read``:
    the statement only reads, so outside a transaction it runs on its own too."""
    raw = await conn.get_raw_connection()
    adapter = raw.dbapi_connection
    if adapter.autocommit:
        return raw.driver_connection
    if not conn.in_transaction():
        if read:
            return raw.driver_connection  # nothing to commit
        # Outside engine.begin() nothing would commit a write: refuse, never lose it.
        raise RuntimeError("a driver statement runs inside a transaction (engine.begin())")
    if getattr(adapter, "_transaction", None) is None:
        await adapter._start_transaction()
    return raw.driver_connection
