"""The durable copy of selections, and the fence every holder's write passes (rules 4, 5, 8).

Redis holds the locks; the database keeps, per customer, its holder, the holder's fencing token
and since when. A selection or release is recorded here in the transaction that writes its
history row. A holder's write starts with ``fence`` in its own transaction: the row is locked and
must still name the holder and token, so a screen whose selection ended (released, replaced,
lost with Redis) can never write, and nothing of a refused write is applied.

``selection_token`` stays on the row after a release: the largest token of an owner's rows is
the high-water mark that lets Redis keep its tokens growing after it lost its data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.codec import flow_from_json
from domain.db.driver import Statement
from domain.errors import DomainError, Invalid, NotFound, SelectionLost
from domain.fields import coerce_value
from domain.flows import AVAILABLE, CustomerFlow, Outcome, check_outcome
from domain.followups import (
    FollowUpPlan,
    attempt_ends_follow_ups,
    plan_attempt,
    plan_outcome_follow_up,
)
from domain.model import (
    Attempt,
    AttemptKind,
    FollowUp,
    HistoryEvent,
    HistoryKind,
    WorkMode,
)

c = t.customers.c


@dataclass(frozen=True, slots=True)
class Holding:
    """Who claims to hold a customer, with which token: what a screen presents to write."""

    customer_id: int
    user_id: int
    token: int


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What saving an outcome did: the status change, the follow-ups it ended and created, and
    the SMS template its flow names (rule 23 sends it, when automatic SMS is on)."""

    customer_id: int
    assignment_id: int
    outcome_key: str
    from_status: str
    status: str
    details: dict[str, Any]
    follow_up: FollowUp | None
    ended_follow_ups: tuple[FollowUp, ...]
    sms_template: str | None
    history_id: int = 0
    """The outcome's history row: names the event (an SMS is queued once per event)."""
    sms_wanted: bool = False
    """Rule 23: the outcome has an SMS flow and automatic SMS is on for its assignment."""

    @property
    def progressive(self) -> bool:
        """The outcome took the customer out of `available` (a progressive outcome)."""
        return self.from_status == AVAILABLE and self.status != AVAILABLE


@dataclass(frozen=True, slots=True)
class DurableHolder:
    """A holder as the database remembers it, to rebuild Redis from."""

    customer_id: int
    user_id: int
    token: int
    selected_at: datetime
    assignment_id: int | None
    segment_id: int | None
    mode: WorkMode


async def fence(conn: AsyncConnection, customer_id: int, user_id: int, token: int) -> None:
    """Rule 8: lock the customer's row for this transaction, or raise SelectionLost when the
    user no longer holds it with this token. Call it first in every holder's write."""
    await _fence_reading(conn, customer_id, user_id, token, _FENCE)


# Hot-path statements are built once with bind parameters: building a statement and its cache
# key costs more CPU than running it. Names of the parameters: cid (customer), uid (user),
# token, owner; names used in SET clauses differ from the column names (SQLAlchemy's rule).
_FENCE_WHERE = (
    c.id == bindparam("cid"),
    c.holder_user_id == bindparam("uid"),
    c.selection_token == bindparam("token"),
)
_FENCE = Statement(
    update(t.customers).where(*_FENCE_WHERE).values(version=c.version + 1).returning(c.id)
)
_HELD_BY = select(c.holder_user_id).where(c.id == bindparam("cid"))


async def _fence_reading(
    conn: AsyncConnection,
    customer_id: int,
    user_id: int,
    token: int,
    statement: Statement,
    **values: Any,
) -> Any:
    """``fence`` with ``statement`` (an UPDATE of _FENCE_WHERE that bumps the version, or on
    PostgreSQL a SELECT of it FOR UPDATE, returning what the write needs of the locked row in
    the same round trip); ``values``: its other parameters. A refused fence writes nothing."""
    params = {"cid": customer_id, "uid": user_id, "token": token, **values}
    locked = await statement.first(conn, params)
    if locked is None:
        held_by = (await conn.execute(_HELD_BY, {"cid": customer_id})).scalar_one_or_none()
        raise SelectionLost(customer_id, held_by)
    return locked


# On PostgreSQL a write and its history row go in one statement (one round trip): the write
# is a data-modifying CTE of the history INSERT. SQLite has no such CTEs: two statements there.
_h = t.history.c
_HISTORY_COLUMNS = ("customer_id", "at", "kind", "user_id", "assignment_id", "data")


def _history_columns(prefix: str) -> dict[str, Any]:
    """A history row's columns but its customer's, as ``_rows_of`` columns ``{prefix}<column>``
    (the customer's is the row's own id)."""
    return {f"{prefix}{name}": getattr(_h, name).type for name in _HISTORY_COLUMNS[1:]}


# A history row's columns as bind parameters h_<column> (_history_bound).
_HISTORY_VALUES = {
    name: bindparam(f"h_{name}", type_=getattr(_h, name).type) for name in _HISTORY_COLUMNS
}


def _history_bound(event: HistoryEvent) -> dict[str, Any]:
    """An event as the parameters of _HISTORY_VALUES."""
    return {f"h_{k}": v for k, v in repo.history_params(event).items()}


def _with_history(write: Update) -> Insert:
    """INSERT the history row (_HISTORY_VALUES) after ``write``, a CTE of the same statement.

    The row waits for the write (its WHERE reads the write's count): a write that waits for
    the customer's row lock then takes its history id after the holder it waited for, so
    history keeps the order the row lock gave (an unreferenced CTE would run after the INSERT).
    """
    written = write.returning(c.id).cte("write")
    after_write = select(func.count()).select_from(written).scalar_subquery() >= 0
    return (
        insert(t.history)
        .from_select(
            list(_HISTORY_COLUMNS),
            select(*(_HISTORY_VALUES[k] for k in _HISTORY_COLUMNS)).where(after_write),
        )
        .returning(_h.id)
    )


def _is_postgresql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


_SELECTED_WHERE = (
    c.id == bindparam("cid"),
    c.data_owner_id == bindparam("owner"),
    or_(c.selection_token.is_(None), c.selection_token < bindparam("token")),
)
_SELECTED_VALUES = {
    "holder_user_id": bindparam("uid"),
    "selection_token": bindparam("new_token"),
    "selected_at": bindparam("at"),
    "version": c.version + 1,
}
_selects: dict[tuple[int, bool], tuple[ColumnElement[bool] | None, Any]] = {}
"""record_selected's statement per ``qualifies`` expression (kept alive here, so its id stays
its)."""

