"""Import (rule 22): customer cards updated from a spreadsheet (xlsx or csv), matched on
`external_id`, info-field values checked by the CRM's field types.

The file is read and every value checked before the job exists; its rows are staged in the
database (bulk_import_rows), so any node can run or resume the job. Each row ends with one
result: updated, unchanged, not_found, invalid (and why) or selected (rule 5: a selected
customer's fields are its holder's to write), and names the assignment its customer is in.
An empty cell leaves the field as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, bindparam, func, select, text, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.bulk import BulkReport, JobKind
from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import (
    CHANGED,
    MATCHED,
    SELECTED_DB,
    SELECTED_REDIS,
    copy_rows,
    fetch_plain,
    insert_history,
    job_user,
)
from domain.db.jobs import Job, SelectionProbe, Step, create_job
from domain.db.xlsx import read_rows
from domain.errors import Invalid, NotFound
from domain.fields import coerce_value
from domain.model import Crm, HistoryKind, User
from domain.tenancy import require_admin

c = t.customers.c
r_ = t.bulk_import_rows.c

EXTERNAL_ID = "external_id"
INFO_PREFIX = "info."
UPDATED, UNCHANGED, NOT_FOUND, INVALID, SELECTED = (
    "updated",
    "unchanged",
    "not_found",
    "invalid",
    "selected",
)
STAGE_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Table:
    """A spreadsheet's first sheet: its header row and the rows under it (cell values)."""

    headers: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


