"""Mass outcome and moves (rules 19-21, 24) as bulk jobs over a customer filter.

A service function checks everything a user can get wrong before the job exists (visibility,
filter, outcome, details, follow-up time, target), so a refusal leaves nothing behind. Each
batch then locks its customers (FOR UPDATE on PostgreSQL; SQLite has one writer), leaves out
those selected, by the database's holder column and by Redis (a selection is made in Redis
first and recorded here right after, so one HMGET per batch asks while the rows are locked),
and changes the rest with set-based statements: each history row is built by the database
from the locked row (INSERT ... SELECT), so no customer's data makes a trip through Python.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    any_,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bulk import BulkReport, JobKind, SkipReason, check_move_to_assignment
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.filters import filter_clause
from domain.db.jobs import (
    DEFAULT_BATCH,
    DEFAULT_LEASE,
    Executor,
    Job,
    ProgressHook,
    SelectionProbe,
    Step,
    create_job,
    get_job,
    new_node_id,
    resumable_jobs,
    run_job,
)
from domain.db.sms_outbox import SmsCustomer, enqueue_outcome_sms_many, sms_wanted
from domain.errors import Forbidden, Invalid, InvalidTransition, NotFound
from domain.filters import CustomerFilter, check_filter, parse_filter
from domain.flows import AVAILABLE, Outcome, check_details, mass_outcome_options
from domain.followups import FollowUpPlan, plan_outcome_follow_up
from domain.model import Assignment, Crm, Customer, FollowUpKind, HistoryKind, User
from domain.moves import MoveSkip, plan_move_to_assignment, plan_move_to_segment, skip_reason
from domain.sms import check_template
from domain.tenancy import require_supervisor, visible_assignment

c = t.customers.c

# Tally keys of a job's counts (rule 21): every matched customer lands in exactly one of
# changed / skipped_*; the two selected counts say where the selection was seen.
MATCHED, CHANGED = "matched", "changed"
SELECTED_DB, SELECTED_REDIS = "skipped_selected_db", "skipped_selected_redis"


# ---------------------------------------------------------------------------------------------
# Filters: the user's view of them


@dataclass(frozen=True, slots=True)
class Scope:
    """A checked filter with the assignment and CRM it runs on."""

    filter: CustomerFilter
    assignment: Assignment
    crm: Crm


async def scope_for(conn: AsyncConnection, user: User, filter_data: Any) -> Scope:
    """Rules 3 and 19: the filter of an assignment the user (a supervisor) may see, checked."""
    require_supervisor(user)
    f = parse_filter(filter_data)
    assignment = await repo.get_assignment(conn, f.assignment_id, data_owner_id=user.data_owner_id)
    assignment = visible_assignment(
        user, assignment, await repo.granted_assignment_ids(conn, user.id)
    )
    crm = await repo.get_crm(conn, assignment.crm_id, data_owner_id=user.data_owner_id)
    if crm is None:
        raise NotFound("no such assignment")
    return Scope(check_filter(f, assignment, crm), assignment, crm)


def _where(scope: Scope, conn: AsyncConnection) -> ColumnElement[bool]:
    return filter_clause(scope.filter, scope.crm, conn.dialect.name)


@dataclass(frozen=True, slots=True)
class FilterPreview:
    """What a filter selects now: how many, how many of them are selected (rule 19), per status,
    and the outcomes a mass outcome may register on them."""

    matched: int
    selected: int
    statuses: Mapping[str, int]
    outcome_options: tuple[str, ...]


async def preview(
    conn: AsyncConnection, user: User, filter_data: Any, selections: SelectionProbe | None
) -> FilterPreview:
    scope = await scope_for(conn, user, filter_data)
    where = _where(scope, conn)
    statuses = {
        r[0]: r[1]
        for r in await conn.execute(
            select(c.status, func.count()).where(where).group_by(c.status).order_by(c.status)
        )
    }
    held = (
        await conn.execute(select(func.count()).where(where, c.holder_user_id.isnot(None)))
    ).scalar_one()
    live = 0
    if selections is not None:
        free = list(
            (await conn.execute(select(c.id).where(where, c.holder_user_id.is_(None)))).scalars()
        )
        for start in range(0, len(free), 5000):
            live += len(
                await selections.selected_among(
                    scope.assignment.data_owner_id, free[start : start + 5000]
                )
            )
    present = _present_statuses(scope.filter, statuses)
    options = mass_outcome_options(scope.assignment.flow, present)
    return FilterPreview(
        matched=sum(statuses.values()),
        selected=held + live,
        statuses=statuses,
        outcome_options=tuple(o.key for o in options),
    )


def _present_statuses(f: CustomerFilter, found: Mapping[str | None, int]) -> set[str]:
    # Rule 19: the statuses the filter names, else those its customers are in.
    if f.statuses is not None:
        return set(f.statuses)
    return {s or "" for s in found}


def _locked(conn: AsyncConnection, scope: Scope, job: Job, limit: int, *cols: Any) -> Select[Any]:
    """The next batch of the customers the job matched when it was made, locked, each with
    whether it still matches the filter (`still`)."""
    items = t.bulk_job_items.c
    # The batch's ids first (LIMIT in a subquery), so the join reads only the batch's rows,
    # however many the job has left and whatever the planner guesses of them.
    batch = (
        select(items.customer_id)
        .where(items.job_id == job.id, items.customer_id > job.cursor)
        .order_by(items.customer_id)
        .limit(limit)
        .subquery("batch")
    )
    query = (
        select(*cols, _where(scope, conn).label("still"))
        .select_from(batch.join(t.customers, c.id == batch.c.customer_id))
        .order_by(c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=t.customers)
    return query


async def _create_filtered_job(
    conn: AsyncConnection,
    scope: Scope,
    user: User,
    kind: JobKind,
    params: Mapping[str, Any],
    now: datetime,
) -> Job:
    """A job with the customers its filter matches now, snapshot in one INSERT ... SELECT: the
    batches walk them in id order, so each is counted once even when it changes meanwhile."""
    job = await create_job(
        conn,
        data_owner_id=user.data_owner_id,
        kind=kind,
        params=params,
        created_by=user.id,
        expected=0,
        now=now,
    )
    matched = select(literal(job.id, BigInteger), c.id).where(_where(scope, conn))
    await conn.execute(insert(t.bulk_job_items).from_select(["job_id", "customer_id"], matched))
    expected = (
        await conn.execute(select(func.count()).where(t.bulk_job_items.c.job_id == job.id))
    ).scalar_one()
    await conn.execute(
        update(t.bulk_jobs).where(t.bulk_jobs.c.id == job.id).values(expected=expected)
    )
    return replace(job, expected=expected)


async def fetch_plain(conn: AsyncConnection, query: Any, params: Any = None) -> list[Any]:
    """The rows of `query` as named tuples: reading a column of a Row by name costs ten times
    a tuple's, and a batch reads each of its thousand rows' columns several times."""
    result = await conn.execute(query, params)
    plain = namedtuple("Plain", list(result.keys()))
    return [plain._make(row) for row in result]


def _still_matching(rows: Sequence[Any]) -> tuple[list[Any], int]:
    still = [r for r in rows if r.still]
    return still, len(rows) - len(still)


async def _split_selected(
    rows: Sequence[Any], owner: int, selections: SelectionProbe | None
) -> tuple[list[Any], int, int]:
    """Rows nobody holds, and how many were held by the database's record and by Redis."""
    free = [r for r in rows if r.holder_user_id is None]
    held_db = len(rows) - len(free)
    if selections is None or not free:
        return free, held_db, 0
    live = await selections.selected_among(owner, [r.id for r in free])
    return [r for r in free if r.id not in live], held_db, len(live)