# Redis just proved the user holds nothing else (rule 4): the user's latest selection before
# this one, if the database still names the user its holder, was left by a crash between a
# Redis release and its recording. Found by the user's row of user_selections (no index names
# the holder: select and release stay heap-only updates), which then names this selection.
_us = t.user_selections.c
_CLEAR_OLDER_HOLDING = (
    update(t.customers)
    .where(
        c.id
        == select(_us.customer_id)
        .where(_us.user_id == bindparam("uid"), _us.token < bindparam("token"))
        .scalar_subquery(),
        c.data_owner_id == bindparam("owner"),
        c.holder_user_id == bindparam("uid"),
        c.id != bindparam("cid"),
        c.selection_token < bindparam("token"),
    )
    .values(holder_user_id=None, selected_at=None)
)


def _latest_selection(written: Any) -> Any:
    """The user's row of user_selections names this selection (``written``: an INSERT of it),
    unless a newer one is recorded already."""
    return written.on_conflict_do_update(
        index_elements=[_us.user_id],
        set_={"customer_id": written.excluded.customer_id, "token": written.excluded.token},
        where=_us.token < written.excluded.token,
    )


_SQLITE_LATEST_SELECTION = _latest_selection(
    sqlite_insert(t.user_selections).values(
        user_id=bindparam("uid"), customer_id=bindparam("cid"), token=bindparam("new_token")
    )
)


def _select_statement(qualifies: ColumnElement[bool] | None, postgresql: bool) -> Any:
    """record_selected's statement."""
    key = (id(qualifies), postgresql)
    cached = _selects.get(key)
    if cached is not None and cached[0] is qualifies:
        return cached[1]
    if len(_selects) > 256:
        _selects.clear()
    conditions = [*_SELECTED_WHERE] if qualifies is None else [*_SELECTED_WHERE, qualifies]
    statement: Any = (
        update(t.customers).where(*conditions).values(**_SELECTED_VALUES).returning(c.id)
    )
    if postgresql:
        statement = Statement(_recorded_with_history(statement))
    _selects[key] = (qualifies, statement)
    return statement


def _recorded_with_history(selected: Update) -> Insert:
    """One round trip (PostgreSQL): the selection (``selected``), the older holdings cleared
    (only when the selection was written) and the 'selected' history row (returned: none when
    refused)."""
    written = selected.cte("selected")
    older = _CLEAR_OLDER_HOLDING.where(select(written.c.id).exists()).cte("older")
    rows = select(written.c.id, *(_HISTORY_VALUES[k] for k in _HISTORY_COLUMNS[1:]))
    latest = _latest_selection(
        pg_insert(t.user_selections).from_select(
            ["user_id", "customer_id", "token"],
            select(
                bindparam("uid", type_=_us.user_id.type),
                written.c.id,
                bindparam("new_token", type_=_us.token.type),
            ),
        )
    ).cte("latest")
    return (
        insert(t.history)
        .from_select(list(_HISTORY_COLUMNS), rows)
        .returning(_h.id, _h.customer_id)
        .add_cte(older)
        .add_cte(latest)
    )


@dataclass(frozen=True, slots=True)
class SelectionRecord:
    """A selection Redis just made, to record (``record_selected``'s arguments)."""

    owner: int
    customer_id: int
    user_id: int
    token: int
    at: datetime
    assignment_id: int | None
    segment_id: int | None
    mode: WorkMode
    qualifies: ColumnElement[bool] | None = None
    qualifies_params: Mapping[str, Any] | None = None

    def ids(self) -> dict[str, Any]:
        return {
            "cid": self.customer_id,
            "owner": self.owner,
            "uid": self.user_id,
            "token": self.token,
        }

    def params(self) -> dict[str, Any]:
        return {
            **self.ids(),
            "new_token": self.token,
            "at": self.at,
            **(self.qualifies_params or {}),
        }

    def event(self) -> HistoryEvent:
        return HistoryEvent(
            customer_id=self.customer_id,
            kind=HistoryKind.SELECTED,
            at=self.at,
            user_id=self.user_id,
            assignment_id=self.assignment_id,
            data={
                "token": self.token,
                "mode": WorkMode(self.mode).value,
                "segment_id": self.segment_id,
            },
        )


async def record_selected(
    conn: AsyncConnection,
    *,
    owner: int,
    customer_id: int,
    user_id: int,
    token: int,
    at: datetime,
    assignment_id: int | None,
    segment_id: int | None,
    mode: WorkMode,
    qualifies: ColumnElement[bool] | None = None,
    qualifies_params: Mapping[str, Any] | None = None,
) -> bool:
    """Write a selection Redis just made; False when the row refuses it (``qualifies`` no longer
    holds, or a newer token is already recorded: the selection was released meanwhile).
    ``qualifies_params``: values of the bind parameters ``qualifies`` names, if any (reusing
    one such expression for many selections spares building the statement each time)."""
    record = SelectionRecord(
        owner,
        customer_id,
        user_id,
        token,
        at,
        assignment_id,
        segment_id,
        mode,
        qualifies,
        qualifies_params,
    )
    return await _record_selected(conn, record)


def selection_recorded_in_one_statement(engine: AsyncEngine) -> bool:
    """``record_selected`` is one statement here (PostgreSQL: the selection, the older holding
    cleared and the history row in one CTE), atomic on its own: it may run outside a
    transaction (``domain.db.engine.reads``). SQLite's record is four statements."""
    return engine.dialect.name == "postgresql"


async def _record_selected(conn: AsyncConnection, record: SelectionRecord) -> bool:
    postgresql = _is_postgresql(conn)
    statement = _select_statement(record.qualifies, postgresql)
    if postgresql:
        written = await statement.first(conn, {**record.params(), **_history_bound(record.event())})
        return written is not None
    row = (await conn.execute(statement, record.params())).first()
    if row is None:
        return False
    await conn.execute(_CLEAR_OLDER_HOLDING, record.ids())
    await conn.execute(_SQLITE_LATEST_SELECTION, record.params())
    await repo.add_history(conn, record.event())
    return True


