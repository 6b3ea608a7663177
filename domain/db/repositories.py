"""Thin async data access: SQLAlchemy Core on an AsyncConnection, domain dataclasses out.

Every function takes the caller's connection and never commits: the caller owns the transaction
(`async with engine.begin() as conn: ...`). Lookups that a user can name take the data owner, so
another tenant's ids answer exactly like ids that do not exist (rule 3).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.db import tables as t
from domain.db.codec import (
    flow_from_json,
    flow_to_json,
    info_fields_from_json,
    info_fields_to_json,
    setup_from_json,
    setup_to_json,
)
from domain.db.driver import Statement
from domain.errors import Invalid, WatertightError
from domain.flows import AVAILABLE, CustomerFlow
from domain.listing import check_sort_keys
from domain.model import (
    UNSEGMENTED_NAME,
    Assignment,
    AssignmentSetup,
    Attempt,
    Crm,
    CrmKind,
    Customer,
    DataOwner,
    FollowUp,
    FollowUpKind,
    HistoryEvent,
    HistoryKind,
    InfoField,
    Role,
    Segment,
    User,
)
from domain.passwords import hash_password
from domain.tenancy import can_see_assignment


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Data owners and CRMs


async def create_data_owner(
    conn: AsyncConnection, name: str, timezone: str = "Europe/Oslo", *, id: int | None = None
) -> DataOwner:
    """A data owner; `id` picks its id (tests and benches sharing one Redis pick unique ones)."""
    values: dict[str, Any] = {"name": name, "timezone": timezone}
    if id is not None:
        values["id"] = id
    result = await conn.execute(
        insert(t.data_owners).values(**values).returning(t.data_owners.c.id)
    )
    return DataOwner(id=result.scalar_one(), name=name, timezone=timezone)


async def get_data_owner(conn: AsyncConnection, data_owner_id: int) -> DataOwner | None:
    row = (
        await conn.execute(select(t.data_owners).where(t.data_owners.c.id == data_owner_id))
    ).first()
    return DataOwner(id=row.id, name=row.name, timezone=row.timezone) if row else None


async def get_data_owner_by_name(conn: AsyncConnection, name: str) -> DataOwner | None:
    row = (await conn.execute(select(t.data_owners).where(t.data_owners.c.name == name))).first()
    return DataOwner(id=row.id, name=row.name, timezone=row.timezone) if row else None


async def create_crm(
    conn: AsyncConnection,
    data_owner_id: int,
    name: str,
    kind: CrmKind | str,
    info_fields: Iterable[InfoField] = (),
) -> Crm:
    kind = CrmKind(kind)
    fields = info_fields_from_json(info_fields_to_json(info_fields))  # refuses duplicates
    result = await conn.execute(
        insert(t.crms)
        .values(
            data_owner_id=data_owner_id,
            name=name,
            kind=kind.value,
            info_fields=info_fields_to_json(fields),
        )
        .returning(t.crms.c.id)
    )
    return Crm(
        id=result.scalar_one(),
        data_owner_id=data_owner_id,
        name=name,
        kind=kind,
        info_fields=fields,
    )


def _crm(row: Row[Any]) -> Crm:
    return Crm(
        id=row.id,
        data_owner_id=row.data_owner_id,
        name=row.name,
        kind=CrmKind(row.kind),
        info_fields=info_fields_from_json(row.info_fields),
    )


async def get_crm(
    conn: AsyncConnection, crm_id: int, *, data_owner_id: int | None = None
) -> Crm | None:
    query = select(t.crms).where(t.crms.c.id == crm_id)
    if data_owner_id is not None:
        query = query.where(t.crms.c.data_owner_id == data_owner_id)
    row = (await conn.execute(query)).first()
    return _crm(row) if row else None


async def list_crms(conn: AsyncConnection, data_owner_id: int) -> list[Crm]:
    rows = await conn.execute(
        select(t.crms).where(t.crms.c.data_owner_id == data_owner_id).order_by(t.crms.c.id)
    )
    return [_crm(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Assignments and segments

SegmentSpec = str | tuple[str, int]


async def create_assignment(
    conn: AsyncConnection,
    data_owner_id: int,
    crm_id: int,
    name: str,
    flow: CustomerFlow,
    setup: AssignmentSetup | None = None,
    segments: Iterable[SegmentSpec] = (),
) -> Assignment:
    """An assignment on one of the owner's CRMs, with its `Unsegmented` segment (priority 0)
    and the given segments (a name, or (name, priority))."""
    setup = setup or AssignmentSetup()
    crm = await get_crm(conn, crm_id, data_owner_id=data_owner_id)
    if crm is None:
        raise WatertightError("an assignment can only work a CRM of its own data owner")
    check_sort_keys(setup.sort_keys, crm)
    specs = [(s, 0) if isinstance(s, str) else (s[0], int(s[1])) for s in segments]
    if any(n.strip().casefold() == UNSEGMENTED_NAME.casefold() for n, _ in specs):
        raise Invalid(f"'{UNSEGMENTED_NAME}' is made by the assignment itself")
    assignment_id = (
        await conn.execute(
            insert(t.assignments)
            .values(
                data_owner_id=data_owner_id,
                crm_id=crm_id,
                name=name,
                flow=flow_to_json(flow),
                setup=setup_to_json(setup),
            )
            .returning(t.assignments.c.id)
        )
    ).scalar_one()
    made = [await _insert_segment(conn, assignment_id, UNSEGMENTED_NAME, 0, True)]
    for seg_name, priority in specs:
        made.append(await _insert_segment(conn, assignment_id, seg_name, priority, False))
    return Assignment(
        id=assignment_id,
        data_owner_id=data_owner_id,
        crm_id=crm_id,
        name=name,
        flow=flow,
        setup=setup,
        segments=tuple(sorted(made, key=_segment_order)),
    )


async def create_segment(
    conn: AsyncConnection, assignment_id: int, name: str, priority: int = 0
) -> Segment:
    if name.strip().casefold() == UNSEGMENTED_NAME.casefold():
        raise Invalid(f"'{UNSEGMENTED_NAME}' is made by the assignment itself")
    return await _insert_segment(conn, assignment_id, name, priority, False)


async def _insert_segment(
    conn: AsyncConnection, assignment_id: int, name: str, priority: int, unsegmented: bool
) -> Segment:
    segment_id = (
        await conn.execute(
            insert(t.segments)
            .values(
                assignment_id=assignment_id,
                name=name,
                priority=priority,
                is_unsegmented=unsegmented,
            )
            .returning(t.segments.c.id)
        )
    ).scalar_one()
    return Segment(segment_id, assignment_id, name, priority, unsegmented)


def _segment_order(s: Segment) -> tuple[int, int]:
    return (-s.priority, s.id)


def _segment(row: Row[Any]) -> Segment:
    return Segment(
        id=row.id,
        assignment_id=row.assignment_id,
        name=row.name,
        priority=row.priority,
        is_unsegmented=bool(row.is_unsegmented),
    )


async def _segments_of(conn: AsyncConnection, ids: Collection[int]) -> dict[int, list[Segment]]:
    out: dict[int, list[Segment]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await conn.execute(
        select(t.segments)
        .where(t.segments.c.assignment_id.in_(list(ids)))
        .order_by(t.segments.c.priority.desc(), t.segments.c.id)
    )
    for row in rows:
        out[row.assignment_id].append(_segment(row))
    return out


def _assignment(row: Row[Any], segments: Sequence[Segment]) -> Assignment:
    return Assignment(
        id=row.id,
        data_owner_id=row.data_owner_id,
        crm_id=row.crm_id,
        name=row.name,
        flow=flow_from_json(row.flow),
        setup=setup_from_json(row.setup),
        segments=tuple(segments),
    )


async def get_assignment(
    conn: AsyncConnection, assignment_id: int, *, data_owner_id: int | None = None
) -> Assignment | None:
    """The assignment with flow, setup and segments (highest priority first); None when it does
    not exist or belongs to another data owner than the one given."""
    query = select(t.assignments).where(t.assignments.c.id == assignment_id)
    if data_owner_id is not None:
        query = query.where(t.assignments.c.data_owner_id == data_owner_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    segments = await _segments_of(conn, [row.id])
    return _assignment(row, segments[row.id])


async def list_assignments(conn: AsyncConnection, data_owner_id: int) -> list[Assignment]:
    rows = (
        await conn.execute(
            select(t.assignments)
            .where(t.assignments.c.data_owner_id == data_owner_id)
            .order_by(t.assignments.c.id)
        )
    ).all()
    segments = await _segments_of(conn, [r.id for r in rows])
    return [_assignment(r, segments[r.id]) for r in rows]


# ---------------------------------------------------------------------------------------------
# Users and grants


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        data_owner_id=row.data_owner_id,
        username=row.username,
        name=row.name,
        role=Role(row.role),
        active=bool(row.active),
    )


async def create_user(
    conn: AsyncConnection,
    data_owner_id: int,
    username: str,
    name: str,
    role: Role | str,
    password: str,
    *,
    password_hash: str | None = None,
) -> User:
    """A user; the password is stored as an Argon2id hash (`password_hash` skips hashing when
    the caller already has one, e.g. to seed many users with the same password)."""
    role = Role(role)
    username = username.strip()
    if not username:
        raise Invalid("a user needs a username")
    if password_hash is None:
        if not password:
            raise Invalid("a user needs a password")
        password_hash = hash_password(password)
    user_id = (
        await conn.execute(
            insert(t.users)
            .values(
                data_owner_id=data_owner_id,
                username=username,
                name=name,
                role=role.value,
                password_hash=password_hash,
            )
            .returning(t.users.c.id)
        )
    ).scalar_one()
    return User(id=user_id, data_owner_id=data_owner_id, username=username, name=name, role=role)


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
    return _user(row) if row else None


async def get_user_by_username(conn: AsyncConnection, username: str) -> tuple[User, str] | None:
    """(user, password hash) for a login, or None; verify with domain.passwords."""
    row = (
        await conn.execute(select(t.users).where(t.users.c.username == username.strip()))
    ).first()
    return (_user(row), row.password_hash) if row else None


async def list_users(conn: AsyncConnection, data_owner_id: int) -> list[User]:
    rows = await conn.execute(
        select(t.users).where(t.users.c.data_owner_id == data_owner_id).order_by(t.users.c.id)
    )
    return [_user(r) for r in rows]


async def grant(conn: AsyncConnection, user_id: int, assignment_id: int) -> None:
    """Grant a user an assignment of its own data owner (idempotent)."""
    user_owner = (
        await conn.execute(select(t.users.c.data_owner_id).where(t.users.c.id == user_id))
    ).scalar_one_or_none()
    assignment_owner = (
        await conn.execute(
            select(t.assignments.c.data_owner_id).where(t.assignments.c.id == assignment_id)
        )
    ).scalar_one_or_none()
    if user_owner is None or user_owner != assignment_owner:
        raise WatertightError("a user can only be granted assignments of its own data owner")
    exists = (
        await conn.execute(
            select(t.grants.c.user_id).where(
                t.grants.c.user_id == user_id, t.grants.c.assignment_id == assignment_id
            )
        )
    ).first()
    if exists is None:
        await conn.execute(insert(t.grants).values(user_id=user_id, assignment_id=assignment_id))


async def revoke(conn: AsyncConnection, user_id: int, assignment_id: int) -> None:
    await conn.execute(
        t.grants.delete().where(
            t.grants.c.user_id == user_id, t.grants.c.assignment_id == assignment_id
        )
    )


async def granted_assignment_ids(conn: AsyncConnection, user_id: int) -> set[int]:
    rows = await conn.execute(select(t.grants.c.assignment_id).where(t.grants.c.user_id == user_id))
    return {r[0] for r in rows}


async def visible_assignment_ids(conn: AsyncConnection, user: User) -> set[int]:
    """Rule 3: the ids of the assignments `user` may see (what visible_assignments lists,
    without reading segments or counting customers)."""
    if not user.active:
        return set()
    if user.role is Role.ADMIN:
        rows = await conn.execute(_ALL_ASSIGNMENT_IDS, {"owner": user.data_owner_id})
    else:
        rows = await conn.execute(
            _GRANTED_ASSIGNMENT_IDS, {"owner": user.data_owner_id, "uid": user.id}
        )
    return {r[0] for r in rows}


_ALL_ASSIGNMENT_IDS = select(t.assignments.c.id).where(
    t.assignments.c.data_owner_id == bindparam("owner")
)
_GRANTED_ASSIGNMENT_IDS = _ALL_ASSIGNMENT_IDS.where(
    t.assignments.c.id.in_(
        select(t.grants.c.assignment_id).where(t.grants.c.user_id == bindparam("uid"))
    )
)


async def visible_assignments(conn: AsyncConnection, user: User) -> list[dict[str, Any]]:
    """Rule 3: the assignments `user` may see, as summaries
    {id, name, segments: [{id, name}], available} (available: customers in status
    `available`), in id order. Admins see every assignment of their data owner."""
    query = select(t.assignments).where(t.assignments.c.data_owner_id == user.data_owner_id)
    if user.role is not Role.ADMIN:
        query = query.where(
            t.assignments.c.id.in_(
                select(t.grants.c.assignment_id).where(t.grants.c.user_id == user.id)
            )
        )
    rows = (await conn.execute(query.order_by(t.assignments.c.id))).all()
    if not rows:
        return []
    granted = await granted_assignment_ids(conn, user.id)
    segments = await _segments_of(conn, [r.id for r in rows])
    assignments = [
        a
        for a in (_assignment(r, segments[r.id]) for r in rows)
        if can_see_assignment(user, a, granted)
    ]
    ids = [a.id for a in assignments]
    counts: dict[int, int] = {}
    if ids:
        counted = await conn.execute(
            select(t.customers.c.assignment_id, func.count())
            .where(t.customers.c.assignment_id.in_(ids), t.customers.c.status == AVAILABLE)
            .group_by(t.customers.c.assignment_id)
        )
        counts = {r[0]: r[1] for r in counted}
    return [
        {
            "id": a.id,
            "name": a.name,
            "segments": [{"id": s.id, "name": s.name} for s in a.segments],
            "available": counts.get(a.id, 0),
        }
        for a in assignments
    ]


# ---------------------------------------------------------------------------------------------
# Customers

# Column order of a customer record for insert_customer_records (COPY on PostgreSQL).
CUSTOMER_COLUMNS = (
    "data_owner_id",
    "crm_id",
    "external_id",
    "name",
    "phones",
    "email",
    "info",
    "assignment_id",
    "segment_id",
    "status",
    "attempts",
    "last_attempt_at",
)
_PHONES = CUSTOMER_COLUMNS.index("phones")
_INFO = CUSTOMER_COLUMNS.index("info")


def customer_record(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A customer dict as a record in CUSTOMER_COLUMNS order, with defaults filled in."""
    defaults: dict[str, Any] = {"phones": [], "info": {}, "attempts": 0}
    for key in ("data_owner_id", "crm_id", "external_id", "name"):
        if row.get(key) is None:
            raise Invalid(f"a customer needs '{key}'")
    if row.get("assignment_id") is not None and row.get("status") is None:
        defaults["status"] = AVAILABLE
    return tuple(row.get(c, defaults.get(c)) for c in CUSTOMER_COLUMNS)