def _ids(rows: Sequence[Any]) -> list[int]:
    return [r.id for r in rows]


def id_in(column: Any, ids: Sequence[int], dialect: str) -> ColumnElement[bool]:
    """`column IN ids` as one array parameter on PostgreSQL (one plan for every batch size),
    an expanded IN list on SQLite."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(BigInteger)))
    return column.in_(list(ids))


async def insert_history(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """History rows of a batch (rule 24) in one round trip: COPY on PostgreSQL, executemany
    elsewhere. `data` must be plain JSON (strings, numbers, lists, objects)."""
    columns = ("customer_id", "at", "kind", "user_id", "assignment_id", "data")
    await copy_rows(conn, t.history, columns, rows, json_columns=("data",))


async def copy_rows(
    conn: AsyncConnection,
    table: Any,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    json_columns: Sequence[str] = (),
) -> None:
    """Insert many rows in one round trip: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(table), [{k: r.get(k) for k in columns} for r in rows])
        return
    await conn.execute(text("SELECT 1"))  # SQLAlchemy's transaction is open on the driver
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    encoded = set(json_columns)
    encode = _JSON.encode
    await driver.copy_records_to_table(
        table.name,
        records=[
            tuple(encode(r.get(k)) if k in encoded else r.get(k) for k in columns) for r in rows
        ],
        columns=list(columns),
    )