async def record_selections(
    conn: AsyncConnection, records: Sequence[SelectionRecord]
) -> list[bool]:
    """``record_selected`` for many selections in the caller's transaction, each answered in
    order (PostgreSQL: pipelined, one round trip per ``qualifies`` expression)."""
    if not _is_postgresql(conn):
        return [await _record_selected(conn, record) for record in records]
    by_statement: dict[int, tuple[Statement, list[int]]] = {}
    for i in sorted(range(len(records)), key=lambda i: records[i].customer_id):
        statement = _select_statement(records[i].qualifies, True)
        by_statement.setdefault(id(statement), (statement, []))[1].append(i)
    recorded = [False] * len(records)
    for statement, indices in by_statement.values():
        rows = await statement.many(
            conn,
            [{**records[i].params(), **_history_bound(records[i].event())} for i in indices],
        )
        written = {row.customer_id for row in rows}
        for i in indices:
            recorded[i] = records[i].customer_id in written
    return recorded


_BEFORE_RELEASE = select(c.holder_user_id, c.selection_token, c.assignment_id).where(
    c.id == bindparam("cid"), c.data_owner_id == bindparam("owner")
)


# Clear the holder of selection ``token`` of customer ``cid`` (ReleaseRecord.clear).
_RELEASE = (
    update(t.customers)
    .where(
        c.id == bindparam("cid"),
        c.data_owner_id == bindparam("owner"),
        or_(c.selection_token.is_(None), c.selection_token <= bindparam("token")),
    )
    .values(holder_user_id=None, selected_at=None, selection_token=bindparam("new_token"))
)


async def record_released(
    conn: AsyncConnection,
    *,
    owner: int,
    customer_id: int,
    token: int,
    by_user_id: int,
    at: datetime,
) -> int | None:
    """Clear the holder of selection ``token`` (also when its selection is not recorded yet: the
    token stays, so that late record is refused). Returns the former holder, or None."""
    before = (await conn.execute(_BEFORE_RELEASE, {"cid": customer_id, "owner": owner})).first()
    if before is None:
        return None
    await _clear_holder(conn, owner, customer_id, token)
    return before.holder_user_id if before.selection_token == token else None


async def _clear_holder(conn: AsyncConnection, owner: int, customer_id: int, token: int) -> None:
    await conn.execute(
        _RELEASE, {"cid": customer_id, "owner": owner, "token": token, "new_token": token}
    )


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """A release Redis just made, to record (``record_release``'s arguments)."""

    owner: int
    customer_id: int
    token: int
    holder_user_id: int
    by_user_id: int
    assignment_id: int | None
    at: datetime

    def clear(self) -> dict[str, Any]:
        """_RELEASE's parameters."""
        return {
            "cid": self.customer_id,
            "owner": self.owner,
            "token": self.token,
            "new_token": self.token,
        }

    def event(self) -> HistoryEvent:
        return _released_event(
            self.customer_id,
            self.holder_user_id,
            self.token,
            self.by_user_id,
            self.assignment_id,
            self.at,
        )

    def params(self) -> dict[str, Any]:
        """_RELEASE_WITH_HISTORY's parameters."""
        return {**self.clear(), **_history_bound(self.event())}


async def record_release(
    conn: AsyncConnection,
    *,
    owner: int,
    customer_id: int,
    token: int,
    holder_user_id: int,
    by_user_id: int,
    assignment_id: int | None,
    at: datetime,
) -> None:
    """Rules 7, 24: clear the holder of selection ``token`` (as ``record_released``) and write
    the release's history row, for a caller that knows the holder (Redis told it)."""
    record = ReleaseRecord(owner, customer_id, token, holder_user_id, by_user_id, assignment_id, at)
    await _record_release(conn, record)


async def _record_release(conn: AsyncConnection, record: ReleaseRecord) -> None:
    if _is_postgresql(conn):
        await _RELEASE_WITH_HISTORY.first(conn, record.params())
        return
    await conn.execute(_RELEASE, record.clear())
    await repo.add_history(conn, record.event())


async def record_releases(conn: AsyncConnection, records: Sequence[ReleaseRecord]) -> None:
    """``record_release`` for many releases in the caller's transaction (PostgreSQL:
    pipelined, one round trip), in customer order."""
    ordered = sorted(records, key=lambda r: r.customer_id)
    if not _is_postgresql(conn):
        for record in ordered:
            await _record_release(conn, record)
        return
    await _RELEASE_WITH_HISTORY.many(conn, [record.params() for record in ordered])


_LOCK = Statement(
    select(c.id)
    .where(
        c.id == any_(bindparam("cids", type_=ARRAY(c.id.type))),
        c.data_owner_id == bindparam("owner"),
    )
    .order_by(c.id)
    .with_for_update(of=t.customers)
)


async def lock_customers(conn: AsyncConnection, owner: int, customer_ids: Sequence[int]) -> None:
    """Lock these customers' rows for the caller's transaction, in id order (so two batches
    never wait for each other in a cycle): holders' writes (``fence``) wait until it ends
    (PostgreSQL, one statement; SQLite has no row locks: its first write locks the database)."""
    if _is_postgresql(conn) and customer_ids:
        await _LOCK.rows(conn, {"cids": sorted(set(customer_ids)), "owner": owner})


_RELEASE_WITH_HISTORY = Statement(_with_history(_RELEASE))


async def record_moves_on(
    conn: AsyncConnection, moves: Sequence[tuple[ReleaseRecord, SelectionRecord | None]]
) -> list[bool]:
    """``record_releases`` then ``record_selections`` for many moves on in the caller's
    transaction: each release, then whether the selection made in its place (if any) was
    recorded, in order. PostgreSQL: the moves that select are one statement for all of them
    per ``qualifies`` expression (``_moves_statement``), those that only release one pipelined
    round trip; the released rows are locked already (``lock_customers`` or an outcome's
    fence)."""
    if not _is_postgresql(conn):
        return await _record_moves_apart(conn, moves)
    if not _one_row_each(moves):
        # A customer one move left and another took at the same moment: every release
        # first, then every selection, each seeing what the ones before it wrote.
        return await _record_moves_apart(conn, moves)
    await record_releases(conn, [release for release, selection in moves if selection is None])
    selecting = sorted(
        ((i, release, selection) for i, (release, selection) in enumerate(moves) if selection),
        key=lambda move: move[2].customer_id,
    )
    by_statement: dict[int, tuple[Statement, list[tuple[int, ReleaseRecord, SelectionRecord]]]]
    by_statement = {}
    for move in selecting:
        statement, _names = _moves_statement(move[2].qualifies)
        by_statement.setdefault(id(statement), (statement, []))[1].append(move)
    answers = [False] * len(moves)
    for statement, group in by_statement.values():
        params = _moves_params(group)
        written = {customer_id for _id, customer_id in await statement.tuples(conn, params)}
        for i, _release, selection in group:
            answers[i] = selection.customer_id in written
    return answers