async def insert_customers(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Bulk insert of customer dicts (keys of CUSTOMER_COLUMNS; phones a list, info a dict).

    Returns how many were inserted. Placement is the caller's to check (rules 1 and 2).
    """
    return await insert_customer_records(conn, [customer_record(r) for r in rows])


async def insert_customer_records(conn: AsyncConnection, records: Sequence[Sequence[Any]]) -> int:
    """Bulk insert of records in CUSTOMER_COLUMNS order: asyncpg COPY on PostgreSQL,
    executemany elsewhere. `phones` / `info` may be given as ready JSON text (fast path)."""
    if not records:
        return 0
    if conn.dialect.name == "postgresql":
        # Make sure SQLAlchemy's transaction is open on the driver connection before COPY.
        await conn.execute(text("SELECT 1"))
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None

        def encode(r: Sequence[Any]) -> tuple[Any, ...]:
            out = list(r)
            for i in (_PHONES, _INFO):
                if not isinstance(out[i], str):
                    out[i] = json.dumps(_jsonable(out[i]), ensure_ascii=False)
            return tuple(out)

        try:
            await driver.copy_records_to_table(
                t.customers.name, records=[encode(r) for r in records], columns=CUSTOMER_COLUMNS
            )
        except Exception as exc:  # asyncpg's own errors: answer like SQLAlchemy would
            if _is_integrity_error(exc):
                raise IntegrityError("COPY customers", None, exc) from exc
            raise
        return len(records)

    def decode(r: Sequence[Any]) -> dict[str, Any]:
        out = dict(zip(CUSTOMER_COLUMNS, r, strict=True))
        for key in ("phones", "info"):
            if isinstance(out[key], str):
                out[key] = json.loads(out[key])
        return out

    await conn.execute(insert(t.customers), [decode(r) for r in records])
    return len(records)


def _is_integrity_error(exc: Exception) -> bool:
    # SQLSTATE class 23: integrity constraint violation.
    return str(getattr(exc, "sqlstate", "") or "").startswith("23")


def _customer(row: Row[Any]) -> Customer:
    return Customer(
        id=row.id,
        crm_id=row.crm_id,
        data_owner_id=row.data_owner_id,
        external_id=row.external_id,
        name=row.name,
        phones=tuple(row.phones or ()),
        email=row.email,
        info=dict(row.info or {}),
        assignment_id=row.assignment_id,
        segment_id=row.segment_id,
        status=row.status,
        attempts=row.attempts,
        last_attempt_at=row.last_attempt_at,
        created_at=row.created_at,
    )


async def get_customer(
    conn: AsyncConnection, data_owner_id: int, customer_id: int
) -> Customer | None:
    """The customer, or None when it does not exist or is another data owner's (rule 3)."""
    rows = await _GET_CUSTOMER.rows(conn, {"cid": customer_id, "owner": data_owner_id})
    return _customer(rows[0]) if rows else None


# Hot-path statements are built once with bind parameters: SQLAlchemy then skips building the
# statement and its cache key on every call (most of a short statement's CPU cost).
# The customer is read on every select and every screen: on the driver (domain.db.driver).
_GET_CUSTOMER = Statement(
    select(t.customers).where(
        t.customers.c.id == bindparam("cid"), t.customers.c.data_owner_id == bindparam("owner")
    )
)


async def get_customer_by_external_id(
    conn: AsyncConnection, data_owner_id: int, crm_id: int, external_id: str
) -> Customer | None:
    row = (
        await conn.execute(
            select(t.customers).where(
                t.customers.c.data_owner_id == data_owner_id,
                t.customers.c.crm_id == crm_id,
                t.customers.c.external_id == external_id,
            )
        )
    ).first()
    return _customer(row) if row else None


async def count_customers(
    conn: AsyncConnection,
    *,
    crm_id: int | None = None,
    assignment_id: int | None = None,
    status: str | None = None,
) -> int:
    query = select(func.count()).select_from(t.customers)
    if crm_id is not None:
        query = query.where(t.customers.c.crm_id == crm_id)
    if assignment_id is not None:
        query = query.where(t.customers.c.assignment_id == assignment_id)
    if status is not None:
        query = query.where(t.customers.c.status == status)
    return (await conn.execute(query)).scalar_one()


async def max_numeric_external_id(conn: AsyncConnection, crm_id: int) -> int:
    """The largest all-digit external_id of a CRM (0 when there is none)."""
    ext = t.customers.c.external_id
    if conn.dialect.name == "postgresql":
        digits = ext.regexp_match("^[0-9]{1,18}$")
        value = func.max(ext.cast(BigInteger))
    else:
        digits = and_(ext != "", ext.op("NOT GLOB")("*[^0-9]*"), func.length(ext) <= 18)
        value = func.max(ext.cast(Integer))
    result = await conn.execute(select(value).where(t.customers.c.crm_id == crm_id, digits))
    return int(result.scalar_one() or 0)


# ---------------------------------------------------------------------------------------------
# History


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _jsonable(value: Any) -> Any:
    if type(value) in _JSON_SCALARS:
        return value  # most values of a history row's data: nothing to convert
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


async def add_history(conn: AsyncConnection, event: HistoryEvent) -> int:
    """Append one event to the customer's history (rule 24); returns its id."""
    result = await conn.execute(_ADD_HISTORY, history_params(event))
    return result.scalar_one()


def history_params(event: HistoryEvent) -> dict[str, Any]:
    """One history row as the parameters of an INSERT into history."""
    return {
        "customer_id": event.customer_id,
        "at": event.at,
        "kind": HistoryKind(event.kind).value,
        "user_id": event.user_id,
        "assignment_id": event.assignment_id,
        "data": _jsonable(event.data),
    }


_ADD_HISTORY = insert(t.history).returning(t.history.c.id)
_LIST_HISTORY = (
    select(t.history).where(t.history.c.customer_id == bindparam("cid")).order_by(t.history.c.id)
)


async def list_history(conn: AsyncConnection, customer_id: int) -> list[HistoryEvent]:
    """The customer's history in the order it was written."""
    rows = await conn.execute(_LIST_HISTORY, {"cid": customer_id})
    return [history_event(r) for r in rows]


def history_event(r: Row[Any]) -> HistoryEvent:
    """A history row (with at least the history table's columns) as an event."""
    return HistoryEvent(
        customer_id=r.customer_id,
        kind=HistoryKind(r.kind),
        at=r.at,
        user_id=r.user_id,
        assignment_id=r.assignment_id,
        data=dict(r.data or {}),
    )


# ---------------------------------------------------------------------------------------------
# Follow-ups


def follow_up_of(row: Row[Any]) -> FollowUp:
    """A follow_ups row (with at least the table's columns) as a FollowUp."""
    return FollowUp(
        id=row.id,
        customer_id=row.customer_id,
        assignment_id=row.assignment_id,
        kind=FollowUpKind(row.kind),
        due_at=row.due_at,
        owner_user_id=row.owner_user_id,
        created_at=row.created_at,
        ended_at=row.ended_at,
    )


async def create_follow_up(
    conn: AsyncConnection,
    *,
    customer_id: int,
    assignment_id: int,
    kind: FollowUpKind | str,
    due_at: datetime,
    owner_user_id: int | None = None,
    created_by: int | None = None,
    now: datetime | None = None,
) -> FollowUp:
    """A personal (owned) or shared (unowned) follow-up.

    A customer has at most one open shared follow-up: a new one ends the old ("replaced"), and
    customers.shared_follow_up_at is set to its due time (the list query reads it, rule 11).
    """
    kind = FollowUpKind(kind)
    now = now or utcnow()
    if kind is FollowUpKind.PERSONAL and owner_user_id is None:
        raise Invalid("a personal follow-up needs an owner")
    if kind is FollowUpKind.SHARED:
        if owner_user_id is not None:
            raise Invalid("a shared follow-up has no owner")
        await end_follow_ups(conn, customer_id, "replaced", kind=FollowUpKind.SHARED, at=now)
    follow_up_id = (
        await conn.execute(
            insert(t.follow_ups)
            .values(
                customer_id=customer_id,
                assignment_id=assignment_id,
                kind=kind.value,
                owner_user_id=owner_user_id,
                due_at=due_at,
                created_at=now,
                created_by=created_by,
            )
            .returning(t.follow_ups.c.id)
        )
    ).scalar_one()
    if kind is FollowUpKind.SHARED:
        await conn.execute(
            update(t.customers)
            .where(t.customers.c.id == customer_id)
            .values(shared_follow_up_at=due_at, updated_at=now)
        )
    return FollowUp(
        id=follow_up_id,
        customer_id=customer_id,
        assignment_id=assignment_id,
        kind=kind,
        due_at=due_at,
        owner_user_id=owner_user_id,
        created_at=now,
    )


async def end_follow_ups(
    conn: AsyncConnection,
    customer_id: int,
    reason: str,
    *,
    kind: FollowUpKind | None = None,
    follow_up_id: int | None = None,
    at: datetime | None = None,
) -> list[FollowUp]:
    """End the customer's open follow-ups (all, one kind, or one id); returns those ended.

    Ending the open shared follow-up clears customers.shared_follow_up_at.
    """
    at = at or utcnow()
    fu = t.follow_ups
    conditions = [fu.c.customer_id == customer_id, fu.c.ended_at.is_(None)]
    if kind is not None:
        conditions.append(fu.c.kind == FollowUpKind(kind).value)
    if follow_up_id is not None:
        conditions.append(fu.c.id == follow_up_id)
    rows = (await conn.execute(select(fu).where(*conditions).order_by(fu.c.id))).all()
    if not rows:
        return []
    await conn.execute(
        update(fu)
        .where(fu.c.id.in_([r.id for r in rows]))
        .values(ended_at=at, ended_reason=reason[:32])
    )
    if any(r.kind == FollowUpKind.SHARED.value for r in rows):
        await conn.execute(
            update(t.customers)
            .where(t.customers.c.id == customer_id)
            .values(shared_follow_up_at=None, updated_at=at)
        )
    return [
        FollowUp(
            id=r.id,
            customer_id=r.customer_id,
            assignment_id=r.assignment_id,
            kind=FollowUpKind(r.kind),
            due_at=r.due_at,
            owner_user_id=r.owner_user_id,
            created_at=r.created_at,
            ended_at=at,
        )
        for r in rows
    ]


async def open_follow_ups_for_user(
    conn: AsyncConnection, user_id: int, assignment_ids: Collection[int]
) -> list[FollowUp]:
    """Open follow-ups in the given (visible) assignments that `user_id` should see: its own
    personal ones and every shared one; by due time. Feed to domain.followups.my_work."""
    if not assignment_ids:
        return []
    rows = await conn.execute(
        OPEN_FOLLOW_UPS_FOR_USER, {"uid": user_id, "aids": sorted(assignment_ids)}
    )
    return [follow_up_of(r) for r in rows]


OPEN_FOLLOW_UPS_FOR_USER = (
    select(t.follow_ups)
    .where(
        t.follow_ups.c.ended_at.is_(None),
        t.follow_ups.c.assignment_id.in_(bindparam("aids", expanding=True)),
        or_(
            and_(
                t.follow_ups.c.kind == FollowUpKind.PERSONAL.value,
                t.follow_ups.c.owner_user_id == bindparam("uid"),
            ),
            t.follow_ups.c.kind == FollowUpKind.SHARED.value,
        ),
    )
    .order_by(t.follow_ups.c.due_at, t.follow_ups.c.id)
)


async def open_follow_ups_for_customer(conn: AsyncConnection, customer_id: int) -> list[FollowUp]:
    fu = t.follow_ups
    rows = await conn.execute(
        select(fu)
        .where(fu.c.customer_id == customer_id, fu.c.ended_at.is_(None))
        .order_by(fu.c.due_at, fu.c.id)
    )
    return [follow_up_of(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Attempts


async def record_attempt(conn: AsyncConnection, attempt: Attempt) -> int:
    """Record an attempt (rule 13): a row in `attempts`, customers.attempts + 1 and
    last_attempt_at = attempt.at. Returns the customer's new attempt count. Follow-ups that a
    call_back_later makes are the caller's (domain.followups.plan_attempt + create_follow_up)."""
    await add_attempt(conn, attempt)
    result = await conn.execute(
        _COUNT_ATTEMPT, {"cid": attempt.customer_id, "attempt_at": attempt.at, "now": utcnow()}
    )
    return result.scalar_one()


async def add_attempt(conn: AsyncConnection, attempt: Attempt) -> None:
    """The attempt's row alone (the customer's counters are the caller's)."""
    await conn.execute(
        _ADD_ATTEMPT,
        {
            "customer_id": attempt.customer_id,
            "assignment_id": attempt.assignment_id,
            "user_id": attempt.user_id,
            "kind": attempt.kind.value,
            "at": attempt.at,
            "call_back_at": attempt.call_back_at,
        },
    )


_ADD_ATTEMPT = insert(t.attempts)
_COUNT_ATTEMPT = (
    update(t.customers)
    .where(t.customers.c.id == bindparam("cid"))
    .values(
        attempts=t.customers.c.attempts + 1,
        last_attempt_at=bindparam("attempt_at"),
        updated_at=bindparam("now"),
    )
    .returning(t.customers.c.attempts)
)