_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder for many rows: no set-up per row

HISTORY_COLUMNS = ("customer_id", "at", "kind", "user_id", "assignment_id", "data")


def json_object(dialect: str, fields: Mapping[str, Any]) -> ColumnElement[Any]:
    """A JSON object built by the database from SQL expressions (jsonb on PostgreSQL)."""
    build = func.jsonb_build_object if dialect == "postgresql" else func.json_object
    args: list[Any] = []
    for key, value in fields.items():
        args += [literal(key, String), value]
    return build(*args)


def json_value(dialect: str, value: Mapping[str, Any]) -> ColumnElement[Any]:
    """A constant JSON object as an SQL value, to nest in json_object."""
    if dialect == "postgresql":
        return literal(dict(value), JSONB)
    return func.json(literal(json.dumps(value, ensure_ascii=False), String))


def history_row(
    dialect: str,
    customer_id: Any,
    kind: HistoryKind,
    *,
    now: datetime,
    user_id: int,
    assignment_id: Any,
    data: Mapping[str, Any],
) -> tuple[Any, ...]:
    """The columns of a history row (HISTORY_COLUMNS) as SQL expressions: constants are bound,
    the rest read from the query the row is selected by."""
    at = t.history.c.at.type
    return (
        customer_id,
        literal(now, at),
        literal(kind.value, String),
        literal(user_id, BigInteger),
        assignment_id if isinstance(assignment_id, ColumnElement) else literal(assignment_id),
        json_object(dialect, data),
    )


async def insert_history_from(conn: AsyncConnection, query: Select[Any]) -> None:
    """History rows (rule 24) made by the database from `query`, whose columns are
    HISTORY_COLUMNS (see history_row): one statement for a whole batch."""
    await conn.execute(insert(t.history).from_select(HISTORY_COLUMNS, query))


async def change_with_history(
    conn: AsyncConnection, ids: Sequence[int], values: Mapping[str, Any], history: Sequence[Any]
) -> None:
    """Set `values` on these customers, each with a history row (history_row) read from the
    row as it was: on PostgreSQL one statement (a CTE sees the rows before the UPDATE)."""
    dialect = conn.dialect.name
    change = update(t.customers).values(**values)
    if dialect == "postgresql":
        where = c.id == any_(bindparam("ids", list(ids), type_=ARRAY(BigInteger)))
        rows = insert(t.history).from_select(
            HISTORY_COLUMNS, select(*history).where(where).order_by(c.id)
        )
        await conn.execute(change.where(where).add_cte(rows.cte("history_rows")))
        return
    await insert_history_from(
        conn, select(*history).where(id_in(c.id, ids, dialect)).order_by(c.id)
    )
    await conn.execute(change.where(id_in(c.id, ids, dialect)))