async def _record_moves_apart(
    conn: AsyncConnection, moves: Sequence[tuple[ReleaseRecord, SelectionRecord | None]]
) -> list[bool]:
    """``record_moves_on`` as every release, then every selection."""
    await record_releases(conn, [release for release, _selection in moves])
    selecting = [(i, s) for i, (_r, s) in enumerate(moves) if s is not None]
    recorded = await record_selections(conn, [s for _i, s in selecting])
    answers = [False] * len(moves)
    for (i, _s), ok in zip(selecting, recorded, strict=True):
        answers[i] = ok
    return answers


def _one_row_each(moves: Sequence[tuple[ReleaseRecord, SelectionRecord | None]]) -> bool:
    """No customer and no user is named twice by these moves: a statement for all of them then
    writes each row once (a statement that updated a row twice would keep one of the two)."""
    customers = [release.customer_id for release, _s in moves]
    customers += [selection.customer_id for _r, selection in moves if selection is not None]
    users = [selection.user_id for _r, selection in moves if selection is not None]
    return len(set(customers)) == len(customers) and len(set(users)) == len(users)


def _rows_of(name: str, columns: Mapping[str, Any]) -> Any:
    """A CTE of a batch's rows, given as one JSON document (``_rows_doc``: an array of objects
    keyed by column) that PostgreSQL reads with json_to_recordset: one parameter for all the
    rows of a statement. The driver would encode an array per column value by value (some
    20 µs of this process's CPU a move on); the document is one orjson call."""
    rows = func.json_to_recordset(cast(bindparam(name, type_=Text), JSON))
    derived = rows.table_valued(*(column(n, kind) for n, kind in columns.items()))
    return select(derived.render_derived(name="u", with_types=True)).cte(name)


def _rows_doc(rows: Sequence[Mapping[str, Any]]) -> str:
    """``_rows_of``'s parameter. Datetimes keep their offset; a naive one is refused, as a UTC
    column's own bind processing (types.UtcDateTime) refuses it, which the document bypasses."""
    for row in rows:
        for value in row.values():
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
    try:
        return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer past 64 bits, as the JSON columns' encoder falls back
        return json.dumps(rows, default=datetime.isoformat)


# Moves on as one statement (PostgreSQL): each move is a row of ``moves`` (_rows_of), and each
# of its writes (the release and its history row, the selection, the older holding cleared,
# the user's latest selection, the selection's history row: what _RELEASE_WITH_HISTORY and
# _recorded_with_history write for one) is one UPDATE or INSERT over all of them. The database
# plans and starts each once a batch instead of once a move.
_MOVE_COLUMNS: dict[str, Any] = {
    "cid": c.id.type,  # the customer selected
    "uid": c.holder_user_id.type,
    "token": c.selection_token.type,
    "at": c.selected_at.type,
    **_history_columns("h_"),
    "r_cid": c.id.type,  # the customer released
    "r_token": c.selection_token.type,
    **_history_columns("r_h_"),
}
_moves_statements: dict[int, tuple[ColumnElement[bool] | None, Statement, tuple[str, ...]]] = {}
"""_moves_statement's per ``qualifies`` expression (kept alive here, so its id stays its)."""


def _moves_statement(qualifies: ColumnElement[bool] | None) -> tuple[Statement, tuple[str, ...]]:
    """The statement recording many moves on (``_moves_params``) and the names of the
    parameters of ``qualifies`` it takes per move (as columns q_<name>)."""
    cached = _moves_statements.get(id(qualifies))
    if cached is not None and cached[0] is qualifies:
        return cached[1], cached[2]
    if len(_moves_statements) > 256:
        _moves_statements.clear()
    asked = {}  # the parameters a caller gives (qualifies_params): one value per move
    if qualifies is not None:
        for element in visitors.iterate(qualifies):
            if isinstance(element, BindParameter) and element.required:
                asked[element.key] = element.type
    m = _rows_of("moves", {**_MOVE_COLUMNS, **{f"q_{n}": kind for n, kind in asked.items()}})
    owner = bindparam("owner", type_=c.data_owner_id.type)

    released = (
        update(t.customers)
        .where(
            c.id == m.c.r_cid,
            c.data_owner_id == owner,
            or_(c.selection_token.is_(None), c.selection_token <= m.c.r_token),
        )
        .values(holder_user_id=None, selected_at=None, selection_token=m.c.r_token)
        .returning(c.id)
        .cte("released")
    )
    # Written after the releases (it reads their count), before the selections (read below).
    released_history = (
        insert(t.history)
        .from_select(
            list(_HISTORY_COLUMNS),
            select(m.c.r_cid, *(m.c[f"r_h_{name}"] for name in _HISTORY_COLUMNS[1:])).where(
                select(func.count()).select_from(released).scalar_subquery() >= 0
            ),
        )
        .returning(_h.id)
        .cte("released_history")
    )
    conditions = [
        c.id == m.c.cid,
        c.data_owner_id == owner,
        or_(c.selection_token.is_(None), c.selection_token < m.c.token),
    ]
    if qualifies is not None:
        conditions.append(
            visitors.replacement_traverse(
                qualifies,
                {},
                lambda element: (
                    m.c[f"q_{element.key}"]
                    if isinstance(element, BindParameter) and element.key in asked
                    else None
                ),
            )
        )
    selected = (
        update(t.customers)
        .where(*conditions)
        .values(
            holder_user_id=m.c.uid,
            selection_token=m.c.token,
            selected_at=m.c.at,
            version=c.version + 1,
        )
        .returning(c.id)
        .cte("selected")
    )
    this_batch = select(m.c.cid).union_all(select(m.c.r_cid))
    older = (
        update(t.customers)
        .where(
            c.holder_user_id == m.c.uid,
            c.id
            == select(_us.customer_id)
            .where(_us.user_id == m.c.uid, _us.token < m.c.token)
            .correlate(m)
            .scalar_subquery(),
            c.data_owner_id == owner,
            c.selection_token < m.c.token,
            c.id.not_in(this_batch),  # those this statement writes already
            select(selected.c.id).where(selected.c.id == m.c.cid).correlate(m).exists(),
        )
        .values(holder_user_id=None, selected_at=None)
        .cte("older")
    )
    latest = _latest_selection(
        pg_insert(t.user_selections).from_select(
            ["user_id", "customer_id", "token"],
            select(m.c.uid, selected.c.id, m.c.token).where(selected.c.id == m.c.cid),
        )
    ).cte("latest")
    statement = Statement(
        insert(t.history)
        .from_select(
            list(_HISTORY_COLUMNS),
            select(selected.c.id, *(m.c[f"h_{name}"] for name in _HISTORY_COLUMNS[1:]))
            .where(
                selected.c.id == m.c.cid,
                select(func.count()).select_from(released_history).scalar_subquery() >= 0,
            )
            .order_by(selected.c.id),
        )
        .returning(_h.id, _h.customer_id)
        .add_cte(older)
        .add_cte(latest)
    )
    names = tuple(asked)
    _moves_statements[id(qualifies)] = (qualifies, statement, names)
    return statement, names