def read_table(path: Path | str, *, data: bytes | None = None) -> Table:
    """Read an .xlsx or .csv file (csv: UTF-8, comma, semicolon or tab separated)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _read_xlsx(path if data is None else io.BytesIO(data))
    if suffix == ".csv":
        raw = path.read_bytes() if data is None else data
        return _read_csv(raw)
    raise Invalid(f"{path.name}: only .xlsx and .csv files can be imported")


def _read_xlsx(source: Any) -> Table:
    rows = read_rows(source)
    headers = next(rows, None)
    if headers is None:
        raise Invalid("the sheet is empty: it needs a header row")
    body = [row for row in rows if any(v is not None and v != "" for v in row)]
    return Table(_headers(headers), body)


def _read_csv(raw: bytes) -> Table:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the csv file is not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    headers = next(reader, None)
    if headers is None:
        raise Invalid("the file is empty: it needs a header row")
    body = [row for row in reader if any(v.strip() for v in row)]
    return Table(_headers(headers), body)


def _headers(cells: Iterable[Any]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v).strip() for v in cells)


def check_mapping(headers: Sequence[str], mapping: Mapping[str, str], crm: Crm) -> dict[int, str]:
    """Column header -> "external_id" or an info field ("info.<key>" or "<key>") becomes
    column index -> "external_id" or the info key. Refuses unknown columns and fields, a field
    given twice, and a mapping without exactly one external_id column."""
    index = {h.casefold(): i for i, h in reversed(list(enumerate(headers))) if h}
    columns: dict[int, str] = {}
    for column, target in mapping.items():
        i = index.get(column.strip().casefold())
        if i is None:
            raise Invalid(f"mapping: the file has no column '{column}'", field=column)
        key = target.strip()
        if key != EXTERNAL_ID:
            key = key.removeprefix(INFO_PREFIX)
            if crm.info_field(key) is None:
                raise Invalid(
                    f"mapping: column '{column}': the CRM has no info field '{key}'", field=column
                )
        if key in columns.values():
            raise Invalid(f"mapping: two columns are mapped onto '{key}'", field=column)
        columns[i] = key
    if EXTERNAL_ID not in columns.values():
        raise Invalid("mapping: one column must be mapped onto external_id", field=EXTERNAL_ID)
    if len(columns) < 2:
        raise Invalid("mapping: map at least one info field besides external_id")
    return columns


def stage_row(row: Sequence[Any], columns: Mapping[int, str], crm: Crm) -> dict[str, Any]:
    """One row checked: its external id and typed values, or result `invalid` and why."""
    return _stager(columns, crm)(row)


def _stager(columns: Mapping[int, str], crm: Crm) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """stage_row for one mapping: the field types are looked up once, not per cell."""
    fields = []
    key_column = -1
    for i, key in columns.items():
        if key == EXTERNAL_ID:
            key_column = i
            continue
        spec = crm.info_field(key)
        assert spec is not None
        fields.append((i, key, spec.type, spec.label))

    def stage(row: Sequence[Any]) -> dict[str, Any]:
        width = len(row)
        raw = row[key_column] if key_column < width else None
        external_id = _external_id(raw.strip() if isinstance(raw, str) else raw)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for i, key, kind, label in fields:
            raw = row[i] if i < width else None
            if isinstance(raw, str):
                raw = raw.strip()
            if raw is None or raw == "":
                continue  # an empty cell leaves the field as it is
            try:
                values[key] = coerce_value(kind, raw, label=label)
            except Invalid as error:
                problems.append(error.message)
        if not external_id:
            problems.insert(0, "no external_id")
        staged: dict[str, Any] = {"external_id": external_id, "data": values}
        if problems:
            staged.update(result=INVALID, detail="; ".join(problems))
        return staged

    return stage


def _external_id(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # a spreadsheet's numbers arrive as floats
    if isinstance(raw, datetime | date):
        raw = raw.isoformat()
    return str(raw).strip()[:100] or None


async def create_import_job(
    conn: AsyncConnection,
    user: User,
    crm_id: int,
    table: Table,
    mapping: Mapping[str, str],
    now: datetime,
    *,
    file_name: str | None = None,
) -> Job:
    """Rule 22: stage an import into the CRM (an administrator's), each row checked. Returns
    the pending job; rows with invalid values are already reported as such."""
    require_admin(user)
    crm = await repo.get_crm(conn, crm_id, data_owner_id=user.data_owner_id)
    if crm is None:
        raise NotFound("no such CRM")
    columns = check_mapping(table.headers, mapping, crm)
    if not table.rows:
        raise Invalid("the file has no rows under its header")
    job = await create_job(
        conn,
        data_owner_id=user.data_owner_id,
        kind=JobKind.IMPORT,
        params={"crm_id": crm.id, "mapping": dict(mapping), "file": file_name},
        created_by=user.id,
        expected=len(table.rows),
        now=now,
    )
    stage = _stager(columns, crm)
    staged = [
        {"job_id": job.id, "row_no": n, "result": None, "detail": None, **stage(row)}
        for n, row in enumerate(table.rows, start=2)  # row 1 is the header
    ]
    columns = ("job_id", "row_no", "external_id", "data", "result", "detail")
    for start in range(0, len(staged), STAGE_CHUNK):
        chunk = staged[start : start + STAGE_CHUNK]
        await copy_rows(conn, t.bulk_import_rows, columns, chunk, json_columns=("data",))
    return job


# One import batch's writes on PostgreSQL (ImportExecutor._write_postgresql): parallel arrays
# (JSON values as one JSON array each) zipped by ROWS FROM. The history rows keep their order;
# a row's result is written only inside the batch's range of the key.
_WRITE_BATCH = text(
    "WITH info AS ("
    " UPDATE customers AS c SET info = v.info, updated_at = :now"
    " FROM ROWS FROM (unnest(CAST(:ids AS bigint[])),"
    " jsonb_array_elements(CAST(:infos AS jsonb))) AS v(id, info)"
    " WHERE c.id = v.id"
    "), history AS ("
    " INSERT INTO history (customer_id, at, kind, user_id, assignment_id, data)"
    " SELECT h.customer_id, CAST(:now AS timestamptz), CAST(:kind AS text),"
    " CAST(:user AS bigint), h.assignment_id, h.data"
    " FROM ROWS FROM (unnest(CAST(:h_customers AS bigint[])),"
    " unnest(CAST(:h_assignments AS bigint[])), jsonb_array_elements(CAST(:h_data AS jsonb)))"
    " WITH ORDINALITY AS h(customer_id, assignment_id, data, n)"
    " ORDER BY h.n"
    ")"
    " UPDATE bulk_import_rows AS r SET result = v.result, detail = v.detail,"
    " customer_id = v.customer_id, assignment_id = v.assignment_id"
    " FROM unnest(CAST(:rows AS int[]), CAST(:results AS text[]), CAST(:details AS text[]),"
    " CAST(:customers AS bigint[]), CAST(:assignments AS bigint[]))"
    " AS v(row_no, result, detail, customer_id, assignment_id)"
    " WHERE r.job_id = :job AND r.row_no = v.row_no AND r.row_no > :after AND r.row_no <= :last"
)


@dataclass
class ImportExecutor:
    crm: Crm
    user_id: int
    selections: SelectionProbe | None

    async def step(self, conn: AsyncConnection, job: Job, limit: int, now: datetime) -> Step:
        rows = await fetch_plain(
            conn,
            select(r_.row_no, r_.external_id, r_.data, r_.result, r_.detail)
            .where(r_.job_id == job.id, r_.row_no > job.cursor)
            .order_by(r_.row_no)
            .limit(limit),
        )
        if not rows:
            return Step(job.cursor, finished=True)
        pending = [r for r in rows if r.result is None]
        # Invalid rows still say which customer and assignment they are about.
        found = await self._customers(conn, {r.external_id for r in rows if r.external_id})
        live: dict[int, int] = {}
        free_ids = [f.id for f in found.values() if f.holder_user_id is None]
        if self.selections is not None and free_ids:
            live = await self.selections.selected_among(job.data_owner_id, free_ids)
        counts = {MATCHED: len(rows), INVALID: len(rows) - len(pending)}
        results: list[dict[str, Any]] = []
        infos: dict[int, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        for r in rows:
            if r.result is not None and r.external_id in found:
                known = found[r.external_id]
                results.append(
                    {
                        "b_row": r.row_no,
                        "result": r.result,
                        "detail": r.detail,
                        "customer_id": known.id,
                        "assignment_id": known.assignment_id,
                    }
                )
        for r in pending:
            customer = found.get(r.external_id)
            result: dict[str, Any] = {"b_row": r.row_no, "detail": None}
            if customer is None:
                result.update(result=NOT_FOUND, customer_id=None, assignment_id=None)
                counts[NOT_FOUND] = counts.get(NOT_FOUND, 0) + 1
                results.append(result)
                continue
            result.update(customer_id=customer.id, assignment_id=customer.assignment_id)
            if customer.holder_user_id is not None or customer.id in live:
                result.update(result=SELECTED, detail="the customer is selected")
                key = SELECTED_DB if customer.holder_user_id is not None else SELECTED_REDIS
                counts[key] = counts.get(key, 0) + 1
                results.append(result)
                continue
            info = infos.setdefault(customer.id, dict(customer.info or {}))
            changes = {
                k: {"from": info.get(k), "to": v} for k, v in r.data.items() if info.get(k) != v
            }
            if not changes:
                result.update(result=UNCHANGED)
                counts[UNCHANGED] = counts.get(UNCHANGED, 0) + 1
            else:
                info.update({k: ch["to"] for k, ch in changes.items()})
                result.update(result=UPDATED, detail=", ".join(sorted(changes)))
                counts[CHANGED] = counts.get(CHANGED, 0) + 1
                history.append(
                    {
                        "customer_id": customer.id,
                        "assignment_id": customer.assignment_id,
                        "data": {"changes": changes, "job": job.id, "row": r.row_no},
                    }
                )
            results.append(result)
        changed = {h["customer_id"]: infos[h["customer_id"]] for h in history}
        if conn.dialect.name == "postgresql":
            await self._write_postgresql(conn, job, rows[-1].row_no, changed, history, results, now)
        else:
            await self._write(conn, job, changed, history, results, now)
        return Step(rows[-1].row_no, counts)

    async def _write_postgresql(
        self,
        conn: AsyncConnection,
        job: Job,
        last: int,
        infos: Mapping[int, Mapping[str, Any]],
        history: Sequence[Mapping[str, Any]],
        results: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> None:
        """The batch's writes in one statement: new info values, their history rows (rule 24),
        and every row's result (rule 22), each as arrays the database unnests."""
        ids = sorted(infos)
        await conn.execute(
            _WRITE_BATCH,
            {
                "now": now,
                "user": self.user_id,
                "kind": HistoryKind.IMPORTED.value,
                "ids": ids,
                # One JSON array per column: one encoding pass for the whole batch.
                "infos": json.dumps([infos[i] for i in ids], ensure_ascii=False),
                "h_customers": [h["customer_id"] for h in history],
                "h_assignments": [h["assignment_id"] for h in history],
                "h_data": json.dumps([h["data"] for h in history], ensure_ascii=False),
                "job": job.id,
                "after": job.cursor,
                "last": last,
                "rows": [x["b_row"] for x in results],
                "results": [x["result"] for x in results],
                "details": [x["detail"] for x in results],
                "customers": [x["customer_id"] for x in results],
                "assignments": [x["assignment_id"] for x in results],
            },
        )

    async def _write(
        self,
        conn: AsyncConnection,
        job: Job,
        infos: Mapping[int, Mapping[str, Any]],
        history: Sequence[Mapping[str, Any]],
        results: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> None:
        """The same writes as _write_postgresql, one executemany each (SQLite)."""
        if infos:
            await conn.execute(
                update(t.customers)
                .where(c.id == bindparam("b_id"))
                .values(info=bindparam("b_info", type_=c.info.type), updated_at=now),
                [{"b_id": cid, "b_info": infos[cid]} for cid in sorted(infos)],
            )
            await insert_history(
                conn,
                [
                    {
                        **h,
                        "at": now,
                        "kind": HistoryKind.IMPORTED.value,
                        "user_id": self.user_id,
                    }
                    for h in history
                ],
            )
        if not results:
            return
        await conn.execute(
            update(t.bulk_import_rows)
            .where(and_(r_.job_id == job.id, r_.row_no == bindparam("b_row")))
            .values(
                result=bindparam("b_result"),
                detail=bindparam("b_detail"),
                customer_id=bindparam("b_customer"),
                assignment_id=bindparam("b_assignment"),
            ),
            [
                {
                    "b_row": x["b_row"],
                    "b_result": x["result"],
                    "b_detail": x["detail"],
                    "b_customer": x["customer_id"],
                    "b_assignment": x["assignment_id"],
                }
                for x in results
            ],
        )

    async def _customers(self, conn: AsyncConnection, external_ids: set[str]) -> dict[str, Any]:
        """The batch's customers by external id, locked in id order on PostgreSQL."""
        if not external_ids:
            return {}
        columns = (c.id, c.external_id, c.info, c.assignment_id, c.holder_user_id)
        if conn.dialect.name != "postgresql":
            query = select(*columns).where(
                c.crm_id == self.crm.id, c.external_id.in_(sorted(external_ids))
            )
            return {row.external_id: row for row in await fetch_plain(conn, query)}
        # One probe of the (crm_id, external_id) index per id: a LATERAL lookup cannot turn
        # into a scan of the whole CRM, whatever the planner's statistics say.
        wanted = (
            func.unnest(bindparam("external_ids", sorted(external_ids), type_=ARRAY(String)))
            .table_valued("external_id")
            .render_derived(name="wanted")
        )
        known = t.customers.alias("known")
        probe = (
            select(known.c.id)
            .where(known.c.crm_id == self.crm.id, known.c.external_id == wanted.c.external_id)
            .lateral("probe")
        )
        found = select(probe.c.id).select_from(wanted.join(probe, true()))
        query = select(*columns).where(c.id.in_(found)).order_by(c.id).with_for_update()
        return {row.external_id: row for row in await fetch_plain(conn, query)}

    def report(self, counts: Mapping[str, int]) -> BulkReport:
        selected = {"database": counts.get(SELECTED_DB, 0), "redis": counts.get(SELECTED_REDIS, 0)}
        return BulkReport(
            kind=JobKind.IMPORT,
            matched=counts.get(MATCHED, 0),
            changed=counts.get(CHANGED, 0),
            skipped={
                UNCHANGED: counts.get(UNCHANGED, 0),
                NOT_FOUND: counts.get(NOT_FOUND, 0),
                INVALID: counts.get(INVALID, 0),
                SELECTED: sum(selected.values()),
            },
            extra={"selected_seen_in": selected, "crm_id": self.crm.id},
        )


async def import_executor(
    conn: AsyncConnection, job: Job, selections: SelectionProbe | None
) -> ImportExecutor:
    user = await job_user(conn, job)
    crm = await repo.get_crm(conn, int(job.params["crm_id"]), data_owner_id=job.data_owner_id)
    if crm is None:
        raise NotFound("the CRM of this import no longer exists")
    return ImportExecutor(crm, user.id, selections)


async def import_rows(
    conn: AsyncConnection, job_id: int, *, offset: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rule 22's report per row: row number, external id, result, why, the customer and the
    assignment it is in (id and name), in file order."""
    a = t.assignments.c
    query = (
        select(
            r_.row_no,
            r_.external_id,
            r_.result,
            r_.detail,
            r_.customer_id,
            r_.assignment_id,
            a.name.label("assignment"),
        )
        .select_from(t.bulk_import_rows.outerjoin(t.assignments, a.id == r_.assignment_id))
        .where(r_.job_id == job_id)
        .order_by(r_.row_no)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [dict(row._mapping) for row in await conn.execute(query)]