async def _end_follow_ups(
    conn: AsyncConnection,
    ids: Sequence[int],
    reason: str,
    *,
    user_id: int,
    now: datetime,
    job_id: int,
) -> int:
    """End every open follow-up of these customers, with a history row each."""
    fu = t.follow_ups.c
    dialect = conn.dialect.name
    ended = list(
        (
            await conn.execute(
                update(t.follow_ups)
                .where(id_in(fu.customer_id, ids, dialect), fu.ended_at.is_(None))
                .values(ended_at=now, ended_reason=reason)
                .returning(fu.id)
            )
        ).scalars()
    )
    if ended:
        data = {
            "follow_up_id": fu.id,
            "kind": fu.kind,
            "reason": literal(reason, String),
            "job": literal(job_id, BigInteger),
        }
        row = history_row(
            dialect,
            fu.customer_id,
            HistoryKind.FOLLOW_UP_ENDED,
            now=now,
            user_id=user_id,
            assignment_id=fu.assignment_id,
            data=data,
        )
        await insert_history_from(
            conn, select(*row).where(id_in(fu.id, ended, dialect)).order_by(fu.id)
        )
    return len(ended)


# ---------------------------------------------------------------------------------------------
# Mass outcome (rule 19)


async def create_mass_outcome_job(
    conn: AsyncConnection,
    user: User,
    filter_data: Any,
    outcome_key: str,
    details: Mapping[str, Any],
    now: datetime,
    *,
    follow_up_at: datetime | None = None,
) -> Job:
    """Rule 19: register `outcome_key` on every customer the filter selects. Only an outcome
    valid from every status present may be chosen; the details apply to all. Checks all of it
    and returns the pending job (run it with run_bulk_job)."""
    scope = await scope_for(conn, user, filter_data)
    where = _where(scope, conn)
    found = {
        r[0]: r[1]
        for r in await conn.execute(select(c.status, func.count()).where(where).group_by(c.status))
    }
    flow = scope.assignment.flow
    options = mass_outcome_options(flow, _present_statuses(scope.filter, found))
    outcome = next((o for o in options if o.key == outcome_key), None)
    if outcome is None:
        raise InvalidTransition(
            f"outcome '{outcome_key}' cannot be registered on every customer of this filter",
            allowed=[o.key for o in options],
        )
    clean = check_details(outcome, details)
    plan_outcome_follow_up(outcome, user.id, follow_up_at, now)
    if sms_wanted(scope.assignment, outcome):
        assert outcome.sms_template is not None
        check_template(outcome.sms_template, scope.crm, outcome)
    return await _create_filtered_job(
        conn,
        scope,
        user,
        JobKind.OUTCOME,
        {
            "filter": scope.filter.model_dump(mode="json", exclude_none=True),
            "outcome": outcome.key,
            "details": clean,
            "follow_up_at": follow_up_at.isoformat() if follow_up_at else None,
        },
        now,
    )