def _moves_params(group: Sequence[tuple[int, ReleaseRecord, SelectionRecord]]) -> dict[str, Any]:
    """``_moves_statement``'s parameters for these moves (one qualifies expression)."""
    _statement, asked = _moves_statement(group[0][2].qualifies)
    rows = []
    for _i, release, selection in group:
        selected = repo.history_params(selection.event())
        freed = repo.history_params(release.event())
        given = selection.qualifies_params or {}
        row = {
            "cid": selection.customer_id,
            "uid": selection.user_id,
            "token": selection.token,
            "at": selection.at,
            "r_cid": release.customer_id,
            "r_token": release.token,
            **{f"q_{name}": given[name] for name in asked},
        }
        for name in _HISTORY_COLUMNS[1:]:
            row[f"h_{name}"] = selected[name]
            row[f"r_h_{name}"] = freed[name]
        rows.append(row)
    return {"owner": group[0][2].owner, "moves": _rows_doc(rows)}


def _released_event(
    customer_id: int,
    user_id: int,
    token: int,
    by_user_id: int,
    assignment_id: int | None,
    at: datetime,
) -> HistoryEvent:
    return HistoryEvent(
        customer_id=customer_id,
        kind=HistoryKind.RELEASED,
        at=at,
        user_id=by_user_id,
        assignment_id=assignment_id,
        data={"token": token, "holder_user_id": user_id, "by_user_id": by_user_id},
    )


async def add_released_history(
    conn: AsyncConnection,
    *,
    customer_id: int,
    user_id: int,
    token: int,
    by_user_id: int,
    assignment_id: int | None,
    at: datetime,
) -> None:
    """Rule 24: a release, with whose selection it was and who ended it."""
    await repo.add_history(
        conn, _released_event(customer_id, user_id, token, by_user_id, assignment_id, at)
    )


async def durable_holders(conn: AsyncConnection, owner: int) -> tuple[list[DurableHolder], int]:
    """The owner's holders and its token high-water mark (largest token ever recorded), in the
    caller's transaction. A user the database names on more than one customer (older holdings a
    crash left unrecorded) holds the newest selection only (rule 4): the others are cleared
    here, so no customer stays out of play behind a holding nobody has."""
    found = (
        await conn.execute(
            select(c.id, c.holder_user_id, c.selection_token, c.selected_at, c.assignment_id)
            .where(c.data_owner_id == owner, c.holder_user_id.isnot(None))
            .order_by(c.selection_token.desc(), c.id.desc())
        )
    ).all()
    rows, seen = [], set()
    for row in found:
        if row.holder_user_id in seen:
            await _clear_holder(conn, owner, row.id, row.selection_token)
        else:
            seen.add(row.holder_user_id)
            rows.append(row)
    high_water = (
        await conn.execute(
            select(func.max(c.selection_token)).where(
                c.data_owner_id == owner, c.selection_token.isnot(None)
            )
        )
    ).scalar_one()
    # Segment and mode of each selection, from its latest 'selected' history row.
    details: dict[int, dict[str, Any]] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        latest = (
            select(func.max(t.history.c.id))
            .where(
                t.history.c.customer_id.in_(chunk),
                t.history.c.kind == HistoryKind.SELECTED.value,
            )
            .group_by(t.history.c.customer_id)
        )
        for h in await conn.execute(
            select(t.history.c.customer_id, t.history.c.data).where(t.history.c.id.in_(latest))
        ):
            details[h.customer_id] = dict(h.data or {})
    holders = []
    for r in rows:
        data = details.get(r.id, {})
        same = data.get("token") == r.selection_token
        holders.append(
            DurableHolder(
                customer_id=r.id,
                user_id=r.holder_user_id,
                token=int(r.selection_token or 0),
                selected_at=r.selected_at,
                assignment_id=r.assignment_id,
                segment_id=data.get("segment_id") if same else None,
                mode=WorkMode(data.get("mode", WorkMode.MANUAL.value) if same else "manual"),
            )
        )
    return holders, int(high_water or 0)


# Holders' writes: each passes the fence first -------------------------------------------------


# SQLite renders RETURNING columns unqualified, so these subqueries name the customer by the
# bound id and through an alias: nothing in them depends on correlating with the fenced row.
_fenced = t.customers.alias("fenced")
_has_follow_ups = (
    select(t.follow_ups.c.id)
    .where(t.follow_ups.c.customer_id == bindparam("cid"), t.follow_ups.c.ended_at.is_(None))
    .exists()
    .label("has_follow_ups")
)
_assignment_of_fenced = (
    select(_fenced.c.assignment_id).where(_fenced.c.id == bindparam("cid")).scalar_subquery()
)
# The flow as text: compared with the text it was last parsed from, so an outcome parses (and
# the driver decodes) no JSON while the flow stays as it was.
_flow_of_customer = (
    select(cast(t.assignments.c.flow, Text))
    .where(t.assignments.c.id == _assignment_of_fenced)
    .scalar_subquery()
    .label("flow")
)
# Rule 23: whether automatic SMS is on for the assignment, so an outcome with an SMS flow looks
# further only when it is.
_auto_sms_of_customer = (
    select(t.assignments.c.setup["auto_sms"].as_boolean())
    .where(t.assignments.c.id == _assignment_of_fenced)
    .scalar_subquery()
    .label("auto_sms")
)
# The outcome's fence reads what the outcome needs of the row. On PostgreSQL it only locks the
# row (FOR UPDATE: no new row version, no index entries) and the status write that follows
# bumps the version: one new row version per outcome, not two. SQLite has no row locks: there
# the fence is the version-bumping UPDATE, which takes the database's write lock first.
_OUTCOME_READS = (
    c.id,
    c.status,
    c.assignment_id,
    _flow_of_customer,
    _auto_sms_of_customer,
    _has_follow_ups,
)
_FENCE_FOR_OUTCOME = Statement(
    update(t.customers)
    .where(*_FENCE_WHERE)
    .values(version=c.version + 1)
    .returning(*_OUTCOME_READS)
)
# On PostgreSQL the lock reads, instead of the flow and its settings, the version of the
# assignment's row (its xmin: every update of the row writes a new one), and the flow is read
# again only when that changed (_know_flows): no flow document is rendered and sent per outcome.
_ASSIGNMENT_VERSION = cast(literal_column("assignments.xmin"), Text)
# What both PostgreSQL locks read of each row (its open follow-ups looked up by the row's id).
_LOCK_READS = (
    c.id,
    c.status,
    c.assignment_id,
    _ASSIGNMENT_VERSION.label("flow_version"),
    select(t.follow_ups.c.id)
    .where(t.follow_ups.c.customer_id == c.id, t.follow_ups.c.ended_at.is_(None))
    .exists()
    .label("has_follow_ups"),
)
_LOCK_FOR_OUTCOME = Statement(
    select(*_LOCK_READS)
    .select_from(t.customers.outerjoin(t.assignments, t.assignments.c.id == c.assignment_id))
    .where(*_FENCE_WHERE)
    .with_for_update(of=t.customers)
)
# record_outcomes's two statements (PostgreSQL): each a batch's rows at once (_rows_of). The
# lock takes the rows in customer order, so two batches never wait for each other in a cycle.
_asks = _rows_of(
    "asks",
    {"cid": c.id.type, "uid": c.holder_user_id.type, "token": c.selection_token.type},
)
_LOCK_FOR_OUTCOMES = Statement(
    select(*_LOCK_READS)
    .select_from(
        t.customers.join(
            _asks,
            and_(
                c.id == _asks.c.cid,
                c.holder_user_id == _asks.c.uid,
                c.selection_token == _asks.c.token,
            ),
        ).outerjoin(t.assignments, t.assignments.c.id == c.assignment_id)
    )
    .order_by(c.id)
    .with_for_update(of=t.customers)
)
_statuses = _rows_of(
    "statuses",
    {
        "cid": c.id.type,
        "new_status": c.status.type,
        "now": c.updated_at.type,
        **_history_columns("h_"),
    },
)
_STATUSES_WRITTEN = (
    update(t.customers)
    .where(c.id == _statuses.c.cid)
    .values(status=_statuses.c.new_status, updated_at=_statuses.c.now, version=c.version + 1)
    .returning(c.id)
    .cte("written")
)
_SET_STATUSES_WITH_HISTORY = Statement(
    insert(t.history)
    .from_select(
        list(_HISTORY_COLUMNS),
        select(_STATUSES_WRITTEN.c.id, *(_statuses.c[f"h_{name}"] for name in _HISTORY_COLUMNS[1:]))
        .where(_STATUSES_WRITTEN.c.id == _statuses.c.cid)
        .order_by(_STATUSES_WRITTEN.c.id),
    )
    .returning(_h.id, _h.customer_id)
)
_FLOWS_OF = select(
    t.assignments.c.id,
    _ASSIGNMENT_VERSION.label("version"),
    cast(t.assignments.c.flow, Text).label("flow"),
    t.assignments.c.setup["auto_sms"].as_boolean().label("auto_sms"),
).where(t.assignments.c.id.in_(bindparam("ids", expanding=True)))
# Rule 13: the fence counts the attempt too (every refusal after it rolls the count back).
_FENCE_FOR_ATTEMPT = Statement(
    update(t.customers)
    .where(*_FENCE_WHERE)
    .values(
        version=c.version + 1,
        attempts=c.attempts + 1,
        last_attempt_at=bindparam("attempt_at"),
        updated_at=bindparam("now"),
    )
    .returning(c.status, c.assignment_id, _has_follow_ups, c.attempts)
)
_SET_STATUS = (
    update(t.customers)
    .where(c.id == bindparam("cid"))
    .values(status=bindparam("new_status"), updated_at=bindparam("now"))
)


_SET_STATUS_WITH_HISTORY = Statement(_with_history(_SET_STATUS.values(version=c.version + 1)))
"""PostgreSQL's status write after _LOCK_FOR_OUTCOME: it bumps the version the lock did not."""


async def record_attempt(
    conn: AsyncConnection,
    holding: Holding,
    kind: AttemptKind | str,
    now: datetime,
    *,
    call_back_at: datetime | None = None,
) -> int:
    """Rules 13, 14 as the holder's write: count the attempt, make the follow-up a
    call_back_later asks for, write history. Returns the new attempt count."""
    kind = AttemptKind(kind)
    row = await _fence_reading(
        conn,
        holding.customer_id,
        holding.user_id,
        holding.token,
        _FENCE_FOR_ATTEMPT,
        attempt_at=now,
        now=repo.utcnow(),
    )
    if row.assignment_id is None:
        raise Invalid("the customer is in no assignment")
    plan = plan_attempt(kind, row.status or "", holding.user_id, call_back_at, now)
    # The fence's read says whether there is any to end.
    if row.has_follow_ups and attempt_ends_follow_ups(kind, row.status or ""):
        await end_follow_ups(conn, holding, row.assignment_id, "attempt", now)
    # The fence's UPDATE already counted it (repo.record_attempt's counting, same values).
    count = row.attempts
    await repo.add_attempt(
        conn,
        Attempt(
            customer_id=holding.customer_id,
            assignment_id=row.assignment_id,
            user_id=holding.user_id,
            kind=kind,
            at=now,
            call_back_at=call_back_at,
        ),
    )
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.ATTEMPT,
            at=now,
            user_id=holding.user_id,
            assignment_id=row.assignment_id,
            data={"kind": kind.value, "token": holding.token, "call_back_at": call_back_at},
        ),
    )
    if plan is not None:
        await create_follow_up(conn, holding, row.assignment_id, plan, now)
    return count