@dataclass
class OutcomeExecutor:
    scope: Scope
    outcome: Outcome
    details: Mapping[str, Any]
    follow_up: FollowUpPlan | None
    user_id: int
    selections: SelectionProbe | None

    async def step(self, conn: AsyncConnection, job: Job, limit: int, now: datetime) -> Step:
        columns = [c.id, c.status, c.holder_user_id]
        sms = sms_wanted(self.scope.assignment, self.outcome)
        if sms:  # what a template may read; not fetched when no SMS is sent
            columns += [c.name, c.external_id, c.email, c.phones, c.info]
        rows = await fetch_plain(conn, _locked(conn, self.scope, job, limit, *columns))
        if not rows:
            return Step(job.cursor, finished=True)
        still, gone = _still_matching(rows)
        free, held_db, held_redis = await _split_selected(still, job.data_owner_id, self.selections)
        todo = [r for r in free if r.status in self.outcome.from_statuses]
        counts = {
            MATCHED: len(rows),
            CHANGED: len(todo),
            SELECTED_DB: held_db,
            SELECTED_REDIS: held_redis,
            SkipReason.STATUS_CHANGED.value: len(free) - len(todo),
            SkipReason.NO_LONGER_MATCHING.value: gone,
        }
        if todo:
            counts.update(await self._apply(conn, job, todo, now, sms=sms))
        return Step(rows[-1].id, counts)

    async def _apply(
        self, conn: AsyncConnection, job: Job, todo: Sequence[Any], now: datetime, *, sms: bool
    ) -> dict[str, int]:
        ids = _ids(todo)
        dialect = conn.dialect.name
        assignment_id = self.scope.assignment.id
        to_status = self.outcome.to_status
        plan = self.follow_up
        shared_due = plan.due_at if plan and plan.kind is FollowUpKind.SHARED else None
        # Each history row reads its customer as it was: from_status is the locked row's.
        data = {
            "outcome": literal(self.outcome.key, String),
            "from_status": c.status,
            "to_status": literal(to_status, String),
            "details": json_value(dialect, self.details),
            "job": literal(job.id, BigInteger),
        }
        row = history_row(
            dialect,
            c.id,
            HistoryKind.OUTCOME,
            now=now,
            user_id=self.user_id,
            assignment_id=assignment_id,
            data=data,
        )
        values = {
            "status": to_status,
            # A new outcome ends the open follow-ups (below), and with them the shared one this
            # column mirrors, unless the outcome makes a new shared one.
            "shared_follow_up_at": shared_due,
            "updated_at": now,
            "version": c.version + 1,
        }
        await change_with_history(conn, ids, values, row)
        # As for one customer: a new outcome settles whatever follow-up it was waiting on.
        ended = await _end_follow_ups(
            conn, ids, "outcome", user_id=self.user_id, now=now, job_id=job.id
        )
        made = 0
        if plan is not None:
            made = await self._follow_ups(conn, job, ids, plan, now)
        queued: list[int] = []
        if sms:
            queued = await enqueue_outcome_sms_many(
                conn,
                assignment=self.scope.assignment,
                crm=self.scope.crm,
                outcome=self.outcome,
                details=self.details,
                customers=[
                    (
                        f"bulk:{job.id}:{r.id}",
                        SmsCustomer(
                            r.id,
                            r.name,
                            r.external_id,
                            r.email,
                            tuple(r.phones or ()),
                            r.info or {},
                        ),
                    )
                    for r in todo
                ],
                user_id=self.user_id,
                now=now,
            )
        return {"follow_ups_ended": ended, "follow_ups_created": made, "sms_queued": len(queued)}

    async def _follow_ups(
        self,
        conn: AsyncConnection,
        job: Job,
        ids: Sequence[int],
        plan: FollowUpPlan,
        now: datetime,
    ) -> int:
        """The outcome's follow-up for each customer (rule 15), with its history row."""
        fu = t.follow_ups
        f = fu.c
        dialect = conn.dialect.name
        new = select(
            c.id,
            literal(self.scope.assignment.id, BigInteger),
            literal(plan.kind.value, String),
            literal(plan.owner_user_id, BigInteger),
            literal(plan.due_at, f.due_at.type),
            literal(now, f.created_at.type),
            literal(self.user_id, BigInteger),
        )
        made = list(
            (
                await conn.execute(
                    insert(fu)
                    .from_select(
                        [
                            "customer_id",
                            "assignment_id",
                            "kind",
                            "owner_user_id",
                            "due_at",
                            "created_at",
                            "created_by",
                        ],
                        new.where(id_in(c.id, ids, dialect)).order_by(c.id),
                    )
                    .returning(f.id)
                )
            ).scalars()
        )
        data = {
            "follow_up_id": f.id,
            "kind": f.kind,
            "due_at": literal(plan.due_at.isoformat(), String),
            "job": literal(job.id, BigInteger),
        }
        row = history_row(
            dialect,
            f.customer_id,
            HistoryKind.FOLLOW_UP_CREATED,
            now=now,
            user_id=self.user_id,
            assignment_id=f.assignment_id,
            data=data,
        )
        await insert_history_from(
            conn, select(*row).where(id_in(f.id, made, dialect)).order_by(f.id)
        )
        return len(made)

    def report(self, counts: Mapping[str, int]) -> BulkReport:
        return _report(
            JobKind.OUTCOME,
            counts,
            [SkipReason.STATUS_CHANGED.value, SkipReason.NO_LONGER_MATCHING.value],
            outcome=self.outcome.key,
            extra_keys=("follow_ups_created", "follow_ups_ended", "sms_queued"),
        )


def _report(
    kind: JobKind,
    counts: Mapping[str, int],
    reasons: Sequence[str],
    *,
    extra_keys: Sequence[str] = (),
    **extra: Any,
) -> BulkReport:
    selected = {"database": counts.get(SELECTED_DB, 0), "redis": counts.get(SELECTED_REDIS, 0)}
    skipped = {SkipReason.SELECTED.value: sum(selected.values())}
    skipped.update({r: counts.get(r, 0) for r in reasons})
    return BulkReport(
        kind=kind,
        matched=counts.get(MATCHED, 0),
        changed=counts.get(CHANGED, 0),
        skipped=skipped,
        extra={
            "selected_seen_in": selected,
            **{k: counts.get(k, 0) for k in extra_keys},
            **extra,
        },
    )


async def _outcome_executor(
    conn: AsyncConnection, job: Job, selections: SelectionProbe | None
) -> OutcomeExecutor:
    user = await job_user(conn, job)
    scope = await scope_for(conn, user, job.params["filter"])
    outcome = scope.assignment.flow.outcome(job.params["outcome"])
    if outcome is None:
        raise Invalid(f"the flow no longer has outcome '{job.params['outcome']}'")
    details = check_details(outcome, job.params.get("details") or {})
    at = job.params.get("follow_up_at")
    plan = None
    if outcome.follow_up is not None and at:
        due = datetime.fromisoformat(at)
        owner = user.id if outcome.follow_up is FollowUpKind.PERSONAL else None
        plan = FollowUpPlan(outcome.follow_up, due, owner)
    return OutcomeExecutor(scope, outcome, details, plan, user.id, selections)


async def job_user(conn: AsyncConnection, job: Job) -> User:
    user = await repo.get_user(conn, job.created_by)
    if user is None or user.data_owner_id != job.data_owner_id or not user.active:
        raise Forbidden("the user who started this job can no longer run it")
    return user


# ---------------------------------------------------------------------------------------------
# Moves (rule 20)


async def create_move_job(
    conn: AsyncConnection,
    user: User,
    filter_data: Any,
    now: datetime,
    *,
    to_segment_id: int | None = None,
    to_assignment_id: int | None = None,
) -> Job:
    """Rule 20: move the filter's customers to another segment of their assignment (status and
    follow-ups kept) or to another assignment of the same CRM the user may see (available and
    unsegmented there; status and follow-ups dropped; history kept). Returns the pending job."""
    if (to_segment_id is None) == (to_assignment_id is None):
        raise Invalid("give a target segment or a target assignment (one of them)")
    scope = await scope_for(conn, user, filter_data)
    params: dict[str, Any] = {"filter": scope.filter.model_dump(mode="json", exclude_none=True)}
    if to_segment_id is not None:
        if scope.assignment.segment(to_segment_id) is None:
            raise Invalid("no such segment in this assignment", field="to_segment_id")
        params["to_segment_id"] = to_segment_id
    else:
        assert to_assignment_id is not None
        await _move_target(conn, user, scope, to_assignment_id)
        params["to_assignment_id"] = to_assignment_id
    return await _create_filtered_job(conn, scope, user, JobKind.MOVE, params, now)


async def _move_target(
    conn: AsyncConnection, user: User, scope: Scope, to_assignment_id: int
) -> tuple[Assignment, Crm]:
    """The target assignment: visible to the user (else it does not exist, rule 3), of the
    customers' own CRM (rule 1)."""
    granted = await repo.granted_assignment_ids(conn, user.id)
    target = visible_assignment(
        user,
        await repo.get_assignment(conn, to_assignment_id, data_owner_id=user.data_owner_id),
        granted,
    )
    target_crm = await repo.get_crm(conn, target.crm_id)
    if target_crm is None:
        raise NotFound("no such assignment")
    check_move_to_assignment(scope.assignment, scope.crm, target, target_crm)
    return target, target_crm