async def create_follow_up(
    conn: AsyncConnection,
    holding: Holding,
    assignment_id: int,
    plan: FollowUpPlan,
    now: datetime,
) -> FollowUp:
    """The follow-up an attempt (rule 14) or an outcome (rule 15) planned, with its history
    row."""
    follow_up = await repo.create_follow_up(
        conn,
        customer_id=holding.customer_id,
        assignment_id=assignment_id,
        kind=plan.kind,
        due_at=plan.due_at,
        owner_user_id=plan.owner_user_id,
        created_by=holding.user_id,
        now=now,
    )
    await repo.add_history(
        conn,
        HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.FOLLOW_UP_CREATED,
            at=now,
            user_id=holding.user_id,
            assignment_id=assignment_id,
            data={"follow_up_id": follow_up.id, "kind": plan.kind.value, "due_at": plan.due_at},
        ),
    )
    return follow_up


async def end_follow_ups(
    conn: AsyncConnection, holding: Holding, assignment_id: int, reason: str, now: datetime
) -> list[FollowUp]:
    """A new attempt or outcome settles the follow-ups the customer was waiting on (rule 16:
    they leave My Work), each with its history row."""
    ended = await repo.end_follow_ups(conn, holding.customer_id, reason, at=now)
    for follow_up in ended:
        await repo.add_history(
            conn,
            HistoryEvent(
                customer_id=holding.customer_id,
                kind=HistoryKind.FOLLOW_UP_ENDED,
                at=now,
                user_id=holding.user_id,
                assignment_id=assignment_id,
                data={"follow_up_id": follow_up.id, "kind": follow_up.kind.value, "reason": reason},
            ),
        )
    return ended


_FLOWS: dict[int, tuple[str, CustomerFlow]] = {}
_FLOWS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class _KnownFlow:
    version: str
    flow: CustomerFlow
    auto_sms: bool
    read_at: float


_KNOWN_FLOWS: dict[int, _KnownFlow] = {}
_KNOWN_FOR_S = 60.0
"""A flow known by its row's version is read again after this long anyway: a version is a
transaction id, which PostgreSQL reuses after billions of transactions."""


async def _know_flows(conn: AsyncConnection, rows: Sequence[Any]) -> None:
    """PostgreSQL: make sure the flows of these locked rows' assignments are known at the
    version the lock read (_LOCK_FOR_OUTCOME), reading the ones that are not in one statement."""
    now = time.monotonic()
    wanted = set()
    for row in rows:
        known = _KNOWN_FLOWS.get(row.assignment_id)
        if row.assignment_id is not None and (
            known is None or known.version != row.flow_version or now - known.read_at > _KNOWN_FOR_S
        ):
            wanted.add(row.assignment_id)
    if not wanted:
        return
    if len(_KNOWN_FLOWS) >= _FLOWS_KEPT:
        _KNOWN_FLOWS.clear()
    for found in await conn.execute(_FLOWS_OF, {"ids": sorted(wanted)}):
        _KNOWN_FLOWS[found.id] = _KnownFlow(
            found.version, _flow_of(found.id, found.flow), bool(found.auto_sms), now
        )


def _flow_and_sms_of(row: Any) -> tuple[CustomerFlow, bool]:
    """The flow of the fenced row's assignment and whether automatic SMS is on for it: from the
    row itself (SQLite's fence reads them), else as _know_flows just made sure of."""
    if hasattr(row, "flow"):
        return _flow_of(row.assignment_id, row.flow), bool(row.auto_sms)
    known = _KNOWN_FLOWS.get(row.assignment_id)
    if known is None:
        raise NotFound("no such assignment")
    return known.flow, known.auto_sms


def _flow_of(assignment_id: int, text: str) -> CustomerFlow:
    """The assignment's flow from the JSON text its fence read, parsed once per definition: the
    same text again (compared whole, so an edited flow is parsed anew) reuses the last parse."""
    kept = _FLOWS.get(assignment_id)
    if kept is not None and kept[0] == text:
        return kept[1]
    flow = flow_from_json(orjson.loads(text))
    if len(_FLOWS) >= _FLOWS_KEPT:
        _FLOWS.clear()
    _FLOWS[assignment_id] = (text, flow)
    return flow


@dataclass(frozen=True, slots=True)
class OutcomeAsk:
    """One holder's outcome to save: ``record_outcome``'s arguments, for ``record_outcomes``."""

    holding: Holding
    outcome_key: str
    details: Mapping[str, Any]
    now: datetime
    follow_up_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _OutcomePlan:
    """An outcome checked against the fenced row: what to write (rules 15, 18)."""

    ask: OutcomeAsk
    row: Any
    outcome: Outcome
    clean: dict[str, Any]
    follow_up: FollowUpPlan | None
    status: dict[str, Any]
    event: HistoryEvent
    auto_sms: bool


def _plan_outcome(ask: OutcomeAsk, row: Any) -> _OutcomePlan:
    """Everything that can refuse an outcome, on the row its fence read: before any write."""
    if row.assignment_id is None:
        raise Invalid("the customer is in no assignment")
    holding, from_status = ask.holding, row.status or ""
    flow, auto_sms = _flow_and_sms_of(row)
    outcome, clean = check_outcome(flow, from_status, ask.outcome_key, ask.details)
    follow_up = plan_outcome_follow_up(outcome, holding.user_id, ask.follow_up_at, ask.now)
    return _OutcomePlan(
        ask=ask,
        row=row,
        outcome=outcome,
        clean=clean,
        follow_up=follow_up,
        status={"cid": holding.customer_id, "new_status": outcome.to_status, "now": ask.now},
        event=HistoryEvent(
            customer_id=holding.customer_id,
            kind=HistoryKind.OUTCOME,
            at=ask.now,
            user_id=holding.user_id,
            assignment_id=row.assignment_id,
            data={
                "outcome": outcome.key,
                "from_status": from_status,
                "to_status": outcome.to_status,
                "details": clean,
                "token": holding.token,
            },
        ),
        auto_sms=auto_sms,
    )


async def _follow_ups_of(
    conn: AsyncConnection, plan: _OutcomePlan, history_id: int
) -> OutcomeResult:
    """The rest of an outcome after its status write: a new outcome settles whatever follow-up
    the customer was waiting on (the fence's read says whether there is any: most outcomes
    skip the look-up), and makes the outcome's own."""
    holding, row, now = plan.ask.holding, plan.row, plan.ask.now
    ended: list[FollowUp] = []
    if row.has_follow_ups:
        ended = await end_follow_ups(conn, holding, row.assignment_id, "outcome", now)
    created = None
    if plan.follow_up is not None:
        created = await create_follow_up(conn, holding, row.assignment_id, plan.follow_up, now)
    return OutcomeResult(
        customer_id=holding.customer_id,
        assignment_id=row.assignment_id,
        outcome_key=plan.outcome.key,
        from_status=row.status or "",
        status=plan.outcome.to_status,
        details=plan.clean,
        follow_up=created,
        ended_follow_ups=tuple(ended),
        sms_template=plan.outcome.sms_template,
        history_id=history_id,
        sms_wanted=bool(plan.outcome.sms_template) and plan.auto_sms,
    )


async def record_outcome(
    conn: AsyncConnection,
    holding: Holding,
    outcome_key: str,
    details: Mapping[str, Any],
    now: datetime,
    *,
    follow_up_at: datetime | None = None,
) -> OutcomeResult:
    """Rules 15, 18 as the holder's write: a valid transition of the assignment's flow with its
    details, open follow-ups ended, the outcome's own follow-up made, history written."""
    # The fence reads what the outcome needs: one statement on the hot path.
    postgresql = _is_postgresql(conn)
    row = await _fence_reading(
        conn,
        holding.customer_id,
        holding.user_id,
        holding.token,
        _LOCK_FOR_OUTCOME if postgresql else _FENCE_FOR_OUTCOME,
    )
    if postgresql:
        await _know_flows(conn, [row])
    # Everything that can refuse runs before the first write past the fence; a refusal after
    # it still leaves nothing, since the caller's transaction rolls back.
    plan = _plan_outcome(OutcomeAsk(holding, outcome_key, details, now, follow_up_at), row)
    if postgresql:
        written = await _SET_STATUS_WITH_HISTORY.first(
            conn, {**plan.status, **_history_bound(plan.event)}
        )
        history_id = written.id
    else:
        await conn.execute(_SET_STATUS, plan.status)
        history_id = await repo.add_history(conn, plan.event)
    return await _follow_ups_of(conn, plan, history_id)


async def record_outcomes(
    conn: AsyncConnection, asks: Sequence[OutcomeAsk]
) -> list[OutcomeResult | DomainError]:
    """``record_outcome`` for many holders in the caller's transaction (PostgreSQL: a group
    commit's batch): the fences one statement, the status writes with their history rows
    another. Every ask is answered in order: its result, or the refusal it alone gets
    (SelectionLost, InvalidTransition, ...), which wrote nothing. Customers must differ (one
    ask each)."""
    if not _is_postgresql(conn):
        raise RuntimeError("record_outcomes pipelines PostgreSQL's statements")
    answers: list[OutcomeResult | DomainError | None] = [None] * len(asks)
    order = sorted(range(len(asks)), key=lambda i: asks[i].holding.customer_id)
    holdings = [asks[i].holding for i in order]
    fences = [{"cid": h.customer_id, "uid": h.user_id, "token": h.token} for h in holdings]
    locked = {
        row.id: row for row in await _LOCK_FOR_OUTCOMES.rows(conn, {"asks": _rows_doc(fences)})
    }
    await _know_flows(conn, list(locked.values()))
    lost = [i for i in order if asks[i].holding.customer_id not in locked]
    if lost:
        held = await _holders_of(conn, [asks[i].holding.customer_id for i in lost])
        for i in lost:
            cid = asks[i].holding.customer_id
            answers[i] = SelectionLost(cid, held.get(cid))
    plans: list[tuple[int, _OutcomePlan]] = []
    for i in order:
        if answers[i] is not None:
            continue
        try:
            plans.append((i, _plan_outcome(asks[i], locked[asks[i].holding.customer_id])))
        except DomainError as refused:
            answers[i] = refused
    written = {}
    if plans:
        statuses = [{**plan.status, **_history_bound(plan.event)} for _i, plan in plans]
        rows = await _SET_STATUSES_WITH_HISTORY.tuples(conn, {"statuses": _rows_doc(statuses)})
        written = {customer_id: history_id for history_id, customer_id in rows}
    for i, plan in plans:
        answers[i] = await _follow_ups_of(conn, plan, written[plan.status["cid"]])
    return [answer for answer in answers if answer is not None]


async def _holders_of(conn: AsyncConnection, customer_ids: Sequence[int]) -> dict[int, int | None]:
    """Who holds each of these customers now (for SelectionLost's ``held_by``)."""
    rows = await conn.execute(
        select(c.id, c.holder_user_id).where(c.id.in_(sorted(set(customer_ids))))
    )
    return {row.id: row.holder_user_id for row in rows}


async def edit_info_fields(
    conn: AsyncConnection, holding: Holding, values: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Rule 5: the holder edits CRM info fields (typed by the CRM's definitions). Returns the
    customer's info after the edit."""
    await fence(conn, holding.customer_id, holding.user_id, holding.token)
    row = (
        await conn.execute(
            select(c.info, c.crm_id, c.data_owner_id, c.assignment_id).where(
                c.id == holding.customer_id
            )
        )
    ).one()
    crm = await repo.get_crm(conn, row.crm_id, data_owner_id=row.data_owner_id)
    if crm is None:
        raise NotFound("no such CRM")
    info = dict(row.info or {})
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        field = crm.info_field(key)
        if field is None:
            raise Invalid(f"unknown info field '{key}'")
        value = coerce_value(field.type, raw, label=field.label)
        if info.get(key) != value:
            changes[key] = {"from": info.get(key), "to": value}
            info[key] = value
    if changes:
        await conn.execute(
            update(t.customers)
            .where(and_(c.id == holding.customer_id))
            .values(info=info, updated_at=now)
        )
        await repo.add_history(
            conn,
            HistoryEvent(
                customer_id=holding.customer_id,
                kind=HistoryKind.FIELD_EDITED,
                at=now,
                user_id=holding.user_id,
                assignment_id=row.assignment_id,
                data={"changes": changes, "token": holding.token},
            ),
        )
    return info