@dataclass
class MoveExecutor:
    scope: Scope
    user_id: int
    selections: SelectionProbe | None
    to_segment_id: int | None = None
    target: Assignment | None = None
    target_crm: Crm | None = None

    async def step(self, conn: AsyncConnection, job: Job, limit: int, now: datetime) -> Step:
        rows = await fetch_plain(
            conn,
            _locked(
                conn,
                self.scope,
                job,
                limit,
                c.id,
                c.crm_id,
                c.data_owner_id,
                c.assignment_id,
                c.segment_id,
                c.status,
                c.holder_user_id,
            ),
        )
        if not rows:
            return Step(job.cursor, finished=True)
        still, gone = _still_matching(rows)
        free, held_db, held_redis = await _split_selected(still, job.data_owner_id, self.selections)
        todo, already = [], 0
        # The move rules read only these columns, so rows alike share one verdict.
        verdicts: dict[tuple[Any, ...], bool] = {}
        for r in free:
            key = (r.crm_id, r.data_owner_id, r.assignment_id, r.segment_id, r.status)
            there = verdicts.get(key)
            if there is None:
                there = verdicts[key] = self._already_there(r)
            if there:
                already += 1
            else:
                todo.append(r)
        counts = {
            MATCHED: len(rows),
            CHANGED: len(todo),
            SELECTED_DB: held_db,
            SELECTED_REDIS: held_redis,
            SkipReason.ALREADY_THERE.value: already,
            SkipReason.NO_LONGER_MATCHING.value: gone,
        }
        if todo:
            counts["follow_ups_ended"] = await self._apply(conn, job, _ids(todo), now)
        return Step(rows[-1].id, counts)

    def _already_there(self, r: Any) -> bool:
        """Rule 20 for one row: where the move takes it, and whether it is there already."""
        customer = Customer(
            id=r.id,
            crm_id=r.crm_id,
            data_owner_id=r.data_owner_id,
            external_id="",  # not read by the move rules
            name="",
            assignment_id=r.assignment_id,
            segment_id=r.segment_id,
            status=r.status,
        )
        if self.target is not None:
            assert self.target_crm is not None
            effect = plan_move_to_assignment(customer, self.scope.crm, self.target, self.target_crm)
        else:
            assert self.to_segment_id is not None
            effect = plan_move_to_segment(customer, self.scope.assignment, self.to_segment_id)
        return skip_reason(customer, effect, selected=False) is MoveSkip.ALREADY_THERE

    async def _apply(
        self, conn: AsyncConnection, job: Job, ids: Sequence[int], now: datetime
    ) -> int:
        dialect = conn.dialect.name
        source = self.scope.assignment
        ended = 0
        if self.target is not None:
            to_assignment, to_segment, dropped = self.target.id, self.target.unsegmented.id, True
            # Rule 20: status and follow-ups stay behind; the history goes along.
            ended = await _end_follow_ups(
                conn, ids, "moved", user_id=self.user_id, now=now, job_id=job.id
            )
            values: dict[str, Any] = {
                "assignment_id": to_assignment,
                "segment_id": to_segment,
                "status": AVAILABLE,
                "shared_follow_up_at": None,
            }
        else:
            assert self.to_segment_id is not None
            to_assignment, to_segment, dropped = source.id, self.to_segment_id, False
            values = {"segment_id": to_segment}
        # Each history row reads its customer as it was: the "from" side is the locked row's.
        data = {
            "from_assignment_id": c.assignment_id,
            "from_segment_id": c.segment_id,
            "to_assignment_id": literal(to_assignment, BigInteger),
            "to_segment_id": literal(to_segment, BigInteger),
            "from_status": c.status,
            "status": literal(AVAILABLE, String) if dropped else c.status,
            "job": literal(job.id, BigInteger),
        }
        row = history_row(
            dialect,
            c.id,
            HistoryKind.MOVED,
            now=now,
            user_id=self.user_id,
            assignment_id=to_assignment,
            data=data,
        )
        await change_with_history(
            conn, ids, {**values, "updated_at": now, "version": c.version + 1}, row
        )
        return ended

    def report(self, counts: Mapping[str, int]) -> BulkReport:
        target: dict[str, Any] = (
            {"to_assignment_id": self.target.id}
            if self.target is not None
            else {"to_segment_id": self.to_segment_id}
        )
        return _report(
            JobKind.MOVE,
            counts,
            [SkipReason.ALREADY_THERE.value, SkipReason.NO_LONGER_MATCHING.value],
            extra_keys=("follow_ups_ended",),
            **target,
        )


async def _move_executor(
    conn: AsyncConnection, job: Job, selections: SelectionProbe | None
) -> MoveExecutor:
    user = await job_user(conn, job)
    scope = await scope_for(conn, user, job.params["filter"])
    executor = MoveExecutor(scope, user.id, selections)
    if "to_assignment_id" in job.params:
        executor.target, executor.target_crm = await _move_target(
            conn, user, scope, int(job.params["to_assignment_id"])
        )
    else:
        executor.to_segment_id = int(job.params["to_segment_id"])
        if scope.assignment.segment(executor.to_segment_id) is None:
            raise Invalid("the target segment no longer exists")
    return executor


async def move_customer(
    engine: AsyncEngine,
    user: User,
    customer_id: int,
    selections: SelectionProbe | None,
    now: datetime,
    *,
    to_segment_id: int | None = None,
    to_assignment_id: int | None = None,
) -> BulkReport:
    """Rule 20 for one customer (from customer details): the same job, of one. A selected
    customer is refused (rule 5) rather than counted."""
    async with engine.begin() as conn:
        customer = await repo.get_customer(conn, user.data_owner_id, customer_id)
        if customer is None or customer.assignment_id is None:
            raise NotFound("no such customer")
        job = await create_move_job(
            conn,
            user,
            {"assignment_id": customer.assignment_id, "customer_ids": [customer_id]},
            now,
            to_segment_id=to_segment_id,
            to_assignment_id=to_assignment_id,
        )
    done = await run_bulk_job(engine, job.id, selections=selections)
    assert done.report is not None
    if done.report["skipped"].get(SkipReason.SELECTED.value):
        raise Forbidden("the customer is selected; it cannot move until it is released")
    return _report_from_json(done.report)


def _report_from_json(data: Mapping[str, Any]) -> BulkReport:
    known = {"kind", "matched", "changed", "skipped", "summary"}
    return BulkReport(
        kind=JobKind(data["kind"]),
        matched=data["matched"],
        changed=data["changed"],
        skipped=dict(data.get("skipped") or {}),
        extra={k: v for k, v in data.items() if k not in known},
    )


# ---------------------------------------------------------------------------------------------
# Running jobs


async def load_executor(
    conn: AsyncConnection, job: Job, selections: SelectionProbe | None
) -> Executor:
    """The executor of a job's kind, its context read afresh (a resumed job re-checks it)."""
    if job.kind is JobKind.OUTCOME:
        return await _outcome_executor(conn, job, selections)
    if job.kind is JobKind.MOVE:
        return await _move_executor(conn, job, selections)
    from domain.db.imports import import_executor

    return await import_executor(conn, job, selections)


async def run_bulk_job(
    engine: AsyncEngine,
    job_id: int,
    *,
    selections: SelectionProbe | None,
    node: str | None = None,
    on_progress: ProgressHook | None = None,
    batch_size: int = DEFAULT_BATCH,
    lease: Any = DEFAULT_LEASE,
    clock: Any = None,
) -> Job:
    """Run or resume any bulk job to its end; progress after every batch (see run_job)."""

    async def load(conn: AsyncConnection, job: Job) -> Executor:
        return await load_executor(conn, job, selections)

    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return await run_job(
        engine,
        job_id,
        load,
        node=node or new_node_id(),
        on_progress=on_progress,
        batch_size=batch_size,
        lease=lease,
        **options,
    )


async def resume_bulk_jobs(
    engine: AsyncEngine,
    *,
    selections: SelectionProbe | None,
    node: str | None = None,
    on_progress: ProgressHook | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> list[Job]:
    """Resume every job nobody runs (pending, or its node's lease ran out); returns them done."""
    async with engine.connect() as conn:
        ids = await resumable_jobs(conn, repo.utcnow())
    node = node or new_node_id()
    return [
        await run_bulk_job(
            engine,
            job_id,
            selections=selections,
            node=node,
            on_progress=on_progress,
            batch_size=batch_size,
        )
        for job_id in ids
    ]


async def job_report(conn: AsyncConnection, user: User, job_id: int) -> Job:
    """A job of the user's data owner (another owner's ids do not exist, rule 3)."""
    job = await get_job(conn, job_id, data_owner_id=user.data_owner_id)
    if job is None:
        raise NotFound("no such job")
    return job
